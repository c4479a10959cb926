package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// nonroot is the uid and gid keyd runs as (distroless's "nonroot").
const nonroot = 65532

// entry is one file of a layer. Every entry gets the same mtime (the
// commit's) and a numeric owner, so a layer depends only on its contents.
type entry struct {
	name     string // relative, no leading slash; directories without a trailing one
	typ      byte   // tar.TypeReg, tar.TypeDir, tar.TypeSymlink
	mode     int64
	uid, gid int
	data     []byte
	link     string
}

// layer collects entries and writes them as a reproducible tar.
type layer struct {
	entries map[string]entry
}

func newLayer() *layer { return &layer{entries: map[string]entry{}} }

// dir adds a directory (and its parents, 0755 root, unless added already).
func (l *layer) dir(name string, mode int64, uid, gid int) {
	l.parents(name)
	l.entries[name] = entry{name: name, typ: tar.TypeDir, mode: mode, uid: uid, gid: gid}
}

func (l *layer) file(name string, mode int64, data []byte) {
	l.parents(name)
	l.entries[name] = entry{name: name, typ: tar.TypeReg, mode: mode, data: data}
}

func (l *layer) symlink(name, target string) {
	l.parents(name)
	l.entries[name] = entry{name: name, typ: tar.TypeSymlink, mode: 0o777, link: target}
}

func (l *layer) parents(name string) {
	for d := path.Dir(name); d != "." && d != "/"; d = path.Dir(d) {
		if _, ok := l.entries[d]; !ok {
			l.entries[d] = entry{name: d, typ: tar.TypeDir, mode: 0o755}
		}
	}
}

// tree copies the host directory src to name: regular files (0644, or 0755
// when executable), directories (0755) and symlinks as they are.
func (l *layer) tree(name, src string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		dst := path.Join(name, filepath.ToSlash(rel))
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			l.dir(dst, 0o755, 0, 0)
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			l.symlink(dst, target)
		case info.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			mode := int64(0o644)
			if info.Mode()&0o111 != 0 {
				mode = 0o755
			}
			l.file(dst, mode, data)
		default:
			return fmt.Errorf("%s: not a file, directory or symlink", p)
		}
		return nil
	})
}

// tar writes the entries sorted by name with mtime, no user or group names
// and no access or change times.
func (l *layer) tar(mtime time.Time) ([]byte, error) {
	names := make([]string, 0, len(l.entries))
	for n := range l.entries {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		e := l.entries[n]
		h := &tar.Header{
			Typeflag: e.typ, Name: e.name, Linkname: e.link, Mode: e.mode,
			Uid: e.uid, Gid: e.gid, ModTime: mtime,
		}
		if e.typ == tar.TypeDir {
			h.Name += "/"
		}
		if e.typ == tar.TypeReg {
			h.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// v1Layer gzips the layer (best compression, no name or time in the gzip
// header) into an image layer.
func (l *layer) v1Layer(mtime time.Time) (v1.Layer, error) {
	raw, err := l.tar(mtime)
	if err != nil {
		return nil, err
	}
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(raw); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	b := gz.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	})
}

// hostFiles are the Debian files the base layer is made of.
type hostFiles struct {
	CABundle string // ca-certificates
	Zoneinfo string // tzdata
	Busybox  string // busybox-static (the tools image only)
}

var defaultHostFiles = hostFiles{
	CABundle: "/etc/ssl/certs/ca-certificates.crt",
	Zoneinfo: "/usr/share/zoneinfo",
	Busybox:  "/bin/busybox",
}

// missing names the Debian package to install for a host file not found.
func missing(what, path, pkg string, err error) error {
	return fmt.Errorf("%s %s: %w (install Debian's %s: tools/setup-debian)", what, path, err, pkg)
}

const passwd = `root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
`

const group = `root:x:0:
nobody:x:65534:
nonroot:x:65532:
`

// baseLayer is what distroless's static nonroot image holds that keyd uses:
// users, CA certificates, zoneinfo, /tmp, the home of nonroot and the /data
// volume owned by nonroot.
func baseLayer(h hostFiles) (*layer, error) {
	l := newLayer()
	l.file("etc/passwd", 0o644, []byte(passwd))
	l.file("etc/group", 0o644, []byte(group))
	l.file("etc/nsswitch.conf", 0o644, []byte("hosts: files dns\n"))
	ca, err := os.ReadFile(h.CABundle)
	if err != nil {
		return nil, missing("CA bundle", h.CABundle, "ca-certificates", err)
	}
	l.file("etc/ssl/certs/ca-certificates.crt", 0o644, ca)
	if _, err := os.Stat(filepath.Join(h.Zoneinfo, "UTC")); err != nil {
		return nil, missing("zoneinfo", h.Zoneinfo, "tzdata", err)
	}
	if err := l.tree("usr/share/zoneinfo", h.Zoneinfo); err != nil {
		return nil, err
	}
	l.dir("usr/local/bin", 0o755, 0, 0)
	l.dir("tmp", 0o1777, 0, 0)
	l.dir("root", 0o700, 0, 0)
	l.dir("home/nonroot", 0o700, nonroot, nonroot)
	l.dir("data", 0o700, nonroot, nonroot)
	return l, nil
}

// busyboxLayer is the tools image's shell: Debian's static busybox and a
// symlink for each of its applets at the path busybox lists.
func busyboxLayer(h hostFiles) (*layer, error) {
	bin, err := os.ReadFile(h.Busybox)
	if err != nil {
		return nil, missing("busybox", h.Busybox, "busybox-static", err)
	}
	out, err := exec.Command(h.Busybox, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list-full: %w", h.Busybox, err)
	}
	l := newLayer()
	l.file("bin/busybox", 0o755, bin)
	for _, applet := range strings.Fields(string(out)) {
		applet = strings.TrimPrefix(applet, "/")
		if applet == "bin/busybox" || strings.HasPrefix(applet, "usr/local/") {
			continue
		}
		l.symlink(applet, "/bin/busybox")
	}
	if _, ok := l.entries["bin/sh"]; !ok {
		return nil, fmt.Errorf("%s lists no bin/sh applet", h.Busybox)
	}
	return l, nil
}

// keydLayer holds the static keyd binary at /usr/local/bin/keyd.
func keydLayer(binary string) (*layer, error) {
	bin, err := os.ReadFile(binary)
	if err != nil {
		return nil, fmt.Errorf("keyd binary: %w (make image builds it)", err)
	}
	l := newLayer()
	l.file("usr/local/bin/keyd", 0o755, bin)
	return l, nil
}
