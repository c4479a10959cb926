package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
)

func cmdJWKS(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("jwks", flag.ContinueOnError)
	c := clientFlags(fs)
	format := fs.String("format", "jwks", "jwks (the document) or edx (the JWT_PUBLIC_SIGNING_JWK_SET setting)")
	if !parseFlags(fs, args, stderr) {
		return 2
	}
	if *format != "jwks" && *format != "edx" {
		fmt.Fprintf(stderr, "keyd jwks: --format must be jwks or edx, got %q\n", *format)
		return 2
	}
	var raw []byte
	if err := c.do(ctx, http.MethodGet, "/.well-known/jwks.json", nil, &raw); err != nil {
		return fail(stderr, err)
	}
	if *format == "edx" {
		v, err := edxSetting(raw)
		if err != nil {
			return fail(stderr, err)
		}
		raw = v
	}
	stdout.Write(append(raw, '\n'))
	return 0
}
