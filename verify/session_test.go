package verify

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestVerifySessionExchange(t *testing.T) {
	key := newKey(t, "RS512", "lms")
	clock := newClock()
	v := newTestVerifier(t, staticSet(t, key), clock.Now)

	var checked []string
	disabled := map[string]bool{"mallory": true}
	x, err := NewSessionExchange(v, func(_ context.Context, username string) (bool, error) {
		checked = append(checked, username)
		if username == "broken" {
			return false, errors.New("database down")
		}
		return disabled[username], nil
	})
	if err != nil {
		t.Fatal(err)
	}
	claims := func(edit func(map[string]any)) map[string]any {
		c := claimsAt(epoch)
		edit(c)
		return c
	}
	user := func(name, grant string) func(map[string]any) {
		return func(c map[string]any) { c["preferred_username"], c["grant_type"] = name, grant }
	}

	tests := []struct {
		name        string
		token       string
		wantCode    string // "" means accepted
		wantChecked bool   // the account check ran
	}{
		{"password grant, active account", sign(t, key, claims(user("edx", "password")), nil, false), "", true},
		// Each later check would also fail: the earlier one decides the code.
		{"symmetric, expired, wrong grant, disabled", signHMAC(t, "HS256", key.kid, key.publicPEM(t), claims(func(c map[string]any) {
			user("mallory", "client_credentials")(c)
			c["exp"] = epoch.Add(-time.Hour).Unix()
		})), CodeNonAsymmetricToken, false},
		{"alg none", unsigned(t, map[string]any{"alg": "none", "kid": key.kid}, claims(user("edx", "password"))), CodeNonAsymmetricToken, false},
		{"expired, wrong grant, disabled", sign(t, key, claims(func(c map[string]any) {
			user("mallory", "client_credentials")(c)
			c["iat"], c["exp"] = epoch.Add(-time.Hour).Unix(), epoch.Add(-30*time.Minute).Unix()
		}), nil, false), CodeInvalidToken, false},
		{"client_credentials grant, disabled", sign(t, key, claims(user("mallory", "client_credentials")), nil, false), CodeNonSupportedToken, false},
		{"no grant type", sign(t, key, claims(func(c map[string]any) { delete(c, "grant_type") }), nil, false), CodeNonSupportedToken, false},
		{"password grant, disabled", sign(t, key, claims(user("mallory", "password")), nil, false), CodeAccountDisabled, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checked = nil
			_, err := x.Check(context.Background(), tt.token)
			var xerr *ExchangeError
			switch {
			case tt.wantCode == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.wantCode != "" && (!errors.As(err, &xerr) || xerr.Code != tt.wantCode):
				t.Fatalf("got %v, want code %s", err, tt.wantCode)
			}
			if (len(checked) > 0) != tt.wantChecked {
				t.Errorf("account check ran for %v, want ran=%v", checked, tt.wantChecked)
			}
		})
	}

	t.Run("sentinels", func(t *testing.T) {
		_, err := x.Check(context.Background(), sign(t, key, claims(user("mallory", "password")), nil, false))
		if !errors.Is(err, ErrAccountDisabled) {
			t.Errorf("got %v, want ErrAccountDisabled", err)
		}
		_, err = x.Check(context.Background(), sign(t, key, claims(user("edx", "refresh_token")), nil, false))
		if !errors.Is(err, ErrGrantType) {
			t.Errorf("got %v, want ErrGrantType", err)
		}
	})
	t.Run("account check fails", func(t *testing.T) {
		_, err := x.Check(context.Background(), sign(t, key, claims(user("broken", "password")), nil, false))
		var xerr *ExchangeError
		if err == nil || errors.As(err, &xerr) {
			t.Errorf("got %v, want a plain error (the account check failed, not the token)", err)
		}
	})
	t.Run("username falls back to sub", func(t *testing.T) {
		checked = nil
		c := claimsAt(epoch)
		delete(c, "preferred_username")
		if _, err := x.Check(context.Background(), sign(t, key, c, nil, false)); err != nil || len(checked) != 1 || checked[0] != "anon-1234" {
			t.Errorf("err %v, checked %v", err, checked)
		}
	})
	if _, err := NewSessionExchange(v, nil); err == nil {
		t.Error("nil account check accepted")
	}
}
