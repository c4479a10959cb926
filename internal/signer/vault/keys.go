package vault

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/openedx-keyd/keyd/internal/signer"
)

// The transit key: its versions and public keys, creating and rotating
// them, and the minimum versions (pin, trim).

// KeyType returns the transit key type an algorithm needs.
func KeyType(alg signer.Algorithm) (string, error) {
	switch alg {
	case signer.RS512, signer.RS256:
		return "rsa-2048", nil
	case signer.ES256:
		return "ecdsa-p256", nil
	case signer.EdDSA:
		return "ed25519", nil
	}
	return "", fmt.Errorf("vault: unsupported algorithm %q", alg)
}

// fits reports whether alg can sign with a transit key of type keyType.
func fits(alg signer.Algorithm, keyType string) bool {
	t, err := KeyType(alg)
	return err == nil && t == keyType
}

// keyInfo is what GET <mount>/keys/<key> says about the key.
type keyInfo struct {
	Type                 string                 `json:"type"`
	LatestVersion        int                    `json:"latest_version"`
	MinDecryptionVersion int                    `json:"min_decryption_version"`
	MinEncryptionVersion int                    `json:"min_encryption_version"`
	MinAvailableVersion  int                    `json:"min_available_version"`
	Exportable           bool                   `json:"exportable"`
	DeletionAllowed      bool                   `json:"deletion_allowed"`
	AllowPlaintextBackup bool                   `json:"allow_plaintext_backup"`
	Keys                 map[string]versionInfo `json:"-"`
}

type versionInfo struct {
	PublicKey    string    `json:"public_key"`
	CreationTime time.Time `json:"creation_time"`
}

// parseKeyInfo decodes the data of a key read (or of a rotate, which
// answers with the same document).
func parseKeyInfo(data map[string]any) (*keyInfo, error) {
	var ki keyInfo
	if err := decode(data, &ki); err != nil {
		return nil, fmt.Errorf("vault: decode key: %w", err)
	}
	switch ki.Type {
	case "rsa-2048", "ecdsa-p256", "ed25519":
	default:
		return nil, fmt.Errorf("vault: key type %q cannot sign JWTs (want rsa-2048, ecdsa-p256 or ed25519)", ki.Type)
	}
	if err := decode(data["keys"], &ki.Keys); err != nil {
		return nil, fmt.Errorf("vault: decode key versions: %w", err)
	}
	return &ki, nil
}

func (b *Backend) readKey(ctx context.Context) (*keyInfo, error) {
	sec, err := b.client.Logical().ReadWithContext(ctx, b.keyPath())
	if err != nil {
		return nil, wrap("read key "+b.keyPath(), err)
	}
	if sec == nil || sec.Data == nil {
		return nil, fmt.Errorf("vault: key %s does not exist (run keyd bootstrap)", b.keyPath())
	}
	return parseKeyInfo(sec.Data)
}

