package policies

import (
	"strings"
	"testing"
)

func TestRender(t *testing.T) {
	got, err := Render("transit", "keyd-jwt", "keyd")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{LMSSigner, Server, Admin, Auditor} {
		text, ok := got[name]
		if !ok {
			t.Fatalf("policy %s missing; got %d policies", name, len(got))
		}
		if strings.Contains(text, "{{") {
			t.Errorf("%s: placeholder left:\n%s", name, text)
		}
		// One comment line before every path.
		lines := strings.Split(text, "\n")
		for i, l := range lines {
			if strings.HasPrefix(l, "path ") && (i == 0 || !strings.HasPrefix(lines[i-1], "# ")) {
				t.Errorf("%s: %q has no comment line", name, l)
			}
		}
	}
	if len(got) != 4 {
		t.Errorf("got %d policies, want 4", len(got))
	}
	if !strings.Contains(got[LMSSigner], `path "transit/sign/keyd-jwt"`) {
		t.Errorf("signer policy does not name the sign path:\n%s", got[LMSSigner])
	}
}

// The admin and auditor markers are named by their own policy alone.
func TestMarkersAreUnique(t *testing.T) {
	got, err := Render("transit", "keyd-jwt", "keyd")
	if err != nil {
		t.Fatal(err)
	}
	markers := map[string]string{Admin: `"keyd/data/roles/admin"`, Auditor: `"keyd/data/roles/auditor"`}
	for owner, marker := range markers {
		for name, text := range got {
			if has := strings.Contains(text, marker); has != (name == owner) {
				t.Errorf("marker %s in %s: %v", marker, name, has)
			}
		}
		for name, text := range got {
			if name != owner && (strings.Contains(text, `"keyd/data/roles/*"`) || strings.Contains(text, `"keyd/*"`) || strings.Contains(text, `"keyd/data/*"`)) {
				t.Errorf("%s has a glob that covers the %s marker", name, owner)
			}
		}
	}
}

func TestRenderRejectsBadNames(t *testing.T) {
	for _, tc := range []struct{ mount, key, kv string }{
		{"", "k", "kv"},
		{"transit", "", "kv"},
		{"transit", "k", ""},
		{"transit", "a*", "kv"},
		{"transit", "a/b", "kv"},
		{`tr"ansit`, "k", "kv"},
		{"transit", "k", "kv+"},
		{"same", "k", "same"},
		{"transit", "k", "kv}}"},
	} {
		if _, err := Render(tc.mount, tc.key, tc.kv); err == nil {
			t.Errorf("Render(%q, %q, %q) accepted", tc.mount, tc.key, tc.kv)
		}
	}
	if _, err := Render("/secrets/transit/", "keyd-jwt", "team/keyd"); err != nil {
		t.Errorf("nested mounts refused: %v", err)
	}
}
