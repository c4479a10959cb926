// Package config reads `keyd serve` settings from flags and KEYD_* variables
// and validates them all at once.
package config

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/openedx-keyd/keyd/internal/signer"
)

// MaxTokenLifetimeLimit is the contract's ceiling: JWTs cannot be revoked.
const MaxTokenLifetimeLimit = time.Hour

// Config is the validated serve configuration.
type Config struct {
	Listen           string
	Backend          string
	DataDir          string
	Issuers          []string
	Algorithm        signer.Algorithm
	RotationSchedule string
	Schedule         cron.Schedule
	PropagationDelay time.Duration
	MaxTokenLifetime time.Duration
	ClockSkew        time.Duration
	JWKSMaxAge       time.Duration
	VaultMount       string
	VaultKey         string
	VaultKVMount     string
	TLSCert, TLSKey  string
	// Vault HA and keyd's own login (see DESIGN.md "Vault HA").
	VaultAddrs        []string // empty: VAULT_ADDR
	VaultAuth         string   // token or approle
	VaultRoleID       string
	VaultSecretIDFile string
	SignTimeout       time.Duration
}

// setting is one flag with its environment variable and default.
type setting struct {
	flag, env, def, help string
}

var settings = []setting{
	{"listen", "KEYD_LISTEN", "127.0.0.1:8080", "address to listen on"},
	{"backend", "KEYD_BACKEND", "local", "key backend: local or vault"},
	{"data-dir", "KEYD_DATA_DIR", "./keyd-data", "local backend data directory"},
	{"issuer", "KEYD_ISSUER", "http://localhost:18000/oauth2", "comma list of allowed iss values"},
	{"algorithm", "KEYD_ALGORITHM", "RS512", "algorithm of new keys: RS512, RS256, ES256, EdDSA"},
	{"rotation-schedule", "KEYD_ROTATION_SCHEDULE", "0 0 1 * *", "cron schedule of rotations (UTC), or @every D"},
	{"propagation-delay", "KEYD_PROPAGATION_DELAY", "24h", "time a new key is published before it signs"},
	{"max-token-lifetime", "KEYD_MAX_TOKEN_LIFETIME", "1h", "longest token lifetime (at most 1h)"},
	{"clock-skew", "KEYD_CLOCK_SKEW", "1m", "clock skew allowed between keyd and verifiers"},
	{"jwks-max-age", "KEYD_JWKS_MAX_AGE", "5m", "Cache-Control max-age of the JWKS (below propagation-delay)"},
	{"vault-mount", "KEYD_VAULT_MOUNT", "transit", "Vault transit mount"},
	{"vault-key", "KEYD_VAULT_KEY", "keyd-jwt", "Vault transit key name"},
	{"vault-kv-mount", "KEYD_VAULT_KV_MOUNT", "keyd", "Vault KV v2 mount for lifecycle records and audit"},
	{"tls-cert", "KEYD_TLS_CERT", "", "TLS certificate file (HTTPS when set with --tls-key)"},
	{"tls-key", "KEYD_TLS_KEY", "", "TLS private key file"},
	{"vault-addrs", "KEYD_VAULT_ADDRS", "", "comma list of Vault node URLs, the first healthy one used (overrides VAULT_ADDR)"},
	{"vault-auth", "KEYD_VAULT_AUTH", "token", "keyd's own Vault login: token (VAULT_TOKEN) or approle"},
	{"vault-role-id", "KEYD_VAULT_ROLE_ID", "", "AppRole role ID of keyd-server (--vault-auth approle)"},
	{"vault-secret-id-file", "KEYD_VAULT_SECRET_ID_FILE", "", "file holding the AppRole secret ID (--vault-auth approle)"},
	{"sign-timeout", "KEYD_SIGN_TIMEOUT", "2s", "budget of one Vault sign, retries through a leader election included"},
}

