package vault

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/hashicorp/vault/api"

	"github.com/openedx-keyd/keyd/internal/signer"
)

func TestExplain(t *testing.T) {
	tests := []struct {
		name string
		re   *api.ResponseError
		want string
	}{
		{"permission denied", &api.ResponseError{HTTPMethod: "GET", URL: "http://127.0.0.1:8200/v1/sys/mounts", StatusCode: 403, Errors: []string{"1 error occurred:\n\t* permission denied\n\n"}},
			"vault: list mounts: GET /v1/sys/mounts: 403: permission denied"},
		{"two reasons", &api.ResponseError{HTTPMethod: "PUT", URL: "https://vault:8200/v1/keyd/data/audit/7?x=1", StatusCode: 400, Errors: []string{"check-and-set parameter did not match", "second"}},
			"vault: list mounts: PUT /v1/keyd/data/audit/7: 400: check-and-set parameter did not match; second"},
		{"no reason", &api.ResponseError{HTTPMethod: "GET", URL: "http://v/v1/transit/keys/k", StatusCode: 404},
			"vault: list mounts: GET /v1/transit/keys/k: 404: not found"},
		{"multierror with two", &api.ResponseError{HTTPMethod: "PUT", URL: "http://v/v1/sys/mounts/transit", StatusCode: 400, Errors: []string{"2 errors occurred:\n\t* path is already in use\n\t* bad\n\n"}},
			"vault: list mounts: PUT /v1/sys/mounts/transit: 400: path is already in use; bad"},
		{"raw body", &api.ResponseError{HTTPMethod: "GET", URL: "http://v/v1/sys/mounts", StatusCode: 502, RawError: true, Errors: []string{"<html>\n<body>Bad Gateway</body>\n</html>\n"}},
			"signer: backend unavailable: vault list mounts: GET /v1/sys/mounts: 502: <html> <body>Bad Gateway</body> </html>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := wrap("list mounts", tt.re)
			if got := err.Error(); got != tt.want {
				t.Errorf("wrap(...) = %q\nwant %q", got, tt.want)
			}
			var re *api.ResponseError
			if !errors.As(err, &re) || re != tt.re || statusOf(err) != tt.re.StatusCode {
				t.Error("the explained error no longer wraps the Vault API error")
			}
			if again := Explain(fmt.Errorf("outer: %w", err)); again.Error() != "outer: "+tt.want {
				t.Errorf("Explain twice = %q", again)
			}
		})
	}

	// Deeper in a chain, and with the unavailable sentinel kept.
	re := &api.ResponseError{HTTPMethod: "LIST", URL: "http://v/v1/keyd/metadata/audit", StatusCode: 403, Errors: []string{"permission denied"}}
	err := Explain(fmt.Errorf("audit: list keyd/metadata/audit: %w", fmt.Errorf("%w: %w", signer.ErrUnavailable, re)))
	if got := err.Error(); strings.Contains(got, "\n") || !strings.Contains(got, "LIST /v1/keyd/metadata/audit: 403: permission denied") {
		t.Errorf("Explain = %q", got)
	}
	if !errors.Is(err, signer.ErrUnavailable) {
		t.Error("Explain lost the sentinel")
	}
	if Explain(nil) != nil {
		t.Error("Explain(nil) != nil")
	}
	plain := errors.New("dial tcp: connection refused")
	if Explain(plain) != plain {
		t.Error("Explain changed an error without a Vault API error")
	}
}
