package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// maxCompressed is the contract's bound on the image's compressed size.
const maxCompressed = 8 << 20

// builtDir is where make image wrote the images (make image-test sets
// KEYD_IMAGE_DIR); tests of the built images skip without it.
func builtDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("KEYD_IMAGE_DIR")
	if dir == "" {
		t.Skip("KEYD_IMAGE_DIR is not set: make image-test runs this on the images make image built")
	}
	return dir
}

// fakeBuild builds k in-process from a small stand-in binary.
func fakeBuild(t *testing.T, k kind, created time.Time) v1.Image {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "keyd")
	if err := os.WriteFile(bin, []byte("#!keyd stand-in\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	img, err := build(k, buildOptions{binary: bin, version: "1.2.3", revision: "0123abcd", arch: "amd64", created: created, host: defaultHostFiles})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// TestBuildIsReproducible: two builds of the same inputs are the same image,
// and every time in it is SOURCE_DATE_EPOCH, whenever it is built.
func TestBuildIsReproducible(t *testing.T) {
	created := time.Unix(1_700_000_000, 0).UTC()
	for _, k := range []kind{keydImage, toolsImage} {
		a, b := fakeBuild(t, k, created), fakeBuild(t, k, created)
		da, _ := a.Digest()
		db, _ := b.Digest()
		if da != db {
			t.Errorf("%s: two builds of the same inputs: %s and %s", k.name, da, db)
		}
		checkTimes(t, a, created)
		// The archive too: the same bytes every time (maps are iterated in
		// a new order each time, so a few writes catch one that leaks in).
		var first []byte
		for i := range 5 {
			out := filepath.Join(t.TempDir(), "image.tar")
			if err := write(a, k, "1.2.3", out, created); err != nil {
				t.Fatal(err)
			}
			raw, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if i == 0 {
				first = raw
			} else if !bytes.Equal(raw, first) {
				t.Fatalf("%s: write %d of one image gave other bytes than the first", k.name, i+1)
			}
		}
	}
}

// checkTimes: the config, its history and every file carry created, and
// files have numeric owners only.
func checkTimes(t *testing.T, img v1.Image, created time.Time) {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !cf.Created.Equal(created) {
		t.Errorf("config created %v, want %v", cf.Created.Time, created)
	}
	for _, h := range cf.History {
		if !h.Created.Equal(created) {
			t.Errorf("history %q created %v, want %v", h.CreatedBy, h.Created.Time, created)
		}
	}
	walk(t, img, func(h *tar.Header, _ []byte) {
		if !h.ModTime.Equal(created) || h.Uname != "" || h.Gname != "" || !h.AccessTime.IsZero() || !h.ChangeTime.IsZero() {
			t.Errorf("%s: mtime %v, owner names %q/%q, atime %v, ctime %v; want %v and numeric owners only",
				h.Name, h.ModTime, h.Uname, h.Gname, h.AccessTime, h.ChangeTime, created)
		}
	})
}

// walk calls f for each file of each layer, in order; layers are sorted by
// name.
func walk(t *testing.T, img v1.Image, f func(h *tar.Header, data []byte)) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		prev := ""
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.Name < prev {
				t.Errorf("layer %d: %s after %s, want sorted entries", i, h.Name, prev)
			}
			prev = h.Name
			data, _ := io.ReadAll(tr)
			f(h, data)
		}
		rc.Close()
	}
}

// files maps each path of the image's filesystem to its last header.
func files(t *testing.T, img v1.Image) (map[string]*tar.Header, map[string][]byte) {
	t.Helper()
	hs, data := map[string]*tar.Header{}, map[string][]byte{}
	walk(t, img, func(h *tar.Header, d []byte) {
		name := strings.TrimSuffix(h.Name, "/")
		hs[name], data[name] = h, d
	})
	return hs, data
}

