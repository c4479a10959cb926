// Package policies holds keyd's Vault ACL policies (the *.hcl files next to
// this one), embedded in the binary so `keyd bootstrap` works from any
// directory.
package policies

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"strings"
)

//go:embed *.hcl
var files embed.FS

// Names of keyd's policies: each file's name without ".hcl".
const (
	LMSSigner = "keyd-lms-signer"
	Server    = "keyd-server"
	Admin     = "keyd-admin"
	Auditor   = "keyd-auditor"
)

var (
	// A mount is one or more path segments; a key is one transit key name.
	// Neither may hold glob characters (*, +) or anything HCL would parse.
	mountName = regexp.MustCompile(`^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$`)
	keyName   = regexp.MustCompile(`^[A-Za-z0-9_.@-]+$`)
)

// Render returns every policy, keyed by name (the file name without
// ".hcl"), with {{mount}}, {{key}} and {{kv}} replaced by the transit mount,
// the key name and the KV v2 mount.
func Render(mount, key, kv string) (map[string]string, error) {
	var bad []string
	mount, kv = strings.Trim(mount, "/"), strings.Trim(kv, "/")
	if !mountName.MatchString(mount) {
		bad = append(bad, fmt.Sprintf("transit mount %q", mount))
	}
	if !keyName.MatchString(key) {
		bad = append(bad, fmt.Sprintf("key name %q", key))
	}
	if !mountName.MatchString(kv) {
		bad = append(bad, fmt.Sprintf("kv mount %q", kv))
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("policies: invalid %s (letters, digits, '_', '.', '-'; mounts may have '/')", strings.Join(bad, ", "))
	}
	if mount == kv {
		return nil, errors.New("policies: transit mount and kv mount must differ")
	}

	names, err := fs.Glob(files, "*.hcl")
	if err != nil {
		return nil, fmt.Errorf("policies: %w", err)
	}
	r := strings.NewReplacer("{{mount}}", mount, "{{key}}", key, "{{kv}}", kv)
	out := make(map[string]string, len(names))
	for _, name := range names {
		b, err := files.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("policies: %w", err)
		}
		text := r.Replace(string(b))
		if strings.Contains(text, "{{") {
			return nil, fmt.Errorf("policies: %s has an unknown placeholder", name)
		}
		out[strings.TrimSuffix(name, ".hcl")] = text
	}
	return out, nil
}
