// Command keyd is the signing-key and JWKS service for an Open edX platform:
// `keyd serve` runs it; the other subcommands are its clients and tools.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
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
  audit        list the audit trail; "keyd audit verify" checks it

tools
  verify       verify a token against a JWKS URL or file
  healthcheck  exit 0 when --url answers 200 (for container healthchecks)

Run "keyd <command> -h" for a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run dispatches to a subcommand and returns the exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return cmdServe(ctx, rest, stderr)
	case "bootstrap":
		return cmdBootstrap(ctx, rest, stdout, stderr)
	case "sign":
		return cmdSign(ctx, rest, stdin, stdout, stderr)
	case "jwks":
		return cmdJWKS(ctx, rest, stdout, stderr)
	case "keys":
		return cmdKeys(ctx, rest, stdout, stderr)
	case "rotate":
		return cmdRotate(ctx, rest, stdout, stderr)
	case "audit":
		return cmdAudit(ctx, rest, stdout, stderr)
	case "verify":
		return cmdVerify(ctx, rest, stdout, stderr)
	case "healthcheck":
		return cmdHealthcheck(ctx, rest, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "keyd: unknown command %q\n\n%s", cmd, usage)
	return 2
}
