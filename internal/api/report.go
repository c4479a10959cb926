package api

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/openedx-keyd/keyd/internal/audit"
	"github.com/openedx-keyd/keyd/internal/auth"
	"github.com/openedx-keyd/keyd/internal/report"
)

// ReportQuery is what GET /v1/audit/report asks for: the period (zero:
// open) and the lateness tolerance (zero: the default).
type ReportQuery struct {
	Since, Until time.Time
	LateAfter    time.Duration
}

// AuditReporter builds the audit report; Config.Audit implements it when the
// report is available.
type AuditReporter interface {
	Report(ctx context.Context, q ReportQuery) (audit.Report, error)
}

// auditReport serves GET /v1/audit/report (auditor or admin): the report
// for the security team as one self-contained HTML page, or ?format=json.
func (s *Server) auditReport(c echo.Context) error {
	if _, err := s.authorize(c, auth.RouteAuditReport); err != nil {
		return err
	}
	q, format, err := reportQuery(c)
	if err != nil {
		return err
	}
	rep, ok := s.cfg.Audit.(AuditReporter)
	if !ok {
		return apiError(http.StatusServiceUnavailable, "audit_unavailable", "The audit report is not configured.")
	}
	r, err := rep.Report(c.Request().Context(), q)
	if errors.Is(err, audit.ErrBadPeriod) {
		return apiError(http.StatusBadRequest, "bad_period", "The period ends before it starts: since is after until (or after now).")
	}
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := report.Write(&buf, r, format); err != nil {
		return err
	}
	h := c.Response().Header()
	h.Set("Content-Security-Policy", report.ContentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	return c.Blob(http.StatusOK, report.ContentType(format), buf.Bytes())
}

// reportQuery reads since, until (RFC 3339), late_after (a Go duration) and
// format (html or json); a bad value is a 400 naming it.
func reportQuery(c echo.Context) (ReportQuery, string, error) {
	var q ReportQuery
	for _, p := range []struct {
		name string
		to   *time.Time
	}{{"since", &q.Since}, {"until", &q.Until}} {
		v := c.QueryParam(p.name)
		if v == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return q, "", apiError(http.StatusBadRequest, "bad_"+p.name, p.name+" must be an RFC 3339 time, for example 2026-01-01T00:00:00Z.")
		}
		*p.to = t
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && q.Since.After(q.Until) {
		return q, "", apiError(http.StatusBadRequest, "bad_period", "since must not be after until.")
	}
	if v := c.QueryParam("late_after"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return q, "", apiError(http.StatusBadRequest, "bad_late_after", "late_after must be a positive duration, for example 1h.")
		}
		q.LateAfter = d
	}
	format, err := report.ParseFormat(c.QueryParam("format"))
	if err != nil {
		return q, "", apiError(http.StatusBadRequest, "bad_format", "format must be html or json.")
	}
	return q, format, nil
}