// TestImageContents: what docs/design.md "Container image" lists, with the owners and modes keyd
// needs, in the images make image wrote; the keyd image has no shell, the
// tools image has one.
func TestImageContents(t *testing.T) {
	dir := builtDir(t)
	for _, k := range []kind{keydImage, toolsImage} {
		t.Run(k.name, func(t *testing.T) {
			img, err := tarball.ImageFromPath(filepath.Join(dir, k.name+"-image.tar"), nil)
			if err != nil {
				t.Fatal(err)
			}
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			labels := cf.Config.Labels
			want := imageConfig(k, labels["org.opencontainers.image.version"], labels["org.opencontainers.image.revision"])
			if got, w := jsonOf(cf.Config), jsonOf(want); got != w {
				t.Errorf("config\n%s\nwant\n%s", got, w)
			}
			if len(labels["org.opencontainers.image.revision"]) != 40 {
				t.Errorf("revision label %q, want the commit", labels["org.opencontainers.image.revision"])
			}
			hs, data := files(t, img)
			checks := []struct {
				path     string
				typ      byte
				mode     int64
				uid, gid int
			}{
				{"usr/local/bin/keyd", tar.TypeReg, 0o755, 0, 0},
				{"etc/passwd", tar.TypeReg, 0o644, 0, 0},
				{"etc/group", tar.TypeReg, 0o644, 0, 0},
				{"etc/ssl/certs/ca-certificates.crt", tar.TypeReg, 0o644, 0, 0},
				{"usr/share/zoneinfo/Europe/Paris", tar.TypeReg, 0o644, 0, 0},
				{"tmp", tar.TypeDir, 0o1777, 0, 0},
				{"data", tar.TypeDir, 0o700, nonroot, nonroot},
				{"home/nonroot", tar.TypeDir, 0o700, nonroot, nonroot},
			}
			for _, c := range checks {
				h, ok := hs[c.path]
				if !ok {
					t.Errorf("/%s is missing", c.path)
					continue
				}
				if h.Typeflag != c.typ || h.Mode != c.mode || h.Uid != c.uid || h.Gid != c.gid {
					t.Errorf("/%s: type %c mode %o owner %d:%d, want %c %o %d:%d", c.path, h.Typeflag, h.Mode, h.Uid, h.Gid, c.typ, c.mode, c.uid, c.gid)
				}
			}
			if !strings.Contains(string(data["etc/passwd"]), "nonroot:x:65532:65532:") || !strings.Contains(string(data["etc/group"]), "nonroot:x:65532:") {
				t.Errorf("passwd/group lack nonroot 65532:\n%s%s", data["etc/passwd"], data["etc/group"])
			}
			if !strings.Contains(string(data["etc/ssl/certs/ca-certificates.crt"]), "BEGIN CERTIFICATE") {
				t.Error("the CA bundle holds no certificate")
			}
			sh, hasShell := hs["bin/sh"]
			switch {
			case !k.shell && hasShell:
				t.Error("keyd's image has /bin/sh; it must have no shell")
			case k.shell && (!hasShell || sh.Linkname != "/bin/busybox" || hs["bin/busybox"] == nil):
				t.Errorf("the tools image's /bin/sh is %+v, want a symlink to /bin/busybox", sh)
			}
			if !k.shell {
				for p := range hs {
					if strings.HasPrefix(p, "bin/") || strings.HasPrefix(p, "usr/bin/") || strings.HasPrefix(p, "sbin/") {
						t.Errorf("keyd's image holds /%s; it has only /usr/local/bin/keyd", p)
					}
				}
			}
			checkTimes(t, img, cf.Created.Time)
		})
	}
}

// TestImageSize: the docker-archive (compressed layers) is at most 8 MB.
func TestImageSize(t *testing.T) {
	dir := builtDir(t)
	info, err := os.Stat(filepath.Join(dir, "keyd-image.tar"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("bin/keyd-image.tar: %d bytes (%.2f MiB)", info.Size(), float64(info.Size())/(1<<20))
	if info.Size() > maxCompressed {
		t.Errorf("keyd's image is %d bytes compressed, want at most 8 MiB", info.Size())
	}
}

// TestMakeImageIsReproducible: make image again into another directory
// writes the same bytes, so the same digest, as the build under test.
func TestMakeImageIsReproducible(t *testing.T) {
	dir := builtDir(t)
	again := t.TempDir()
	cmd := exec.Command("make", "-C", "../..", "--no-print-directory", "image", "IMAGE_DIR="+again)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make image IMAGE_DIR=%s: %v\n%s", again, err, out)
	}
	for _, k := range []kind{keydImage, toolsImage} {
		first, second := digestOf(t, filepath.Join(dir, k.name+"-image.tar")), digestOf(t, filepath.Join(again, k.name+"-image.tar"))
		t.Logf("%s: %s, then %s", k.name, first, second)
		if first != second {
			t.Errorf("%s: two builds of one commit: %s and %s", k.name, first, second)
		}
	}
}

// TestMissingHostFiles: a machine without one of the Debian files the images
// are made of gets an error naming the package to install.
func TestMissingHostFiles(t *testing.T) {
	gone := filepath.Join(t.TempDir(), "absent")
	bin := filepath.Join(t.TempDir(), "keyd")
	if err := os.WriteFile(bin, []byte("stand-in"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		k    kind
		host func(*hostFiles)
		pkg  string
	}{
		{keydImage, func(h *hostFiles) { h.CABundle = gone }, "ca-certificates"},
		{keydImage, func(h *hostFiles) { h.Zoneinfo = gone }, "tzdata"},
		{toolsImage, func(h *hostFiles) { h.Busybox = gone }, "busybox-static"},
	} {
		h := defaultHostFiles
		tc.host(&h)
		_, err := build(tc.k, buildOptions{binary: bin, version: "v", revision: "r", arch: "amd64", created: time.Unix(0, 0), host: h})
		if err == nil || !strings.Contains(err.Error(), gone) || !strings.Contains(err.Error(), "install Debian's "+tc.pkg) {
			t.Errorf("%s without %s: %v, want an error naming the path and the package", tc.k.name, tc.pkg, err)
		}
	}
}

// TestSourceDateEpoch: the build refuses to guess a time.
func TestSourceDateEpoch(t *testing.T) {
	if got, err := sourceDateEpoch("1700000000"); err != nil || !got.Equal(time.Unix(1_700_000_000, 0)) {
		t.Errorf("sourceDateEpoch(1700000000) = %v, %v", got, err)
	}
	for _, bad := range []string{"", "yesterday", "-1"} {
		if _, err := sourceDateEpoch(bad); err == nil || !strings.Contains(err.Error(), "SOURCE_DATE_EPOCH") {
			t.Errorf("sourceDateEpoch(%q) = %v, want an error naming SOURCE_DATE_EPOCH", bad, err)
		}
	}
}
