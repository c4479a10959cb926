package auth

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

	"github.com/openedx-keyd/keyd/internal/fsutil"
	"github.com/openedx-keyd/keyd/internal/signer"
)

// LocalTokens checks the per-role bearer tokens of local mode in constant time.
type LocalTokens struct {
	sums map[Role][32]byte
}

// LoadLocalTokens takes each role's token from KEYD_<ROLE>_TOKEN, or from
// <dataDir>/tokens/<role>, generating and saving one (0600) when neither exists.
func LoadLocalTokens(dataDir string, getenv func(string) string) (*LocalTokens, map[Role]string, error) {
	dir := filepath.Join(dataDir, "tokens")
	a := &LocalTokens{sums: map[Role][32]byte{}}
	generated := map[Role]string{}
	seen := map[string]Role{}
	for _, r := range Roles {
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

func fileToken(dir string, r Role, generated map[Role]string) (string, error) {
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
func (a *LocalTokens) Authorize(_ context.Context, token string, roles ...Role) (Principal, error) {
	sum := sha256.Sum256([]byte(token))
	var holder Role
	for _, r := range Roles {
		want := a.sums[r]
		if subtle.ConstantTimeCompare(sum[:], want[:]) == 1 {
			holder = r
		}
	}
	if holder == "" {
		return Principal{}, ErrUnauthenticated
	}
	if !slices.Contains(roles, holder) {
		return Principal{}, ErrPermissionDenied
	}
	return Principal{Role: holder, Actor: "role:" + string(holder), Credential: signer.Credential{Token: token}}, nil
}
