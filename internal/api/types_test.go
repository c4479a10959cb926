package api

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/openedx-keyd/keyd/internal/rotation"
)

// TestLifecycleHealthIsTheOldWire: the lifecycle member of /readyz is, byte
// for byte, what serializing rotation.Health gave before the contract had its own
// types, with no member and with every member set.
func TestLifecycleHealthIsTheOldWire(t *testing.T) {
	at := time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)
	for _, tt := range []struct {
		h    rotation.Health
		want string
	}{
		{rotation.Health{}, `{"backend_up":false,"rotation_overdue":false,"stale":false}`},
		{rotation.Health{
			BackendUp: true, LastError: "e", ConfigMismatch: "m", RotationDue: true, NextTransition: "n", ActiveVersion: 3,
			Failing:          &rotation.Failure{Op: "create", Error: "x", Since: at, Failures: 2, Backoff: time.Second, RetryAt: at.Add(time.Second)},
			EmergencyPending: &rotation.EmergencyStatus{After: 2, Reason: "r", Actor: "a", Since: at, Stored: true, LastError: "l"},
			LastRefresh:      "t", Stale: true,
		}, `{"backend_up":true,"last_error":"e","config_mismatch":"m","rotation_overdue":true,"next_transition":"n","active_version":3,` +
			`"failing":{"op":"create","error":"x","since":"2030-01-02T03:04:05.000000006Z","consecutive_failures":2,"retry_at":"2030-01-02T03:04:06.000000006Z"},` +
			`"emergency_pending":{"compromised_up_to_version":2,"reason":"r","actor":"a","since":"2030-01-02T03:04:05.000000006Z","intent_stored":true,"last_error":"l"},` +
			`"last_refresh":"t","stale":true}`},
	} {
		got, err := json.Marshal(lifecycleOf(tt.h))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != tt.want {
			t.Errorf("lifecycle\n got %s\nwant %s", got, tt.want)
		}
	}
}
