package audit

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// GoldenChain is the fixed chain of the golden report: a bootstrap, a
// rotation on time, a gated one, a late one, a key destroyed early, a
// rotation failure, an emergency (with a hostile reason), and a propagation
// confirmation by an admin.
func goldenChain(t *testing.T) []Event {
	b := newBuilder(t, "2026-03-01T00:00:00Z").add(Bootstrap, 1, "keyd bootstrap", "first key").add(Activated, 1, "scheduler", "")
	b.at("2026-03-02T00:00:02Z").rotate(2, time.Hour)
	b.after(62*time.Minute).add(Destroyed, 1, "scheduler", "retired")
	b.at("2026-03-03T00:00:01Z").add(Created, 3, "scheduler", "")
	b.at("2026-03-03T01:00:03Z").add(PropagationConfirmed, 3, "scheduler", "client ecommerce confirmed by fetch")
	b.at("2026-03-03T02:30:00Z").add(PropagationConfirmed, 3, "alice", "client notes confirmed by admin")
	b.add(Activated, 3, "scheduler", "").add(Retired, 2, "scheduler", "verify-only until 2026-03-03T03:32:00Z")
	b.at("2026-03-03T02:50:00Z").add(Destroyed, 2, "scheduler", "retired")
	b.at("2026-03-04T06:00:00Z").add(RotationFailed, 4, "scheduler", "create: vault: 503 Service Unavailable")
	b.at("2026-03-04T07:00:00Z").add(Created, 4, "scheduler", "")
	b.at("2026-03-04T07:20:00Z").add(Emergency, 5, "bob", `INC-7 <img src=x onerror=alert(1)><script>alert(2)</script>`)
	b.add(Destroyed, 3, "bob", "emergency: INC-7").add(Destroyed, 4, "bob", "emergency: INC-7")
	b.after(5*time.Second).add(Activated, 5, "scheduler", "")
	return b.events()
}

// TestReportGoldenJSON pins the JSON a SIEM reads for a fixed chain
// (go test -run TestReportGoldenJSON -update rewrites it).
func TestReportGoldenJSON(t *testing.T) {
	pol := daily(t)
	pol.Source, pol.Defaulted = "flags", []string{"max-token-lifetime", "clock-skew"}
	r, err := BuildReport(InspectEvents(goldenChain(t), held(5), nil), pol,
		Period{Now: mustTime(t, "2026-03-05T12:00:00Z")}, "file testdata/audit.log")
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if err := WriteReportJSON(&got, r); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "report.golden.json")
	if *update {
		if err := os.WriteFile(path, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Errorf("the report JSON differs from %s (run with -update after checking the change):\n%s", path, got.String())
	}
}
