package config_test

import (
	"errors"
	"flag"
	"io"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/openedx-keyd/keyd/internal/config"
	"github.com/openedx-keyd/keyd/internal/signer"
)

// envNames lists every KEYD_* variable of the contract's serve table.
var envNames = []string{
	"KEYD_LISTEN", "KEYD_BACKEND", "KEYD_DATA_DIR", "KEYD_ISSUER", "KEYD_ALGORITHM",
	"KEYD_ROTATION_SCHEDULE", "KEYD_PROPAGATION_DELAY", "KEYD_MAX_TOKEN_LIFETIME",
	"KEYD_CLOCK_SKEW", "KEYD_JWKS_MAX_AGE", "KEYD_VAULT_MOUNT", "KEYD_VAULT_KEY",
	"KEYD_VAULT_KV_MOUNT", "KEYD_TLS_CERT", "KEYD_TLS_KEY",
}

// clearEnv unsets every KEYD_* setting for the test (restored afterwards).
func clearEnv(t *testing.T) {
	t.Helper()
	for _, name := range envNames {
		t.Setenv(name, "") // registers the restore
		os.Unsetenv(name)
	}
}

// parse registers the settings on a fresh FlagSet (reading the environment
// as it is now), parses args and validates.
func parse(t *testing.T, args ...string) (*config.Config, error) {
	t.Helper()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	raw := config.Flags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("flag parse %q: %v", args, err)
	}
	return config.Parse(raw)
}

func mustParse(t *testing.T, args ...string) *config.Config {
	t.Helper()
	c, err := parse(t, args...)
	if err != nil {
		t.Fatalf("Parse(%q): %v", args, err)
	}
	return c
}

func TestDefaultsMatchContract(t *testing.T) {
	clearEnv(t)
	want := config.Config{
		Listen:           "127.0.0.1:8080",
		Backend:          "local",
		DataDir:          "./keyd-data",
		Issuers:          []string{"http://localhost:18000/oauth2"},
		Algorithm:        signer.RS512,
		RotationSchedule: "0 0 1 * *",
		PropagationDelay: 24 * time.Hour,
		MaxTokenLifetime: time.Hour,
		ClockSkew:        time.Minute,
		JWKSMaxAge:       5 * time.Minute,
		VaultMount:       "transit",
		VaultKey:         "keyd-jwt",
		VaultKVMount:     "keyd",
		VaultAuth:        "token",
		SignTimeout:      2 * time.Second,
		// Observed propagation: no gating by default.
		InstanceWindow:    time.Hour,
		ActivationMaxWait: 168 * time.Hour,
	}
	for name, got := range map[string]*config.Config{
		"flags":     mustParse(t),
		"nil map":   mustParseRaw(t, nil),
		"empty map": mustParseRaw(t, map[string]*string{}),
	} {
		t.Run(name, func(t *testing.T) {
			if got.Schedule == nil {
				t.Fatal("Schedule is nil")
			}
			// 0 0 1 * * in UTC: midnight on the first of each month.
			from := time.Date(2030, 1, 15, 12, 0, 0, 0, time.UTC)
			if next, want := got.Schedule.Next(from), time.Date(2030, 2, 1, 0, 0, 0, 0, time.UTC); !next.Equal(want) {
				t.Errorf("Schedule.Next(%v) = %v, want %v", from, next, want)
			}
			c := *got
			c.Schedule = nil
			if !reflect.DeepEqual(c, want) {
				t.Errorf("defaults:\n got %+v\nwant %+v", c, want)
			}
		})
	}
}

func mustParseRaw(t *testing.T, raw map[string]*string) *config.Config {
	t.Helper()
	c, err := config.Parse(raw)
	if err != nil {
		t.Fatalf("Parse(%v): %v", raw, err)
	}
	return c
}

