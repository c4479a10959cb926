// Command keyd is the signing-key and JWKS service for an Open edX platform:
// `keyd serve` runs it; the other subcommands are its clients and tools.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
)

const usage = `keyd — signing keys and JWKS for Open edX JWT access tokens

usage: keyd <command> [flags]

server
  serve        run keyd (local backend by default; --backend vault)
  bootstrap    set up Vault: transit and KV mounts, the key, the policies

clients (--server URL, --token T or KEYD_TOKEN)
  sign         sign the claims JSON read from stdin; prints the token
  jwks         print the JWKS (--format jwks|edx)
  keys         list key versions and their states
  rotate       rotate the key now (--emergency --reason R)
  audit        list the audit trail; "keyd audit verify" checks it;
               "keyd audit report" writes the report for the security team
  propagation  which expected clients hold the pending key; "keyd propagation confirm" confirms one

tools
  verify       verify a token against a JWKS URL or file
  healthcheck  exit 0 when --url answers 200 (for container healthchecks)

Run "keyd <command> --help" for a command's synopsis and flags;
"keyd --version" prints the version.
`

// synopses is each subcommand's help: its synopsis line, then what it does.
// The flags follow, from the command's flag set. Keyed by flag set name.
var synopses = map[string]string{
	"serve": `usage: keyd serve [flags]

Runs keyd: the JWKS, the sign, keys, rotate and audit API, and the key
lifecycle. Every flag can also be set by the environment variable named in
its help; a flag given on the command line wins.

environment (besides the KEYD_* variable of each flag):
  KEYD_SIGNER_TOKEN, KEYD_ADMIN_TOKEN, KEYD_AUDITOR_TOKEN
        local backend: the bearer token of each role (one shorter than 32
        characters is warned about); one not set is generated at first
        start and kept in <data-dir>/tokens/<role> (0600)
  VAULT_ADDR
        vault backend: the Vault address (required with --backend vault
        unless --vault-addrs lists the cluster's nodes)
  VAULT_TOKEN
        vault backend with --vault-auth token: keyd's own Vault token (policy
        keyd-server; renewed while keyd runs; a token that can sign is refused)
  GOGC  Go garbage collector target (default 400 for keyd serve)
  KEYD_PPROF_LISTEN
        address of a separate pprof listener (off unless set; for benchmarks)
`,
	"bootstrap": `usage: keyd bootstrap [--algorithm A] [--vault-mount M] [--vault-key K] [--vault-kv-mount KV] [--approle] [--token T]

Sets Vault up for keyd, idempotently, with an operator's token (--token or
VAULT_TOKEN) at VAULT_ADDR: the transit mount, the KV v2 mount, the signing key
of the right type, and every policies/*.hcl as a policy named after its file.
With --approle, also the AppRole auth method and the keyd-server role that
keyd serve --vault-auth approle logs in with; it prints how to get the IDs.
`,
	"sign": `usage: keyd sign [--ttl D] [--server URL] [--token T] < claims.json

Signs the claims JSON object read from stdin with the signer token and prints
the token. keyd adds iat, exp (iat + ttl) and jti when absent.
`,
	"jwks": `usage: keyd jwks [--format jwks|edx] [--server URL] [--token T]

Prints the public keys: the JWKS document, or (--format edx) the
JWT_PUBLIC_SIGNING_JWK_SET setting an Open edX IDA pastes (RSA keys only).
`,
	"keys": `usage: keyd keys [--json] [--server URL] [--token T]

Lists the published key versions with their states and lifecycle times
(auditor or admin token).
`,
	"rotate": `usage: keyd rotate [--emergency --reason R] [--adopt-settings] [--json] [--server URL] [--token T]

Rotates the key now (admin token) and prints the new key as a table like
"keyd keys". A normal rotation publishes a new key that signs after the
propagation delay; while a key is still pending it creates nothing and says so.
An emergency makes the new key active at once and destroys every older key.
--adopt-settings creates the key under this replica's settings when they differ
from the newest key's (otherwise refused with config_mismatch).
`,
	"audit": `usage: keyd audit [--since SEQ] [--json] [--server URL] [--token T]
       keyd audit verify (--file PATH [--data-dir DIR] | --vault) [--token T]
       keyd audit report [--file PATH | --vault] [--since T] [--until T] [--out FILE] [--format html|json]

Lists the audit trail (auditor token) and says whether its chain verifies.
"keyd audit verify --help" for the offline check.
`,
	"audit verify": `usage: keyd audit verify --file PATH [--data-dir DIR] [--chain-only]
       keyd audit verify --vault [--token T] [--vault-mount M] [--vault-key K] [--vault-kv-mount KV]

Checks the audit chain without keyd: a local audit.log offline, or the chain
in Vault KV with the auditor's own token (VAULT_ADDR), and reconciles it with
the backend's key versions.
`,
	"audit report": `usage: keyd audit report [--server URL] [--token T] [--since T] [--until T] [--out FILE] [--format html|json]
       keyd audit report --file PATH [--data-dir DIR] [lifecycle flags] [...]
       keyd audit report --vault [--token T] [--vault-kv-mount KV] [lifecycle flags] [...]

Writes the audit report for the security team: one self-contained HTML page
(inline CSS and SVG, no scripts, prints on A4), or --format json with the same
facts for a SIEM. Online it is GET /v1/audit/report (auditor or admin token),
judged against the server's configuration. Offline (--file or --vault) it
reads and verifies the chain exactly as "keyd audit verify" does, judged
against the lifecycle flags given (--rotation-schedule, --propagation-delay,
--max-token-lifetime, --clock-skew, --activation-max-wait; defaults as keyd
serve's); the report names which it used. --since and --until are RFC 3339
(UTC); the verdict always covers the whole chain.
`,
	"propagation": `usage: keyd propagation [--json] [--server URL] [--token T]
       keyd propagation confirm --client C --version N [--json] [--server URL] [--token T]

Shows the pending key and, per expected client (--expected-clients), whether it
is confirmed for that key and which instances fetched the JWKS, when, and the
highest key version each was served (auditor or admin token). A gated key
activates once every client is confirmed (and not before its activates_at).
"confirm" (admin token) confirms a client that reads a static setting, after
its redeploy with the key.
`,
	"propagation confirm": `usage: keyd propagation confirm --client C --version N [--json] [--server URL] [--token T]

Confirms (admin token) that client C holds key version N: for a service that
reads a static JWT_PUBLIC_SIGNING_JWK_SET, once it is redeployed with the
output of "keyd jwks --format edx". Recorded in the audit trail.
`,
	"healthcheck": `usage: keyd healthcheck [--url URL] [--pid N] [--wait D]

Exits 0 when URL (default keyd's /readyz) answers 200; for container
healthchecks. --pid N also requires the answer to come from the keyd of
process N (the pid in /readyz), not another server holding the port. --wait D
keeps trying for up to D, and with --pid stops at once when process N has
exited (a keyd that could not start):

  bin/keyd serve 2> keyd.log &
  KEYD_PID=$!
  bin/keyd healthcheck --pid $KEYD_PID --wait 60s || cat keyd.log
`,
}

