package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/openedx-keyd/keyd/internal/auth"
	"github.com/openedx-keyd/keyd/internal/fsutil"
	"github.com/openedx-keyd/keyd/internal/signer"
)

// Authorizer decides whether a bearer token holds one of roles. It returns
// signer.ErrUnauthenticated for an unknown token and signer.ErrPermissionDenied
// for a known token without the role.
type Authorizer interface {
	Authorize(ctx context.Context, token string, roles ...auth.Role) (auth.Principal, error)
}

// LocalAuth checks the per-role bearer tokens of local mode in constant time.
type LocalAuth struct {
	sums map[auth.Role][32]byte
}

// LoadLocalAuth takes each role's token from KEYD_<ROLE>_TOKEN, or from
// <dataDir>/tokens/<role>, generating and saving one (0600) when neither exists.
func LoadLocalAuth(dataDir string, getenv func(string) string) (*LocalAuth, map[auth.Role]string, error) {
	dir := filepath.Join(dataDir, "tokens")
	a := &LocalAuth{sums: map[auth.Role][32]byte{}}
	generated := map[auth.Role]string{}
	seen := map[string]auth.Role{}
	for _, r := range auth.Roles {
		tok := strings.TrimSpace(getenv("KEYD_" + strings.ToUpper(string(r)) + "_TOKEN"))
		if tok == "" {
			var err error
			tok, err = fileToken(dir, r, generated)
			if err != nil {
				return nil, nil, err
			}
		}
		if other, dup := seen[tok]; dup {
			return nil, nil, fmt.Errorf("the %s and %s tokens are the same; each role needs its own", other, r)
		}
		seen[tok] = r
		a.sums[r] = sha256.Sum256([]byte(tok))
	}
	return a, generated, nil
}

func fileToken(dir string, r auth.Role, generated map[auth.Role]string) (string, error) {
	path := filepath.Join(dir, string(r))
	raw, err := os.ReadFile(path)
	if err == nil {
		return strings.TrimSpace(string(raw)), nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read %s token: %w", r, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create token dir: %w", err)
	}
	b := make([]byte, 32)
	rand.Read(b)
	tok := "keyd-" + string(r) + "-" + base64.RawURLEncoding.EncodeToString(b)
	if err := fsutil.WriteFileAtomic(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("save %s token: %w", r, err)
	}
	generated[r] = path
	return tok, nil
}

// Authorize compares token with every role's token (hashes, constant time).
func (a *LocalAuth) Authorize(_ context.Context, token string, roles ...auth.Role) (auth.Principal, error) {
	sum := sha256.Sum256([]byte(token))
	var holder auth.Role
	for _, r := range auth.Roles {
		want := a.sums[r]
		if subtle.ConstantTimeCompare(sum[:], want[:]) == 1 {
			holder = r
		}
	}
	if holder == "" {
		return auth.Principal{}, signer.ErrUnauthenticated
	}
	if !slices.Contains(roles, holder) {
		return auth.Principal{}, signer.ErrPermissionDenied
	}
	return auth.Principal{Role: holder, Actor: "role:" + string(holder), Credential: signer.Credential{Token: token}}, nil
}
