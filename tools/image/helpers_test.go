package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func jsonOf(v any) string {
	raw, _ := json.MarshalIndent(v, "", "  ")
	return string(raw)
}

// digestOf is the image digest of a docker-archive, and the archive's own
// sha256 after it: equal archives are the same image.
func digestOf(t *testing.T, path string) string {
	t.Helper()
	img, err := tarball.ImageFromPath(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	return d.String() + " (" + filepath.Base(path) + " sha256:" + hex.EncodeToString(sum[:]) + ")"
}