// helpRequested reports whether args ask for help: -h, -help or --help
// before any "--".
func helpRequested(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "-help", "--help":
			return true
		}
	}
	return false
}

// help prints a command's help on stdout and exits 0 without running it:
// the command sees only the words before the first flag, then -h.
func help(ctx context.Context, cmd func(context.Context, []string, io.Reader, io.Writer, io.Writer) int, args []string, stdout io.Writer) int {
	var words []string
	for _, a := range args {
		if strings.HasPrefix(a, "-") {
			break
		}
		words = append(words, a)
	}
	cmd(ctx, append(words, "-h"), strings.NewReader(""), stdout, stdout)
	return 0
}

// version is stamped at build time (make image: -ldflags "-X
// main.version=..."); versionString falls back to the VCS revision.
var version string

// versionString is keyd's version: the stamped one, else "dev" with the
// commit the binary was built from (and "-dirty" for uncommitted changes).
func versionString() string {
	if version != "" {
		return version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	var rev, dirty string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev == "" {
		return "dev"
	}
	return "dev (" + rev + dirty + ")"
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// commands are the subcommands, by name.
var commands = map[string]func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int{
	"serve": func(ctx context.Context, args []string, _ io.Reader, _, stderr io.Writer) int {
		return cmdServe(ctx, args, stderr)
	},
	"bootstrap":   noStdin(cmdBootstrap),
	"sign":        cmdSign,
	"jwks":        noStdin(cmdJWKS),
	"keys":        noStdin(cmdKeys),
	"rotate":      noStdin(cmdRotate),
	"audit":       noStdin(cmdAudit),
	"propagation": noStdin(cmdPropagation),
	"verify":      noStdin(cmdVerify),
	"healthcheck": func(ctx context.Context, args []string, _ io.Reader, _, stderr io.Writer) int {
		return cmdHealthcheck(ctx, args, stderr)
	},
}

// noStdin adapts a subcommand that reads no standard input.
func noStdin(f func(ctx context.Context, args []string, stdout, stderr io.Writer) int) func(context.Context, []string, io.Reader, io.Writer, io.Writer) int {
	return func(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
		return f(ctx, args, stdout, stderr)
	}
}

// run dispatches to a subcommand and returns the exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	name, rest := args[0], args[1:]
	switch name {
	case "--version", "-version", "version":
		fmt.Fprintln(stdout, "keyd", versionString())
		return 0
	case "-h", "--help", "-help", "help":
		if len(rest) > 0 && commands[rest[0]] != nil { // keyd help rotate
			return help(ctx, commands[rest[0]], rest[1:], stdout)
		}
		fmt.Fprint(stdout, usage)
		return 0
	}
	cmd := commands[name]
	if cmd == nil {
		fmt.Fprintf(stderr, "keyd: unknown command %q\n\n%s", name, usage)
		return 2
	}
	if helpRequested(rest) {
		return help(ctx, cmd, rest, stdout)
	}
	return cmd(ctx, rest, stdin, stdout, stderr)
}