// Flags registers every setting on fs, with its environment variable (when
// set) as the default, and returns the raw values keyed by flag name.
func Flags(fs *flag.FlagSet, names ...string) map[string]*string {
	raw := map[string]*string{}
	for _, s := range settings {
		if len(names) > 0 && !contains(names, s.flag) {
			continue
		}
		def := s.def
		if v, ok := os.LookupEnv(s.env); ok {
			def = v
		}
		raw[s.flag] = fs.String(s.flag, def, s.help+" (env "+s.env+")")
	}
	return raw
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Parse turns raw flag values into a Config, reporting every bad value in
// one error.
func Parse(raw map[string]*string) (*Config, error) {
	get := func(name string) string {
		if p := raw[name]; p != nil {
			return strings.TrimSpace(*p)
		}
		for _, s := range settings {
			if s.flag == name {
				return s.def
			}
		}
		return ""
	}
	var errs []error
	bad := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("--%s: "+format, append([]any{name}, args...)...))
	}
	dur := func(name string) time.Duration {
		d, err := time.ParseDuration(get(name))
		if err != nil {
			bad(name, "%q is not a duration (e.g. 30s, 5m, 24h)", get(name))
			return 0
		}
		if d < 0 || (d == 0 && name != "clock-skew") {
			bad(name, "must be positive, got %s", get(name))
		}
		return d
	}
	c := &Config{
		Listen:            get("listen"),
		Backend:           get("backend"),
		DataDir:           get("data-dir"),
		RotationSchedule:  get("rotation-schedule"),
		PropagationDelay:  dur("propagation-delay"),
		MaxTokenLifetime:  dur("max-token-lifetime"),
		ClockSkew:         dur("clock-skew"),
		JWKSMaxAge:        dur("jwks-max-age"),
		VaultMount:        get("vault-mount"),
		VaultKey:          get("vault-key"),
		VaultKVMount:      get("vault-kv-mount"),
		TLSCert:           get("tls-cert"),
		TLSKey:            get("tls-key"),
		VaultAuth:         get("vault-auth"),
		VaultRoleID:       get("vault-role-id"),
		VaultSecretIDFile: get("vault-secret-id-file"),
		SignTimeout:       dur("sign-timeout"),
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen", "%q is not host:port", c.Listen)
	}
	if c.Backend != "local" && c.Backend != "vault" {
		bad("backend", "must be local or vault, got %q", c.Backend)
	}
	if c.Backend == "local" && c.DataDir == "" {
		bad("data-dir", "must not be empty")
	}
	for _, iss := range strings.Split(get("issuer"), ",") {
		if iss = strings.TrimSpace(iss); iss != "" {
			c.Issuers = append(c.Issuers, iss)
		}
	}
	if len(c.Issuers) == 0 {
		bad("issuer", "needs at least one issuer")
	}
	alg, err := signer.ParseAlgorithm(get("algorithm"))
	if err != nil {
		bad("algorithm", "%q: %v", get("algorithm"), err)
	}
	c.Algorithm = alg
	c.Schedule, err = ParseSchedule(c.RotationSchedule)
	if err != nil {
		bad("rotation-schedule", "%v", err)
	}
	if c.MaxTokenLifetime > MaxTokenLifetimeLimit {
		bad("max-token-lifetime", "%s is above the 1h limit: JWTs cannot be revoked", c.MaxTokenLifetime)
	}
	if c.PropagationDelay > 0 && c.JWKSMaxAge > 0 {
		if c.JWKSMaxAge >= c.PropagationDelay {
			bad("jwks-max-age", "%s must be below --propagation-delay %s, or a verifier could miss a new key", c.JWKSMaxAge, c.PropagationDelay)
		} else if need := c.JWKSMaxAge + c.Refresh(); need >= c.PropagationDelay {
			bad("propagation-delay", "%s is too short: a new key needs up to %s (refresh %s + jwks-max-age %s) to reach every verifier",
				c.PropagationDelay, need, c.Refresh(), c.JWKSMaxAge)
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		bad("tls-cert", "--tls-cert and --tls-key must be set together")
	}
	if c.Backend == "vault" {
		validateVaultHA(c, get("vault-addrs"), bad)
		for _, name := range []string{"vault-mount", "vault-key", "vault-kv-mount"} {
			if get(name) == "" || strings.ContainsAny(get(name), " /") {
				bad(name, "%q is not a valid Vault name", get(name))
			}
		}
	}
	if len(errs) > 0 {
		return nil, &Error{Errs: errs}
	}
	return c, nil
}

// validateVaultHA checks the Vault addresses and keyd's own login.
func validateVaultHA(c *Config, addrs string, bad func(name, format string, args ...any)) {
	for _, a := range strings.Split(addrs, ",") {
		if a = strings.TrimSpace(a); a == "" {
			continue
		}
		if u, err := url.Parse(a); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("vault-addrs", "%q is not an http(s) URL", a)
			continue
		}
		c.VaultAddrs = append(c.VaultAddrs, a)
	}
	switch c.VaultAuth {
	case "token":
	case "approle":
		if c.VaultRoleID == "" {
			bad("vault-role-id", "must be set with --vault-auth approle")
		}
		if c.VaultSecretIDFile == "" {
			bad("vault-secret-id-file", "must be set with --vault-auth approle")
		}
	default:
		bad("vault-auth", "must be token or approle, got %q", c.VaultAuth)
	}
}

// Error lists every bad setting.
type Error struct{ Errs []error }

func (e *Error) Error() string {
	msgs := make([]string, len(e.Errs))
	for i, err := range e.Errs {
		msgs[i] = err.Error()
	}
	return "bad configuration: " + strings.Join(msgs, "; ")
}

// Unwrap returns the individual errors.
func (e *Error) Unwrap() []error { return e.Errs }

// ParseSchedule parses a standard 5-field cron spec (UTC) or a descriptor
// such as @every 10s or @monthly.
func ParseSchedule(spec string) (cron.Schedule, error) {
	if spec == "" {
		return nil, errors.New("empty schedule")
	}
	p := cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)
	s, err := p.Parse(spec)
	if err != nil {
		return nil, fmt.Errorf("%q is not a cron schedule: %v", spec, err)
	}
	if strings.HasPrefix(spec, "TZ=") || strings.HasPrefix(spec, "CRON_TZ=") {
		return nil, fmt.Errorf("%q: schedules are always UTC; remove the time zone", spec)
	}
	return s, nil
}

// RetireAfter is how long a key stays published after it stops signing.
func (c *Config) RetireAfter() time.Duration { return c.MaxTokenLifetime + 2*c.ClockSkew }

// Refresh is how often keyd re-reads the backend for other replicas'
// changes: at most 10s, and short enough that refresh + jwks-max-age stays
// below the propagation delay.
func (c *Config) Refresh() time.Duration {
	r := (c.PropagationDelay - c.JWKSMaxAge) / 3
	return max(min(r, 10*time.Second), 50*time.Millisecond)
}
