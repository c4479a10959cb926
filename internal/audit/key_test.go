package audit

import "testing"

// TestKeyOf: the one deduplication rule. A transition is (type, version);
// rotation_failed, torn_record and propagation_confirmed add their reason.
func TestKeyOf(t *testing.T) {
	for _, typ := range Types {
		same := KeyOf(typ, 3, "a") == KeyOf(typ, 3, "b")
		byReason := typ == RotationFailed || typ == TornRecord || typ == PropagationConfirmed
		if same == byReason {
			t.Errorf("%s: events differing only in reason share a key: %v, want %v", typ, same, !byReason)
		}
		if KeyOf(typ, 3, "a") == KeyOf(typ, 4, "a") {
			t.Errorf("%s: two versions share a key", typ)
		}
	}
	if KeyOf(Created, 1, "") == KeyOf(Bootstrap, 1, "") {
		t.Error("two types share a key")
	}
}