func TestEnvAndFlags(t *testing.T) {
	tests := []struct {
		flag, env        string
		envVal, flagVal  string
		also             map[string]string // other variables the value needs
		get              func(*config.Config) any
		wantEnv, wantFlg any
	}{
		{flag: "listen", env: "KEYD_LISTEN", envVal: "0.0.0.0:9000", flagVal: "127.0.0.1:9001",
			get: func(c *config.Config) any { return c.Listen }, wantEnv: "0.0.0.0:9000", wantFlg: "127.0.0.1:9001"},
		{flag: "backend", env: "KEYD_BACKEND", envVal: "vault", flagVal: "local",
			get: func(c *config.Config) any { return c.Backend }, wantEnv: "vault", wantFlg: "local"},
		{flag: "data-dir", env: "KEYD_DATA_DIR", envVal: "/var/lib/keyd", flagVal: "/tmp/keyd",
			get: func(c *config.Config) any { return c.DataDir }, wantEnv: "/var/lib/keyd", wantFlg: "/tmp/keyd"},
		{flag: "issuer", env: "KEYD_ISSUER", envVal: "https://a/oauth2, https://b/oauth2", flagVal: "https://c/oauth2",
			get:     func(c *config.Config) any { return c.Issuers },
			wantEnv: []string{"https://a/oauth2", "https://b/oauth2"}, wantFlg: []string{"https://c/oauth2"}},
		{flag: "algorithm", env: "KEYD_ALGORITHM", envVal: "ES256", flagVal: "EdDSA",
			get: func(c *config.Config) any { return c.Algorithm }, wantEnv: signer.ES256, wantFlg: signer.EdDSA},
		{flag: "rotation-schedule", env: "KEYD_ROTATION_SCHEDULE", envVal: "@weekly", flagVal: "0 3 * * 1",
			get: func(c *config.Config) any { return c.RotationSchedule }, wantEnv: "@weekly", wantFlg: "0 3 * * 1"},
		{flag: "propagation-delay", env: "KEYD_PROPAGATION_DELAY", envVal: "48h", flagVal: "12h",
			get: func(c *config.Config) any { return c.PropagationDelay }, wantEnv: 48 * time.Hour, wantFlg: 12 * time.Hour},
		{flag: "max-token-lifetime", env: "KEYD_MAX_TOKEN_LIFETIME", envVal: "30m", flagVal: "45m",
			get: func(c *config.Config) any { return c.MaxTokenLifetime }, wantEnv: 30 * time.Minute, wantFlg: 45 * time.Minute},
		{flag: "clock-skew", env: "KEYD_CLOCK_SKEW", envVal: "30s", flagVal: "0s",
			get: func(c *config.Config) any { return c.ClockSkew }, wantEnv: 30 * time.Second, wantFlg: time.Duration(0)},
		{flag: "jwks-max-age", env: "KEYD_JWKS_MAX_AGE", envVal: "1m", flagVal: "10m",
			get: func(c *config.Config) any { return c.JWKSMaxAge }, wantEnv: time.Minute, wantFlg: 10 * time.Minute},
		{flag: "vault-mount", env: "KEYD_VAULT_MOUNT", envVal: "transit-env", flagVal: "transit-flag",
			get: func(c *config.Config) any { return c.VaultMount }, wantEnv: "transit-env", wantFlg: "transit-flag"},
		{flag: "vault-key", env: "KEYD_VAULT_KEY", envVal: "key-env", flagVal: "key-flag",
			get: func(c *config.Config) any { return c.VaultKey }, wantEnv: "key-env", wantFlg: "key-flag"},
		{flag: "vault-kv-mount", env: "KEYD_VAULT_KV_MOUNT", envVal: "kv-env", flagVal: "kv-flag",
			get: func(c *config.Config) any { return c.VaultKVMount }, wantEnv: "kv-env", wantFlg: "kv-flag"},
		{flag: "tls-cert", env: "KEYD_TLS_CERT", envVal: "env.crt", flagVal: "flag.crt", also: map[string]string{"KEYD_TLS_KEY": "k.pem"},
			get: func(c *config.Config) any { return c.TLSCert }, wantEnv: "env.crt", wantFlg: "flag.crt"},
		{flag: "tls-key", env: "KEYD_TLS_KEY", envVal: "env.key", flagVal: "flag.key", also: map[string]string{"KEYD_TLS_CERT": "c.pem"},
			get: func(c *config.Config) any { return c.TLSKey }, wantEnv: "env.key", wantFlg: "flag.key"},
	}
	covered := map[string]bool{}
	for _, tt := range tests {
		covered[tt.env] = true
		t.Run(tt.flag, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tt.also {
				t.Setenv(k, v)
			}
			t.Setenv(tt.env, tt.envVal)
			if got := tt.get(mustParse(t)); !reflect.DeepEqual(got, tt.wantEnv) {
				t.Errorf("from %s=%q: got %v, want %v", tt.env, tt.envVal, got, tt.wantEnv)
			}
			if got := tt.get(mustParse(t, "--"+tt.flag, tt.flagVal)); !reflect.DeepEqual(got, tt.wantFlg) {
				t.Errorf("--%s %q with %s=%q: got %v, want %v (the flag must win)", tt.flag, tt.flagVal, tt.env, tt.envVal, got, tt.wantFlg)
			}
		})
	}
	for _, name := range envNames {
		if !covered[name] {
			t.Errorf("no test for %s", name)
		}
	}
}

