package report

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/openedx-keyd/keyd/internal/audit"
)

// The browser test: Debian's chromium, headless, loads each report from
// disk, takes a screenshot at 1280 px, dumps the DOM and prints it to PDF.
// tools/setup-debian installs chromium; `make test` (CI=1) fails without
// it, a developer's run skips.

// chromium finds the browser: $KEYD_CHROMIUM, else chromium on the PATH.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{os.Getenv("KEYD_CHROMIUM"), "chromium", "chromium-browser"} {
		if name == "" {
			continue
		}
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed: run tools/setup-debian (apt-get install chromium)")
	}
	t.Skip("chromium is not installed (tools/setup-debian installs it); skipping the browser test")
	return ""
}

// browse runs one headless chromium on the file at path, with a fresh
// profile, and returns its standard output.
func browse(t *testing.T, bin, path string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	profile, err := os.MkdirTemp("", "report-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(profile)
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + profile, "--window-size=1280,2000", "--hide-scrollbars"}
	cmd := exec.CommandContext(ctx, bin, append(append(base, args...), "file://"+path)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
	}
	return stdout.Bytes()
}

func TestReportInBrowser(t *testing.T) {
	bin := chromium(t)
	for _, tt := range []struct {
		fixture
		print, control bool // the slower checks, once
	}{
		{fixture{"two-versions", twoVersions}, true, true},
		{fixture{"400-versions", manyVersions}, false, false},
		{fixture{"tampered", tampered}, false, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := buildReport(t, tt.fixture)
			dir := t.TempDir()
			page := filepath.Join(dir, "report.html")
			var h, j bytes.Buffer
			if err := Write(&h, r, FormatHTML); err != nil {
				t.Fatal(err)
			}
			if err := Write(&j, r, FormatJSON); err != nil {
				t.Fatal(err)
			}
			writeFile(t, page, h.Bytes())
			var facts audit.Report // the JSON, read back as a SIEM would
			if err := json.Unmarshal(j.Bytes(), &facts); err != nil {
				t.Fatal(err)
			}

			checkScreenshot(t, bin, page, tt.name)
			// One DOM dump, of a copy that measures itself (see probe).
			doc := dumpProbe(t, bin, dir, h.String())
			checkNoOverflow(t, doc)
			checkTimeline(t, doc, facts)
			checkHostileIsText(t, doc, facts)
			checkSameFacts(t, doc, facts)
			if tt.control {
				checkProbeSeesHostileMarkup(t, bin, dir, h.String())
			}
			if tt.print {
				checkPrintsOnA4(t, bin, page)
			}
		})
	}
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// checkScreenshot: a 1280 px screenshot is taken (and kept in
// $KEYD_REPORT_SCREENSHOTS when set, to look at).
func checkScreenshot(t *testing.T, bin, page, name string) {
	shot := filepath.Join(filepath.Dir(page), "shot.png")
	browse(t, bin, page, "--screenshot="+shot)
	data, err := os.ReadFile(shot)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if b := img.Bounds(); b.Dx() != 1280 {
		t.Fatalf("screenshot is %d px wide, want 1280", b.Dx())
	}
	if out := os.Getenv("KEYD_REPORT_SCREENSHOTS"); out != "" {
		writeFile(t, filepath.Join(out, name+".png"), data)
	}
}