// Keys lists the versions whose private material still exists, oldest
// first: those Vault has not trimmed (at or above min_available_version).
// A version below min_decryption_version but not yet trimmed (a trim that
// failed, or a crash between the two calls of DestroyBelow) is still
// listed, so the lifecycle destroys it again and records it. It costs one
// transit read once the lifecycle records are cached.
func (b *Backend) Keys(ctx context.Context) ([]signer.Key, error) {
	ki, err := b.readKey(ctx)
	if err != nil {
		return nil, err
	}
	var versions []int
	for s := range ki.Keys {
		v, err := strconv.Atoi(s)
		if err != nil {
			return nil, fmt.Errorf("vault: key version %q: %w", s, err)
		}
		if v >= ki.MinAvailableVersion {
			versions = append(versions, v)
		}
	}
	sort.Ints(versions)
	keys := make([]signer.Key, 0, len(versions))
	for _, v := range versions {
		k, err := b.keyVersion(ctx, ki, v)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// keyVersion assembles version v from the key document and its record.
func (b *Backend) keyVersion(ctx context.Context, ki *keyInfo, v int) (signer.Key, error) {
	vi, ok := ki.Keys[strconv.Itoa(v)]
	if !ok {
		return signer.Key{}, fmt.Errorf("%w: version %d of %s", signer.ErrNoKey, v, b.keyPath())
	}
	pub, err := parsePublic(ki.Type, vi.PublicKey)
	if err != nil {
		return signer.Key{}, fmt.Errorf("vault: version %d: %w", v, err)
	}
	rec, found, err := b.record(ctx, v)
	if err != nil {
		return signer.Key{}, err
	}
	if !found {
		// A crash between rotate and the record write: report what Vault
		// knows; the rotation rules decide what to do with it.
		rec = signer.Record{
			Version:     v,
			Algorithm:   b.defaultAlg(ki.Type),
			CreatedAt:   vi.CreationTime.UTC(),
			ActivatesAt: vi.CreationTime.UTC(),
		}
	}
	return signer.Key{Record: rec, Public: pub, HasRecord: found}, nil
}

func (b *Backend) defaultAlg(keyType string) signer.Algorithm {
	if fits(b.alg, keyType) {
		return b.alg
	}
	switch keyType {
	case "ecdsa-p256":
		return signer.ES256
	case "ed25519":
		return signer.EdDSA
	}
	return signer.RS512
}

// parsePublic parses a transit public key: PEM (PKIX) for RSA and ECDSA,
// raw base64 for Ed25519.
func parsePublic(keyType, s string) (crypto.PublicKey, error) {
	if keyType == "ed25519" {
		raw, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(raw) != ed25519.PublicKeySize {
			return nil, errors.New("malformed ed25519 public key")
		}
		return ed25519.PublicKey(raw), nil
	}
	block, _ := pem.Decode([]byte(s))
	if block == nil {
		return nil, errors.New("public key is not PEM")
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse public key: %w", err)
	}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if keyType == "rsa-2048" && k.N.BitLen() == 2048 {
			return k, nil
		}
	case *ecdsa.PublicKey:
		if keyType == "ecdsa-p256" && k.Curve == elliptic.P256() {
			return k, nil
		}
	}
	return nil, fmt.Errorf("public key does not match key type %s", keyType)
}

// Create makes version rec.Version, exactly once across replicas.
//
// Version 1 is special: `keyd bootstrap` creates the transit key, whose
// first version is 1, so Create only writes the record of that existing
// version (ErrAlreadyRotated when the record already exists).
//
// For a later version the replica first claims locks/rotate-<v> in KV v2
// (check-and-set 0; a claim older than claimTimeout, 5 min, while the key
// has not moved is taken over), checks that Vault's latest version is still v-1, rotates, and
// writes the record of the new version (check-and-set 0). Should Vault's new
// version not be rec.Version (a presumed-dead claim holder rotated after
// all), the record and the returned Key carry Vault's number.
func (b *Backend) Create(ctx context.Context, rec signer.Record) (signer.Key, error) {
	if rec.Version < 1 {
		return signer.Key{}, fmt.Errorf("vault: cannot create version %d", rec.Version)
	}
	ki, err := b.readKey(ctx)
	if err != nil {
		return signer.Key{}, err
	}
	if !fits(rec.Algorithm, ki.Type) {
		return signer.Key{}, fmt.Errorf("vault: algorithm %q cannot use key %s of type %s (the algorithm belongs to the key)", rec.Algorithm, b.keyPath(), ki.Type)
	}
	// Vault's newest version must be the one just below rec.Version; for
	// version 1 it is version 1 itself, created by bootstrap.
	want := rec.Version - 1
	if rec.Version == 1 {
		want = 1
	}
	switch {
	case ki.LatestVersion > want:
		return signer.Key{}, fmt.Errorf("%w: vault's newest version is %d", signer.ErrAlreadyRotated, ki.LatestVersion)
	case ki.LatestVersion < want:
		return signer.Key{}, fmt.Errorf("vault: cannot create version %d: vault's newest version is %d", rec.Version, ki.LatestVersion)
	}
	if rec.Version == 1 {
		if err := b.writeRecord(ctx, rec); err != nil {
			return signer.Key{}, err
		}
		return b.keyVersion(ctx, ki, 1)
	}
	if err := b.claim(ctx, rec.Version); err != nil {
		return signer.Key{}, err
	}
	return b.rotate(ctx, rec)
}

// rotate makes version rec.Version under this replica's claim on it, and
// writes its record.
func (b *Backend) rotate(ctx context.Context, rec signer.Record) (signer.Key, error) {
	// Re-check under the claim: another replica may have finished first.
	ki, err := b.readKey(ctx)
	if err != nil {
		return signer.Key{}, err
	}
	if ki.LatestVersion != rec.Version-1 {
		return signer.Key{}, fmt.Errorf("%w: vault's newest version is %d", signer.ErrAlreadyRotated, ki.LatestVersion)
	}
	sec, err := b.client.Logical().WriteWithContext(ctx, keyOpPath(b.keyPath(), "rotate"), nil)
	if err != nil {
		return signer.Key{}, wrap("rotate "+b.keyPath(), err)
	}
	if sec != nil && sec.Data != nil {
		ki, err = parseKeyInfo(sec.Data)
	} else {
		ki, err = b.readKey(ctx)
	}
	if err != nil {
		return signer.Key{}, err
	}
	if n := ki.LatestVersion; n != rec.Version {
		b.log.Warn("vault rotated to an unexpected version", "want", rec.Version, "got", n)
		rec.Version = n
	}
	if err := b.writeRecord(ctx, rec); err != nil {
		return signer.Key{}, err
	}
	return b.keyVersion(ctx, ki, rec.Version)
}

// PinSigning raises min_encryption_version to v, so Vault itself refuses
// signatures with any older version. It never lowers it.
func (b *Backend) PinSigning(ctx context.Context, v int) error {
	ki, err := b.readKey(ctx)
	if err != nil {
		return err
	}
	if v > ki.LatestVersion {
		return fmt.Errorf("%w: cannot pin signing to version %d, newest is %d", signer.ErrNoKey, v, ki.LatestVersion)
	}
	if ki.MinEncryptionVersion >= v {
		return nil
	}
	return b.configure(ctx, map[string]any{"min_encryption_version": v})
}

// DestroyBelow raises min_decryption_version (and min_encryption_version
// with it, when lower) to v, then trims every version below v: their
// private material is gone from Vault.
func (b *Backend) DestroyBelow(ctx context.Context, v int) error {
	ki, err := b.readKey(ctx)
	if err != nil {
		return err
	}
	if v <= 1 {
		return nil
	}
	if v > ki.LatestVersion {
		return fmt.Errorf("%w: cannot destroy below version %d, newest is %d", signer.ErrNoKey, v, ki.LatestVersion)
	}
	params := map[string]any{}
	if ki.MinDecryptionVersion < v {
		params["min_decryption_version"] = v
	}
	if ki.MinEncryptionVersion < v {
		params["min_encryption_version"] = v
	}
	if len(params) > 0 {
		if err := b.configure(ctx, params); err != nil {
			return err
		}
	}
	if ki.MinAvailableVersion >= v {
		return nil
	}
	_, err = b.client.Logical().WriteWithContext(ctx, keyOpPath(b.keyPath(), "trim"), map[string]any{"min_available_version": v})
	return wrap("trim "+b.keyPath(), err)
}

func (b *Backend) configure(ctx context.Context, params map[string]any) error {
	_, err := b.client.Logical().WriteWithContext(ctx, keyOpPath(b.keyPath(), "config"), params)
	return wrap("configure "+b.keyPath(), err)
}

// isUnavailable reports whether err means Vault did not answer usefully:

// CheckKeyType refuses a configured algorithm the transit key cannot sign
// with: in Vault every version of a key has the key's type, set by keyd
// bootstrap. A Backend without a configured algorithm passes.
func (b *Backend) CheckKeyType(ctx context.Context) error {
	if b.alg == "" {
		return nil
	}
	want, err := KeyType(b.alg)
	if err != nil {
		return err
	}
	ki, err := b.readKey(ctx)
	if err != nil {
		return err
	}
	if ki.Type != want {
		return fmt.Errorf("--algorithm %s needs a %s key but %s is %s: set --algorithm to fit the key, or bootstrap a new --vault-key", b.alg, want, b.keyPath(), ki.Type)
	}
	return nil
}