func TestBadValues(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want []string // flags the error must name, one error each
	}{
		{"max-token-lifetime 2h", []string{"--max-token-lifetime", "2h"}, nil, []string{"max-token-lifetime"}},
		{"max-token-lifetime 0", []string{"--max-token-lifetime", "0s"}, nil, []string{"max-token-lifetime"}},
		{"max-token-lifetime not a duration", []string{"--max-token-lifetime", "an hour"}, nil, []string{"max-token-lifetime"}},
		{"unknown algorithm", []string{"--algorithm", "HS256"}, nil, []string{"algorithm"}},
		{"algorithm none", []string{"--algorithm", "none"}, nil, []string{"algorithm"}},
		{"algorithm in lower case", []string{"--algorithm", "rs512"}, nil, []string{"algorithm"}},
		{"unparsable schedule", []string{"--rotation-schedule", "every tuesday"}, nil, []string{"rotation-schedule"}},
		{"schedule with seconds field", []string{"--rotation-schedule", "0 0 0 1 * *"}, nil, []string{"rotation-schedule"}},
		{"schedule with a time zone", []string{"--rotation-schedule", "CRON_TZ=Europe/Paris 0 0 1 * *"}, nil, []string{"rotation-schedule"}},
		{"empty schedule", []string{"--rotation-schedule", ""}, nil, []string{"rotation-schedule"}},
		{"jwks-max-age equal to propagation-delay", []string{"--jwks-max-age", "24h"}, nil, []string{"jwks-max-age"}},
		{"jwks-max-age above propagation-delay", []string{"--jwks-max-age", "48h"}, nil, []string{"jwks-max-age"}},
		{"propagation-delay too short for refresh", []string{"--propagation-delay", "1s", "--jwks-max-age", "990ms", "--rotation-schedule", "@every 1m"}, nil, []string{"propagation-delay"}},
		{"propagation-delay not a duration", []string{"--propagation-delay", "a day"}, nil, []string{"propagation-delay"}},
		{"propagation-delay negative", []string{"--propagation-delay", "-24h"}, nil, []string{"propagation-delay"}},
		{"clock-skew negative", []string{"--clock-skew", "-1s"}, nil, []string{"clock-skew"}},
		{"clock-skew without unit", []string{"--clock-skew", "60"}, nil, []string{"clock-skew"}},
		{"jwks-max-age without unit", []string{"--jwks-max-age", "300"}, nil, []string{"jwks-max-age"}},
		{"jwks-max-age zero", []string{"--jwks-max-age", "0s"}, nil, []string{"jwks-max-age"}},
		{"bad backend", []string{"--backend", "s3"}, nil, []string{"backend"}},
		{"bad backend from env", nil, map[string]string{"KEYD_BACKEND": "etcd"}, []string{"backend"}},
		{"tls-cert without tls-key", []string{"--tls-cert", "cert.pem"}, nil, []string{"tls-cert"}},
		{"tls-key without tls-cert", []string{"--tls-key", "key.pem"}, nil, []string{"tls-key"}},
		{"empty issuer", []string{"--issuer", ""}, nil, []string{"issuer"}},
		{"issuer of commas", []string{"--issuer", " , ,"}, nil, []string{"issuer"}},
		{"listen not host:port", []string{"--listen", "8080"}, nil, []string{"listen"}},
		{"empty data-dir", []string{"--data-dir", ""}, nil, []string{"data-dir"}},
		{"vault key with a slash", []string{"--backend", "vault", "--vault-key", "a/b"}, nil, []string{"vault-key"}},
		{"vault mount empty", []string{"--backend", "vault", "--vault-mount", ""}, nil, []string{"vault-mount"}},
		{
			"several at once",
			[]string{"--max-token-lifetime", "2h", "--algorithm", "HS256", "--jwks-max-age", "48h",
				"--backend", "s3", "--issuer", "", "--rotation-schedule", "bogus", "--tls-cert", "c.pem", "--clock-skew", "soon"},
			nil,
			[]string{"max-token-lifetime", "algorithm", "jwks-max-age", "backend", "issuer", "rotation-schedule", "tls-cert", "clock-skew"},
		},
		{
			"several at once from env and flags",
			[]string{"--algorithm", "HS256"},
			map[string]string{"KEYD_MAX_TOKEN_LIFETIME": "2h", "KEYD_JWKS_MAX_AGE": "48h"},
			[]string{"algorithm", "max-token-lifetime", "jwks-max-age"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			c, err := parse(t, tt.args...)
			if err == nil {
				t.Fatalf("Parse(%q) = %+v, want an error naming %v", tt.args, c, tt.want)
			}
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %T %v is not a *config.Error", err, err)
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("error is not one line: %q", msg)
			}
			if !strings.HasPrefix(msg, "bad configuration: ") {
				t.Errorf("error %q does not start with \"bad configuration: \"", msg)
			}
			for _, name := range tt.want {
				if !strings.Contains(msg, "--"+name) {
					t.Errorf("error does not name --%s: %q", name, msg)
				}
			}
			if got := len(ce.Errs); got != len(tt.want) {
				t.Errorf("got %d errors, want %d (%v): %q", got, len(tt.want), tt.want, msg)
			}
		})
	}
}