func dumpDOM(t *testing.T, bin, page string) *html.Node {
	t.Helper()
	doc, err := html.Parse(bytes.NewReader(browse(t, bin, page, "--dump-dom")))
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// checkTimeline: the timeline SVG is there with one labelled lane per key
// version.
func checkTimeline(t *testing.T, doc *html.Node, facts audit.Report) {
	t.Helper()
	var got []int
	for _, svg := range findAll(doc, func(n *html.Node) bool { return n.Data == "svg" && hasClass(n, "timeline") }) {
		for _, lane := range findAll(svg, func(n *html.Node) bool { return n.Data == "g" && hasClass(n, "lane") }) {
			v, _ := strconv.Atoi(attr(lane, "data-version"))
			if v == 0 {
				continue // an overview lane (a page of versions)
			}
			label := findAll(lane, func(n *html.Node) bool { return n.Data == "text" && hasClass(n, "lane-label") })
			if len(label) != 1 || text(label[0]) != fmt.Sprintf("v%d", v) {
				t.Fatalf("lane of version %d is not labelled v%d", v, v)
			}
			got = append(got, v)
		}
	}
	var want []int
	for _, k := range facts.Keys {
		want = append(want, k.Version)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("timeline lanes %v, want one per key version %v", got, want)
	}
}

// checkHostileIsText: a hostile reason is shown as the text it is; no
// element came of it.
func checkHostileIsText(t *testing.T, doc *html.Node, facts audit.Report) {
	t.Helper()
	for _, tag := range []string{"img", "script", "iframe", "object"} {
		n := findAll(doc, func(n *html.Node) bool { return n.Data == tag })
		if tag == "script" && len(n) == 2 && strings.Contains(text(n[0]), "data-alert") && strings.Contains(text(n[1]), "data-max-right") {
			continue // the probe's own two
		}
		if len(n) > 0 {
			t.Fatalf("the report holds %d <%s> elements", len(n), tag)
		}
	}
	found := false
	for _, td := range findAll(doc, func(n *html.Node) bool { return n.Data == "td" && hasClass(n, "reason") }) {
		found = found || strings.Contains(text(td), hostile)
	}
	if !found {
		t.Fatalf("the hostile reason %q is not shown as text in the events table", hostile)
	}
}

// checkSameFacts: the HTML states the JSON's facts.
func checkSameFacts(t *testing.T, doc *html.Node, facts audit.Report) {
	t.Helper()
	v := findAll(doc, func(n *html.Node) bool { return attr(n, "id") == "verdict" })
	if len(v) != 1 {
		t.Fatal("no verdict section")
	}
	c := facts.Chain
	for name, want := range map[string]string{
		"data-verdict": c.Verdict, "data-records": fmt.Sprint(c.Records), "data-head-seq": fmt.Sprint(c.HeadSeq),
		"data-head-hash": c.HeadHash, "data-chain-valid": fmt.Sprint(c.Valid),
	} {
		if got := attr(v[0], name); got != want {
			t.Errorf("verdict %s = %q, JSON says %q", name, got, want)
		}
	}
	if !strings.Contains(text(v[0]), verdictTitle(c.Verdict)) || !strings.Contains(text(v[0]), c.HeadHash) {
		t.Errorf("the verdict section does not say %q with the head hash", verdictTitle(c.Verdict))
	}
	rows := func(class string, attrs ...string) []string {
		var out []string
		for _, tr := range findAll(doc, func(n *html.Node) bool { return n.Data == "tr" && hasClass(n, class) }) {
			var vals []string
			for _, a := range attrs {
				vals = append(vals, attr(tr, a))
			}
			if hasClass(tr, "untrusted") {
				vals = append(vals, "untrusted")
			}
			out = append(out, strings.Join(vals, " "))
		}
		return out
	}
	var keys, sched, finds, events []string
	for _, k := range facts.Keys {
		keys = append(keys, trust(fmt.Sprintf("%d %s", k.Version, k.State), k.Untrusted))
	}
	for _, s := range facts.Schedule {
		sched = append(sched, trust(fmt.Sprintf("%d %s", s.AfterVersion, s.Status), s.Untrusted))
	}
	for _, f := range facts.Findings {
		finds = append(finds, trust(fmt.Sprintf("%s %s %d", f.Kind, f.Severity, f.Version), f.Untrusted))
	}
	for _, e := range facts.Events {
		events = append(events, trust(fmt.Sprintf("%d %s", e.Seq, e.Type), e.Untrusted))
	}
	for _, cmp := range []struct {
		what      string
		got, want []string
	}{
		{"keys", rows("key", "data-version", "data-state"), keys},
		{"schedule", rows("rotation", "data-after", "data-status"), sched},
		{"findings", rows("finding", "data-kind", "data-severity", "data-version"), finds},
		{"events", rows("event", "data-seq", "data-type"), events},
	} {
		if !slices.Equal(cmp.got, cmp.want) {
			t.Errorf("%s in the HTML:\n%v\nin the JSON:\n%v", cmp.what, cmp.got, cmp.want)
		}
	}
	// Every event's reason, actor and kid read as the JSON has them.
	trs := findAll(doc, func(n *html.Node) bool { return n.Data == "tr" && hasClass(n, "event") })
	for i, tr := range trs {
		cells := findAll(tr, func(n *html.Node) bool { return n.Data == "td" })
		e := facts.Events[i]
		if text(cells[4]) != e.KID || text(cells[5]) != e.Actor || text(cells[6]) != e.Reason || text(cells[1]) != e.Time {
			t.Fatalf("event seq %d reads %q %q %q %q in the HTML, the JSON has %q %q %q %q", e.Seq,
				text(cells[1]), text(cells[4]), text(cells[5]), text(cells[6]), e.Time, e.KID, e.Actor, e.Reason)
		}
	}
}

func trust(s string, untrusted bool) string {
	if untrusted {
		return s + " untrusted"
	}
	return s
}

// probe is a test copy of the page that may run two tiny scripts (the
// report itself has none, and its CSP forbids them): one that records any
// alert(), one that writes the page's layout into <html>.
func probe(page string) string {
	csp := regexp.MustCompile(`<meta http-equiv="Content-Security-Policy"[^>]*>`)
	page = csp.ReplaceAllString(page, `<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'">`)
	page = strings.Replace(page, "<head>", `<head><script>window.alert=function(m){document.documentElement.setAttribute("data-alert",String(m))};</script>`, 1)
	measure := `<script>
var de=document.documentElement, right=0, worst="";
document.querySelectorAll("body *").forEach(function(e){var r=e.getBoundingClientRect(); if(r.width>0&&r.right>right){right=r.right; worst=e.tagName+"."+e.getAttribute("class")}});
de.setAttribute("data-max-right",Math.ceil(right)); de.setAttribute("data-worst",worst);
de.setAttribute("data-scroll-width",de.scrollWidth); de.setAttribute("data-client-width",de.clientWidth);
de.setAttribute("data-images",document.images.length);
</script></body>`
	return strings.Replace(page, "</body>", measure, 1)
}

// dumpProbe loads the probe copy of page and returns its DOM.
func dumpProbe(t *testing.T, bin, dir, page string) *html.Node {
	t.Helper()
	p := filepath.Join(dir, "probe.html")
	writeFile(t, p, []byte(probe(page)))
	return dumpDOM(t, bin, p)
}

// checkNoOverflow: at 1280 px nothing reaches past the page's width, and
// no script of the report's content ran.
func checkNoOverflow(t *testing.T, doc *html.Node) {
	t.Helper()
	de := findAll(doc, func(n *html.Node) bool { return n.Data == "html" })[0]
	client, _ := strconv.Atoi(attr(de, "data-client-width"))
	scroll, _ := strconv.Atoi(attr(de, "data-scroll-width"))
	right, _ := strconv.Atoi(attr(de, "data-max-right"))
	if client == 0 || client > 1280 || scroll > client || right > client {
		t.Fatalf("at 1280 px: client width %d, scroll width %d, rightmost element edge %d (%s): the page overflows",
			client, scroll, right, attr(de, "data-worst"))
	}
	if a := attr(de, "data-alert"); a != "" || attr(de, "data-images") != "0" {
		t.Fatalf("a script of the report's content ran (alert %q) or an image was made (%s)", a, attr(de, "data-images"))
	}
}

// checkProbeSeesHostileMarkup is the control: with the hostile reason
// pasted raw into a copy, the probe sees its script run and its image made;
// so it would see an escaping mistake too.
func checkProbeSeesHostileMarkup(t *testing.T, bin, dir, page string) {
	t.Helper()
	doc := dumpProbe(t, bin, dir, strings.Replace(page, "</main>", hostile+"</main>", 1))
	de := findAll(doc, func(n *html.Node) bool { return n.Data == "html" })[0]
	if attr(de, "data-alert") == "" || attr(de, "data-images") == "0" {
		t.Fatal("control: the probe did not see the hostile markup pasted raw; it would not see it escaped wrongly either")
	}
}

var mediaBox = regexp.MustCompile(`/MediaBox\s*\[\s*0 0 ([0-9.]+) ([0-9.]+)\s*\]`)

// checkPrintsOnA4: printing gives A4 pages (595 × 842 pt).
func checkPrintsOnA4(t *testing.T, bin, page string) {
	t.Helper()
	pdf := filepath.Join(filepath.Dir(page), "report.pdf")
	browse(t, bin, page, "--print-to-pdf="+pdf, "--no-pdf-header-footer")
	data, err := os.ReadFile(pdf)
	if err != nil {
		t.Fatal(err)
	}
	boxes := mediaBox.FindAllSubmatch(data, -1)
	if !bytes.HasPrefix(data, []byte("%PDF")) || len(boxes) == 0 {
		t.Fatalf("print to PDF: no pages (%d bytes)", len(data))
	}
	for _, b := range boxes {
		w, _ := strconv.ParseFloat(string(b[1]), 64)
		h, _ := strconv.ParseFloat(string(b[2]), 64)
		if w < 593 || w > 597 || h < 840 || h > 844 {
			t.Fatalf("a printed page is %.1f × %.1f pt, want A4 (595 × 842)", w, h)
		}
	}
}

func findAll(n *html.Node, match func(*html.Node) bool) []*html.Node {
	var out []*html.Node
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && match(n) {
			out = append(out, n)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return out
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func hasClass(n *html.Node, class string) bool {
	return slices.Contains(strings.Fields(attr(n, "class")), class)
}

// text is the text content of n, without the tags (<title> tooltips
// included, as a DOM's textContent).
func text(n *html.Node) string {
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return strings.TrimSpace(b.String())
}
