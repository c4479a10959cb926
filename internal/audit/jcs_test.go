package audit

import (
	"strings"
	"testing"
)

func TestCanonicalJSONDrop(t *testing.T) {
	got, err := canonicalJSON([]byte(`{"hash":"x","b":{"hash":"kept"},"a":1}`), "hash")
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"a":1,"b":{"hash":"kept"}}`; string(got) != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestCanonicalJSONRejects(t *testing.T) {
	tests := []struct {
		name, in, wantErr string
	}{
		{"duplicate member", `{"a":1,"a":2}`, "duplicate member"},
		{"integer too large", `{"seq":9007199254740993}`, "I-JSON"},
		{"integer far too large", `123456789012345678901234567890`, "I-JSON"},
		{"float overflow", `1e400`, "finite"},
		{"trailing data", `{"a":1} {"b":2}`, "after the top-level value"},
		{"not json", `{"a":`, ""},
		{"empty", ``, "end of input"},
		{"too deep", strings.Repeat("[", 100) + strings.Repeat("]", 100), "levels deep"},
		{"invalid UTF-8", "{\"a\":\"\xff\"}", "invalid UTF-8"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := canonicalJSON([]byte(tc.in), "")
			if err == nil {
				t.Fatal("want an error, got none")
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q does not contain %q", err, tc.wantErr)
			}
		})
	}
}