// TestScheduleShorterThanPropagationIsValid: the contract's own example
// schedule with the default 24h propagation. A rotation due while a key is
// still pending does nothing (docs/design.md "Key lifecycle", rule 1), so this is slow, not unsafe.
func TestScheduleShorterThanPropagationIsValid(t *testing.T) {
	clearEnv(t)
	mustParse(t, "--rotation-schedule", "@every 10s")
}

func TestSecondScaleSettingsAreValid(t *testing.T) {
	clearEnv(t)
	c := mustParse(t, "--rotation-schedule", "@every 3s", "--propagation-delay", "2s",
		"--max-token-lifetime", "5s", "--clock-skew", "1s", "--jwks-max-age", "1s")
	got := []time.Duration{c.PropagationDelay, c.MaxTokenLifetime, c.ClockSkew, c.JWKSMaxAge, c.RetireAfter()}
	want := []time.Duration{2 * time.Second, 5 * time.Second, time.Second, time.Second, 7 * time.Second}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("durations = %v, want %v", got, want)
	}
	from := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	if next := c.Schedule.Next(from); next.Sub(from) != 3*time.Second {
		t.Errorf("@every 3s: Next is %v after, want 3s", next.Sub(from))
	}
	// The refresh plus the JWKS cache must fit in the propagation delay.
	if r := c.Refresh(); r <= 0 || r+c.JWKSMaxAge >= c.PropagationDelay {
		t.Errorf("Refresh() = %v: with jwks-max-age %v it does not fit in %v", r, c.JWKSMaxAge, c.PropagationDelay)
	}
}

func TestRefreshBounds(t *testing.T) {
	clearEnv(t)
	if got := mustParse(t).Refresh(); got != 10*time.Second {
		t.Errorf("default Refresh() = %v, want 10s", got)
	}
}

func TestFlagsSubset(t *testing.T) {
	clearEnv(t)
	fs := flag.NewFlagSet("bootstrap", flag.ContinueOnError)
	raw := config.Flags(fs, "algorithm", "vault-key")
	if len(raw) != 2 || raw["algorithm"] == nil || raw["vault-key"] == nil {
		t.Fatalf("Flags(fs, algorithm, vault-key) = %v, want exactly those two", raw)
	}
	if fs.Lookup("listen") != nil {
		t.Error("Flags registered --listen, which was not asked for")
	}
}

