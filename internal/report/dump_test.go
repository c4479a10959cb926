package report

import (
	"os"
	"path/filepath"
	"testing"
)

// TestDumpFixtures writes each fixture's report to $KEYD_REPORT_OUT (for
// looking at them in a browser); skipped when it is not set.
func TestDumpFixtures(t *testing.T) {
	dir := os.Getenv("KEYD_REPORT_OUT")
	if dir == "" {
		t.Skip("KEYD_REPORT_OUT not set")
	}
	for _, f := range fixtures {
		r := buildReport(t, f)
		for _, format := range []string{FormatHTML, FormatJSON} {
			out, err := os.Create(filepath.Join(dir, f.name+"."+format))
			if err != nil {
				t.Fatal(err)
			}
			if err := Write(out, r, format); err != nil {
				t.Fatal(err)
			}
			out.Close()
		}
	}
}
