// Package report renders keyd's audit report (audit.Report, built by
// audit.BuildReport) for the security team: one self-contained HTML file,
// inline CSS and SVG, no scripts, printable on A4; or the same facts as
// JSON for a SIEM.
package report

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"strings"
	"time"

	"github.com/openedx-keyd/keyd/internal/audit"
)

// The formats.
const (
	FormatHTML = "html"
	FormatJSON = "json"
)

// ContentType is the media type of format.
func ContentType(format string) string {
	if format == FormatJSON {
		return "application/json"
	}
	return "text/html; charset=utf-8"
}

// ContentSecurityPolicy is the policy the HTML is written for (also in its
// own meta element): no scripts, no fetches, inline styles only.
const ContentSecurityPolicy = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"

// ParseFormat checks a --format or ?format= value ("" is html).
func ParseFormat(s string) (string, error) {
	switch s {
	case "", FormatHTML:
		return FormatHTML, nil
	case FormatJSON:
		return FormatJSON, nil
	}
	return "", fmt.Errorf("format %q is neither html nor json", s)
}

// Write renders r in format to w.
func Write(w io.Writer, r audit.Report, format string) error {
	if format == FormatJSON {
		return audit.WriteReportJSON(w, r)
	}
	return WriteHTML(w, r)
}

//go:embed report.html.tmpl
var page string

var tmpl = template.Must(template.New("report").Funcs(template.FuncMap{
	"stamp":    stamp,
	"f":        func(v float64) string { return fmt.Sprintf("%.1f", v) },
	"short":    func(h string) string { return h[:min(len(h), 8)] },
	"join":     join,
	"add":      func(a, b float64) float64 { return a + b },
	"sub":      func(a, b float64) float64 { return a - b },
	"state":    stateName,
	"status":   statusName,
	"verdict":  verdictTitle,
	"half":     func(v float64) float64 { return v / 2 },
	"add0":     func(t audit.Totals) int { return t.OnTime + t.Late + t.Missed },
	"plural":   plural,
	"nonempty": func(s string) bool { return strings.TrimSpace(s) != "" },
}).Parse(page))

// view is what the template reads: the report and its drawings.
type view struct {
	audit.Report
	Charts []Chart
	CSP    string
}

// WriteHTML renders r as one self-contained HTML page. html/template
// escapes every value for its context: a kid, an actor or a reason is
// text, whatever it holds.
func WriteHTML(w io.Writer, r audit.Report) error {
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, view{Report: r, Charts: charts(r), CSP: ContentSecurityPolicy}); err != nil {
		return fmt.Errorf("report: render html: %w", err)
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// stamp shows a time (time.Time or *time.Time) as UTC to the second; "—"
// for none.
func stamp(v any) string {
	var t time.Time
	switch x := v.(type) {
	case time.Time:
		t = x
	case *time.Time:
		if x != nil {
			t = *x
		}
	}
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05")
}

func join(s []string) string { return strings.Join(s, ", ") }

func plural(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}

func statusName(s string) string {
	switch s {
	case audit.StatusOnTime:
		return "on time"
	case audit.StatusLate:
		return "LATE"
	case audit.StatusMissed:
		return "MISSED"
	case audit.StatusDue:
		return "due now"
	case audit.StatusUpcoming:
		return "upcoming"
	case audit.StatusOnDemand:
		return "on demand"
	case audit.StatusEmergency:
		return "emergency"
	}
	return s
}

func verdictTitle(v string) string {
	switch v {
	case audit.VerdictIntact:
		return "Audit chain intact"
	case audit.VerdictUnreconciled:
		return "Chain links intact — NOT reconciled with the keys"
	}
	return "Audit chain BROKEN"
}
