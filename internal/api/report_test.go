package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/openedx-keyd/keyd/internal/api"
	"github.com/openedx-keyd/keyd/internal/audit"
	"github.com/openedx-keyd/keyd/internal/auth"
	"github.com/openedx-keyd/keyd/internal/jwks"
	"github.com/openedx-keyd/keyd/internal/signer"
)

// reportingAudit is an audit trail with the report: one bootstrap event,
// and the query the report was asked for.
type reportingAudit struct {
	fakeAudit
	got  api.ReportQuery
	fail error
}

func (a *reportingAudit) Report(_ context.Context, q api.ReportQuery) (audit.Report, error) {
	a.got = q
	if a.fail != nil {
		return audit.Report{}, a.fail
	}
	ev := audit.Event{Seq: 1, Time: "2026-01-01T00:00:00Z", Type: audit.Bootstrap, Version: 1, KID: "k1", Actor: "keyd bootstrap",
		Reason: "<script>alert(1)</script>", PrevHash: audit.ZeroHash}
	ev.Hash, _ = audit.Hash(ev)
	return audit.BuildReport(audit.InspectEvents([]audit.Event{ev}, []audit.KeyVersion{{Version: 1, KID: "k1"}}, nil),
		audit.Policy{ScheduleSpec: "0 0 1 * *", LateAfter: time.Hour, Source: "test"},
		audit.Period{Since: q.Since, Until: q.Until, Now: time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)}, "test")
}

func reportServer(t *testing.T, trail api.AuditTrail) *testEnv {
	t.Helper()
	tokens := map[string]string{"KEYD_SIGNER_TOKEN": signerTok, "KEYD_ADMIN_TOKEN": adminTok, "KEYD_AUDITOR_TOKEN": auditorTok}
	authz, _, err := auth.LoadLocalTokens(t.TempDir(), func(k string) string { return tokens[k] })
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.New(api.Config{Auth: authz, JWKS: jwks.NewHandler(0), Audit: trail}))
	t.Cleanup(srv.Close)
	return &testEnv{url: srv.URL}
}

func TestAuditReportRoute(t *testing.T) {
	trail := &reportingAudit{}
	e := reportServer(t, trail)
	for _, tc := range []struct {
		name, path, token string
		status            int
		code              string
	}{
		{"auditor", "/v1/audit/report", auditorTok, http.StatusOK, ""},
		{"admin", "/v1/audit/report?format=json", adminTok, http.StatusOK, ""},
		{"signer", "/v1/audit/report", signerTok, http.StatusForbidden, "forbidden"},
		{"no token", "/v1/audit/report", "", http.StatusUnauthorized, "unauthenticated"},
		{"bad since", "/v1/audit/report?since=yesterday", auditorTok, http.StatusBadRequest, "bad_since"},
		{"bad until", "/v1/audit/report?until=2026-13-01T00:00:00Z", auditorTok, http.StatusBadRequest, "bad_until"},
		{"since after until", "/v1/audit/report?since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z", auditorTok, http.StatusBadRequest, "bad_period"},
		{"bad format", "/v1/audit/report?format=pdf", auditorTok, http.StatusBadRequest, "bad_format"},
		{"since in the future", "/v1/audit/report?since=2030-01-01T00:00:00Z", auditorTok, http.StatusBadRequest, "bad_period"},
		{"bad late_after", "/v1/audit/report?late_after=-1h", auditorTok, http.StatusBadRequest, "bad_late_after"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.get(t, tc.path, tc.token)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			if tc.code != "" {
				var body struct{ Error, Message string }
				if err := json.Unmarshal(r.body, &body); err != nil || body.Error != tc.code || body.Message == "" {
					t.Fatalf("body %s, want error %s", r.body, tc.code)
				}
			}
		})
	}

	r := e.get(t, "/v1/audit/report?since=2026-01-01T00:00:00Z&until=2026-01-01T12:00:00Z&late_after=2h", auditorTok)
	if ct := r.header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Fatalf("Content-Type %q", ct)
	}
	if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "script-src") {
		t.Fatalf("CSP %q", csp)
	}
	page := string(r.body)
	if !strings.Contains(page, "&lt;script&gt;alert(1)&lt;/script&gt;") || strings.Contains(page, "<script>") {
		t.Fatal("the reason is not escaped in the served page")
	}
	if trail.got.Since.Format(time.RFC3339) != "2026-01-01T00:00:00Z" || trail.got.Until.Format(time.RFC3339) != "2026-01-01T12:00:00Z" || trail.got.LateAfter != 2*time.Hour {
		t.Fatalf("query %+v", trail.got)
	}

	r = e.get(t, "/v1/audit/report?format=json", auditorTok)
	var rep audit.Report
	if err := json.Unmarshal(r.body, &rep); err != nil || rep.Chain.Verdict != audit.VerdictIntact || len(rep.Events) != 1 {
		t.Fatalf("json report %s (%v)", r.body, err)
	}

	trail.fail = signer.ErrUnavailable
	if r := e.get(t, "/v1/audit/report", auditorTok); r.status != http.StatusServiceUnavailable {
		t.Fatalf("trail unreadable: status %d", r.status)
	}
}

// TestAuditReportUnconfigured: a trail without the report answers 503.
func TestAuditReportUnconfigured(t *testing.T) {
	e := reportServer(t, &fakeAudit{})
	if r := e.get(t, "/v1/audit/report", auditorTok); r.status != http.StatusServiceUnavailable || !strings.Contains(string(r.body), "audit_unavailable") {
		t.Fatalf("status %d %s", r.status, r.body)
	}
}
