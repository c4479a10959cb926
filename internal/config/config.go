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
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/robfig/cron/v3"

	"github.com/openedx-keyd/keyd/internal/signer"
)

// MaxTokenLifetimeLimit is the contract's ceiling: JWTs cannot be revoked.
const MaxTokenLifetimeLimit = time.Hour

// MinRoleTokenLength is the shortest local-mode role token keyd takes from
// the environment without a warning: anyone who can reach keyd can try
// tokens, so a token should be too long to guess (the generated ones are 43
// random base64url characters after their prefix). A shorter one is warned
// about at every start, not refused: demos, tests and existing installs
// that set short tokens keep working, and the log says what to change.
const MinRoleTokenLength = 32

// RoleTokenEnvs are the variables of the local-mode role tokens.
var RoleTokenEnvs = []string{"KEYD_SIGNER_TOKEN", "KEYD_ADMIN_TOKEN", "KEYD_AUDITOR_TOKEN"}

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
	// Vault HA and keyd's own login (see docs/design.md "Vault HA").
	VaultAddrs        []string // empty: VAULT_ADDR
	VaultAuth         string   // token or approle
	VaultRoleID       string
	VaultSecretIDFile string
	SignTimeout       time.Duration
	// Observed propagation (see docs/design.md "Observed propagation").
	ExpectedClients   []string // empty: no gating
	InstanceWindow    time.Duration
	ActivationMaxWait time.Duration
}

// setting is one flag with its environment variable, its default and its
// validator.
type setting struct {
	flag, env, def, help string
	// parse stores v (trimmed) in its field of the Config and reports,
	// through bad, what is wrong with v alone. Rules across settings are
	// in (*Config).validate.
	parse func(v string, bad reporter)
}

// reporter records one bad value of the setting it was made for.
type reporter func(format string, args ...any)

// settings is the settings table, each validator storing into c.
func (c *Config) settings() []setting {
	return []setting{
		{"listen", "KEYD_LISTEN", "127.0.0.1:8080", "address to listen on", hostPort(&c.Listen)},
		{"backend", "KEYD_BACKEND", "local", "key backend: local or vault", oneOf(&c.Backend, "local", "vault")},
		{"data-dir", "KEYD_DATA_DIR", "./keyd-data", "local backend data directory", text(&c.DataDir)},
		{"issuer", "KEYD_ISSUER", "http://localhost:18000/oauth2", "comma list of allowed iss values", issuers(&c.Issuers)},
		{"algorithm", "KEYD_ALGORITHM", "RS512", "algorithm of new keys: RS512, RS256, ES256, EdDSA", algorithm(&c.Algorithm)},
		{"rotation-schedule", "KEYD_ROTATION_SCHEDULE", "0 0 1 * *", "cron schedule of rotations (UTC), or @every D", schedule(&c.RotationSchedule, &c.Schedule)},
		{"propagation-delay", "KEYD_PROPAGATION_DELAY", "24h", "time a new key is published before it signs", positive(&c.PropagationDelay)},
		{"max-token-lifetime", "KEYD_MAX_TOKEN_LIFETIME", "1h", "longest token lifetime (at most 1h)", maxTokenLifetime(&c.MaxTokenLifetime)},
		{"clock-skew", "KEYD_CLOCK_SKEW", "1m", "clock skew allowed between keyd and verifiers", nonNegative(&c.ClockSkew)},
		{"jwks-max-age", "KEYD_JWKS_MAX_AGE", "5m", "Cache-Control max-age of the JWKS (below propagation-delay)", positive(&c.JWKSMaxAge)},
		{"vault-mount", "KEYD_VAULT_MOUNT", "transit", "Vault transit mount", text(&c.VaultMount)},
		{"vault-key", "KEYD_VAULT_KEY", "keyd-jwt", "Vault transit key name", text(&c.VaultKey)},
		{"vault-kv-mount", "KEYD_VAULT_KV_MOUNT", "keyd", "Vault KV v2 mount for lifecycle records and audit", text(&c.VaultKVMount)},
		{"tls-cert", "KEYD_TLS_CERT", "", "TLS certificate file (HTTPS when set with --tls-key)", text(&c.TLSCert)},
		{"tls-key", "KEYD_TLS_KEY", "", "TLS private key file", text(&c.TLSKey)},
		{"vault-addrs", "KEYD_VAULT_ADDRS", "", "comma list of Vault node URLs, the first healthy one used (overrides VAULT_ADDR)", list(&c.VaultAddrs)},
		{"vault-auth", "KEYD_VAULT_AUTH", "token", "keyd's own Vault login: token (VAULT_TOKEN) or approle", text(&c.VaultAuth)},
		{"vault-role-id", "KEYD_VAULT_ROLE_ID", "", "AppRole role ID of keyd-server (--vault-auth approle)", text(&c.VaultRoleID)},
		{"vault-secret-id-file", "KEYD_VAULT_SECRET_ID_FILE", "", "file holding the AppRole secret ID (--vault-auth approle)", text(&c.VaultSecretIDFile)},
		{"sign-timeout", "KEYD_SIGN_TIMEOUT", "2s", "budget of a whole sign request: the caller's authorization, the Vault calls and their retries through a leader election", positive(&c.SignTimeout)},
		{"expected-clients", "KEYD_EXPECTED_CLIENTS", "", "comma list of Keyd-Client names that must hold a new key before it signs (empty: no gating)", clientNames(&c.ExpectedClients)},
		{"instance-window", "KEYD_INSTANCE_WINDOW", "1h", "an instance that fetched the JWKS within this long counts for its client", positive(&c.InstanceWindow)},
		{"activation-max-wait", "KEYD_ACTIVATION_MAX_WAIT", "168h", "a gated key activates this long after activates_at at the latest, confirmed or not", positive(&c.ActivationMaxWait)},
	}
}

