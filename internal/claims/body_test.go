package claims

import (
	"strings"
	"testing"
)

func TestDecodeBody(t *testing.T) {
	allowed := []string{"emergency", "reason", "adopt_settings"}
	refused := []struct{ body, code, msg string }{
		{`{"emergency":false,"EMERGENCY":true}`, CodeUnknownMember, `Member "EMERGENCY" is not allowed in the request body; only "emergency", "reason" and "adopt_settings" are.`},
		{`{"emergency":false,"emergency":true}`, CodeDuplicateMember, `Member "emergency" appears more than once in the request body.`},
		{`{"reason":{"a":1,"a":2}}`, CodeDuplicateMember, `in "reason".`},
		{`[]`, CodeInvalidRequest, "must be a JSON object"},
		{`{} {}`, CodeInvalidJSON, "not valid JSON"},
	}
	for _, tt := range refused {
		_, err := DecodeBody([]byte(tt.body), allowed...)
		e, ok := err.(*Error)
		if !ok || e.Status != 400 || e.Code != tt.code || !strings.Contains(e.Message, tt.msg) {
			t.Errorf("DecodeBody(%s) = %v, want a 400 %s with %q", tt.body, err, tt.code, tt.msg)
		}
	}

	b, err := DecodeBody([]byte(`{"reason":"leak","emergency":true}`), allowed...)
	if err != nil {
		t.Fatal(err)
	}
	em, err1 := b.Bool("emergency")
	adopt, err2 := b.Bool("adopt_settings")
	reason, err3 := b.String("reason")
	if !em || adopt || reason != "leak" || err1 != nil || err2 != nil || err3 != nil || !b.Has("reason") || b.Has("adopt_settings") {
		t.Errorf("got emergency=%v adopt=%v reason=%q (%v %v %v)", em, adopt, reason, err1, err2, err3)
	}
	if _, err := b.String("emergency"); err == nil {
		t.Error(`String("emergency") of a bool: no error`)
	}
	if _, err := b.Bool("reason"); err == nil {
		t.Error(`Bool("reason") of a string: no error`)
	}
}
