package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/openedx-keyd/keyd/verify"
)

const verifyUsage = `usage: keyd verify --jwks URL|FILE [--issuer I[,I...]] [--audience A] [--grant-type G]
                   [--leeway 1m] [--max-lifetime 1h] TOKEN

Verifies TOKEN with the public keys of a JWKS (keyd's /.well-known/jwks.json URL,
or a file such as the Open edX JWT_PUBLIC_SIGNING_JWK_SET). Prints the claims as
JSON and exits 0, or prints one line naming the reason and exits 1. Only
asymmetric tokens (RS*, PS*, ES*, EdDSA) are accepted. Without --issuer or
--audience, any issuer or audience is accepted.

flags:
`

// cmdVerify implements `keyd verify`: exit 0 and the claims on stdout, exit 1
// and one line on stderr when the token is refused, exit 2 on a usage error.
func cmdVerify(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("keyd verify", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // the flag package's own error and usage
	fs.Usage = func() {}
	jwks := fs.String("jwks", "", "JWKS `URL` (http or https) or FILE holding the public keys")
	issuers := fs.String("issuer", "", "accepted iss `values`, comma-separated")
	audience := fs.String("audience", "", "`aud` value the token must include")
	grantType := fs.String("grant-type", "", "`grant_type` the token must carry, e.g. password")
	leeway := fs.Duration("leeway", verify.DefaultLeeway, "clock skew allowed on exp, nbf and iat")
	maxLifetime := fs.Duration("max-lifetime", verify.DefaultMaxLifetime, "longest exp - iat accepted (at most 1h)")

	tokens, err := parseInterleaved(fs, args)
	fs.SetOutput(stderr)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stderr, verifyUsage)
		fs.PrintDefaults()
		return 0
	}
	usageErr := func(msg string) int {
		fmt.Fprintf(stderr, "keyd verify: %s (\"keyd verify --help\" shows the usage)\n", msg)
		return 2
	}
	switch {
	case err != nil:
		return usageErr(err.Error())
	case *jwks == "":
		return usageErr("--jwks is required")
	case len(tokens) != 1:
		return usageErr(fmt.Sprintf("want exactly one TOKEN argument, got %d", len(tokens)))
	case *leeway < 0:
		return usageErr("--leeway must not be negative")
	case *maxLifetime <= 0 || *maxLifetime > time.Hour:
		return usageErr("--max-lifetime must be above 0 and at most 1h")
	}

	cfg := verify.Config{
		Audience:          *audience,
		SkipAudienceCheck: *audience == "",
		GrantType:         *grantType,
		Leeway:            *leeway,
		MaxLifetime:       *maxLifetime,
	}
	for _, iss := range strings.Split(*issuers, ",") {
		if iss = strings.TrimSpace(iss); iss != "" {
			cfg.Issuers = append(cfg.Issuers, iss)
		}
	}
	cfg.SkipIssuerCheck = len(cfg.Issuers) == 0
	if cfg.Leeway == 0 {
		cfg.Leeway = -1 // --leeway 0 means none, not the default
	}

	fail := func(err error) int {
		line := strings.TrimPrefix(err.Error(), "verify: ")
		fmt.Fprintf(stderr, "keyd verify: %s\n", strings.ReplaceAll(line, "\n", " "))
		return 1
	}
	keys, err := keySet(*jwks)
	if err != nil {
		return fail(err)
	}
	v, err := verify.NewVerifier(keys, cfg)
	if err != nil {
		return usageErr(strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	claims, err := v.Verify(ctx, strings.TrimSpace(tokens[0]))
	if err != nil {
		return fail(err)
	}
	out, err := json.MarshalIndent(claims.Raw, "", "  ")
	if err != nil {
		return fail(err)
	}
	fmt.Fprintf(stdout, "%s\n", out)
	return 0
}

// keySet opens the --jwks argument: a URL is fetched, anything else is a file.
func keySet(jwks string) (verify.KeySet, error) {
	if strings.HasPrefix(jwks, "http://") || strings.HasPrefix(jwks, "https://") {
		return verify.NewRemoteKeySet(jwks, verify.RemoteConfig{})
	}
	return verify.LoadStaticKeySet(jwks)
}

// parseInterleaved parses flags placed before or after the positional
// arguments (the flag package alone stops at the first positional one).
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return positional, nil
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// edxSetting is `keyd jwks --format edx`: the JWT_PUBLIC_SIGNING_JWK_SET value.
func edxSetting(jwks []byte) ([]byte, error) {
	return verify.EdxSetting(jwks)
}