func TestVaultHASettings(t *testing.T) {
	str := func(s string) *string { return &s }
	c, err := config.Parse(map[string]*string{
		"backend": str("vault"), "vault-addrs": str(" http://127.0.0.1:8200, https://vault-2:8200 "),
		"vault-auth": str("approle"), "vault-role-id": str("r"), "vault-secret-id-file": str("/run/secret"),
		"sign-timeout": str("3s"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"http://127.0.0.1:8200", "https://vault-2:8200"}; !reflect.DeepEqual(c.VaultAddrs, want) || c.SignTimeout != 3*time.Second {
		t.Errorf("got addrs %q timeout %s", c.VaultAddrs, c.SignTimeout)
	}
	_, err = config.Parse(map[string]*string{
		"backend": str("vault"), "vault-addrs": str("vault-1:8200"), "vault-auth": str("approle"), "sign-timeout": str("0s"),
	})
	for _, name := range []string{"--vault-addrs", "--vault-role-id", "--vault-secret-id-file", "--sign-timeout"} {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("error %v does not name %s", err, name)
		}
	}
	if _, err := config.Parse(map[string]*string{"backend": str("vault"), "vault-auth": str("ldap")}); err == nil || !strings.Contains(err.Error(), "--vault-auth") {
		t.Errorf("vault-auth ldap: %v", err)
	}
}

// TestExpectedClients: --expected-clients and its windows.
func TestExpectedClients(t *testing.T) {
	set := func(kv ...string) map[string]*string {
		raw := map[string]*string{}
		for i := 0; i < len(kv); i += 2 {
			raw[kv[i]] = &kv[i+1]
		}
		return raw
	}
	c, err := config.Parse(set("expected-clients", " ecommerce, discovery ,", "instance-window", "30m", "activation-max-wait", "2h"))
	if err != nil || !reflect.DeepEqual(c.ExpectedClients, []string{"ecommerce", "discovery"}) || c.InstanceWindow != 30*time.Minute || c.ActivationMaxWait != 2*time.Hour {
		t.Fatalf("got %+v, %v", c, err)
	}
	for _, tt := range []struct{ name, list, window, wait, bad string }{
		{"bad name", "ecommerce,no spaces", "1h", "1h", "--expected-clients"},
		{"too long", strings.Repeat("a", 65), "1h", "1h", "--expected-clients"},
		{"twice", "a,a", "1h", "1h", "--expected-clients"},
		{"window not above jwks-max-age", "a", "5m", "1h", "--instance-window"},
		{"zero max wait", "a", "1h", "0s", "--activation-max-wait"},
	} {
		if _, err := config.Parse(set("expected-clients", tt.list, "instance-window", tt.window, "activation-max-wait", tt.wait)); err == nil || !strings.Contains(err.Error(), tt.bad) {
			t.Errorf("%s: got %v, want an error naming %s", tt.name, err, tt.bad)
		}
	}
}

// TestWeakRoleTokens: a local-mode role token from the environment shorter
// than 32 characters is described for a warning (never its value); it does
// not stop keyd (demos and existing installs set short ones).
func TestWeakRoleTokens(t *testing.T) {
	env := map[string]string{
		"KEYD_SIGNER_TOKEN":  "s3cr3t-but-short",
		"KEYD_ADMIN_TOKEN":   strings.Repeat("a", config.MinRoleTokenLength),
		"KEYD_AUDITOR_TOKEN": "  " + strings.Repeat("é", config.MinRoleTokenLength-1) + "  ",
	}
	weak := config.WeakRoleTokens(func(k string) string { return env[k] })
	if len(weak) != 2 {
		t.Fatalf("got %d warnings, want 2 (signer, auditor): %q", len(weak), weak)
	}
	msg := strings.Join(weak, "\n")
	for _, want := range []string{"KEYD_SIGNER_TOKEN has 16 characters: a role token should have at least 32", "KEYD_AUDITOR_TOKEN has 31"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the warnings do not say %q: %s", want, msg)
		}
	}
	if strings.Contains(msg, "KEYD_ADMIN_TOKEN") || strings.Contains(msg, "s3cr3t") {
		t.Errorf("a warning names a good token or shows a token's value: %s", msg)
	}
	clearEnv(t)
	t.Setenv("KEYD_SIGNER_TOKEN", "short")
	mustParse(t)
}