// Flags registers every setting on fs, with its environment variable (when
// set) as the default, and returns the raw values keyed by flag name.
func Flags(fs *flag.FlagSet, names ...string) map[string]*string {
	raw := map[string]*string{}
	for _, s := range new(Config).settings() {
		if len(names) > 0 && !slices.Contains(names, s.flag) {
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

// Parse turns raw flag values into a Config, reporting every bad value in
// one error: each setting's own validator, then the rules across settings.
func Parse(raw map[string]*string) (*Config, error) {
	var errs []error
	bad := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("--%s: "+format, append([]any{name}, args...)...))
	}
	c := &Config{}
	for _, s := range c.settings() {
		v := s.def
		if p := raw[s.flag]; p != nil {
			v = strings.TrimSpace(*p)
		}
		s.parse(v, func(format string, args ...any) { bad(s.flag, format, args...) })
	}
	c.validate(bad)
	if len(errs) > 0 {
		return nil, &Error{Errs: errs}
	}
	return c, nil
}

// validate checks the rules that tie settings together, on values each
// setting's validator has already read.
func (c *Config) validate(bad func(name, format string, args ...any)) {
	if c.Backend == "local" && c.DataDir == "" {
		bad("data-dir", "must not be empty")
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
		c.validateVault(bad)
	}
	if len(c.ExpectedClients) > 0 && c.InstanceWindow > 0 && c.InstanceWindow <= c.JWKSMaxAge {
		bad("instance-window", "%s must be above --jwks-max-age %s, or an instance that fetches on time would look silent", c.InstanceWindow, c.JWKSMaxAge)
	}
}

// validateVault checks the Vault settings, which only --backend vault reads:
// the addresses, keyd's own login and the mount and key names.
func (c *Config) validateVault(bad func(name, format string, args ...any)) {
	for _, a := range c.VaultAddrs {
		if u, err := url.Parse(a); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("vault-addrs", "%q is not an http(s) URL", a)
		}
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
	for _, n := range []struct{ flag, v string }{{"vault-mount", c.VaultMount}, {"vault-key", c.VaultKey}, {"vault-kv-mount", c.VaultKVMount}} {
		if n.v == "" || strings.ContainsAny(n.v, " /") {
			bad(n.flag, "%q is not a valid Vault name", n.v)
		}
	}
}

// WeakRoleTokens describes each local-mode role token of the environment
// that is shorter than MinRoleTokenLength (never its value), for one
// warning line each at start.
func WeakRoleTokens(getenv func(string) string) []string {
	var weak []string
	for _, env := range RoleTokenEnvs {
		tok := strings.TrimSpace(getenv(env))
		if n := utf8.RuneCountInString(tok); n > 0 && n < MinRoleTokenLength {
			weak = append(weak, fmt.Sprintf("%s has %d characters: a role token should have at least %d, or it can be guessed "+
				"(use e.g. openssl rand -base64 32, or unset it and keyd generates one into <data-dir>/tokens/)", env, n, MinRoleTokenLength))
		}
	}
	return weak
}

// The validators of the settings table.

// text stores a free string.
func text(field *string) func(string, reporter) {
	return func(v string, _ reporter) { *field = v }
}

// list stores a comma list: its non-empty items, trimmed.
func list(field *[]string) func(string, reporter) {
	return func(v string, _ reporter) { *field = splitList(v) }
}

func splitList(v string) []string {
	var out []string
	for _, item := range strings.Split(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// positive stores a duration above zero.
func positive(field *time.Duration) func(string, reporter) { return duration(field, false) }

// nonNegative stores a duration of zero or more.
func nonNegative(field *time.Duration) func(string, reporter) { return duration(field, true) }

// duration stores a duration, which must be positive (or zero, when
// zeroOK).
func duration(field *time.Duration, zeroOK bool) func(string, reporter) {
	return func(v string, bad reporter) {
		d, err := time.ParseDuration(v)
		if err != nil {
			bad("%q is not a duration (e.g. 30s, 5m, 24h)", v)
			return
		}
		if d < 0 || (d == 0 && !zeroOK) {
			bad("must be positive, got %s", v)
		}
		*field = d
	}
}

// maxTokenLifetime is a positive duration within MaxTokenLifetimeLimit.
func maxTokenLifetime(field *time.Duration) func(string, reporter) {
	return func(v string, bad reporter) {
		positive(field)(v, bad)
		if *field > MaxTokenLifetimeLimit {
			bad("%s is above the 1h limit: JWTs cannot be revoked", *field)
		}
	}
}

func hostPort(field *string) func(string, reporter) {
	return func(v string, bad reporter) {
		*field = v
		if _, _, err := net.SplitHostPort(v); err != nil {
			bad("%q is not host:port", v)
		}
	}
}

func oneOf(field *string, a, b string) func(string, reporter) {
	return func(v string, bad reporter) {
		*field = v
		if v != a && v != b {
			bad("must be %s or %s, got %q", a, b, v)
		}
	}
}

func issuers(field *[]string) func(string, reporter) {
	return func(v string, bad reporter) {
		if *field = splitList(v); len(*field) == 0 {
			bad("needs at least one issuer")
		}
	}
}

func algorithm(field *signer.Algorithm) func(string, reporter) {
	return func(v string, bad reporter) {
		alg, err := signer.ParseAlgorithm(v)
		if err != nil {
			bad("%q: %v", v, err)
		}
		*field = alg
	}
}

// schedule stores the spec and the schedule it parses to.
func schedule(spec *string, field *cron.Schedule) func(string, reporter) {
	return func(v string, bad reporter) {
		*spec = v
		s, err := ParseSchedule(v)
		if err != nil {
			bad("%v", err)
		}
		*field = s
	}
}

// clientNames reads --expected-clients: names as in Keyd-Client
// ([A-Za-z0-9._:-]{1,64}), each once.
func clientNames(field *[]string) func(string, reporter) {
	return func(v string, bad reporter) {
		for _, name := range splitList(v) {
			switch {
			case !signer.ValidName(name):
				bad("%q is not a client name ([A-Za-z0-9._:-], 1 to 64 characters)", name)
			case slices.Contains(*field, name):
				bad("%q is listed twice", name)
			default:
				*field = append(*field, name)
			}
		}
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
