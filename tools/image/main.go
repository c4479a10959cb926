// Command image builds keyd's container images without a Docker engine or a
// registry: a base layer from Debian's files on this machine (users, CA
// certificates, zoneinfo), for keyd-tools a busybox-static layer, and the
// static keyd binary, written as a docker-archive (`docker load`). Everything
// that varies between builds is fixed: file times are SOURCE_DATE_EPOCH,
// owners numeric, entries sorted, gzip without a name or time; two builds of
// one commit are the same bytes.
package main

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	which := fs.String("image", "keyd", "keyd or keyd-tools")
	binary := fs.String("binary", "", "the static keyd binary (CGO_ENABLED=0)")
	out := fs.String("out", "", "the docker-archive to write")
	version := fs.String("version", "", "keyd's version: the tag and the version label")
	revision := fs.String("revision", "", "the commit: the revision label")
	arch := fs.String("arch", "amd64", "the binary's GOARCH")
	if err := fs.Parse(args); err != nil {
		return err
	}
	k, ok := map[string]kind{keydImage.name: keydImage, toolsImage.name: toolsImage}[*which]
	if !ok {
		return fmt.Errorf("-image %q: want keyd or keyd-tools", *which)
	}
	if *binary == "" || *out == "" || *version == "" || *revision == "" {
		return errors.New("-binary, -out, -version and -revision are required")
	}
	created, err := sourceDateEpoch(os.Getenv("SOURCE_DATE_EPOCH"))
	if err != nil {
		return err
	}
	img, err := build(k, buildOptions{
		binary: *binary, version: *version, revision: *revision, arch: *arch,
		created: created, host: defaultHostFiles,
	})
	if err != nil {
		return err
	}
	if err := write(img, k, *version, *out, created); err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	info, err := os.Stat(*out)
	if err != nil {
		return err
	}
	fmt.Printf("%s: %s:%s and %s:latest, %s, %.1f MB\n", *out, k.name, *version, k.name, digest, float64(info.Size())/1e6)
	return nil
}

// sourceDateEpoch parses SOURCE_DATE_EPOCH (make image sets it to the
// commit's time): the one time every file and the config carry.
func sourceDateEpoch(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, errors.New("SOURCE_DATE_EPOCH is not set (make image sets it to the commit's time: git log -1 --format=%ct)")
	}
	sec, err := strconv.ParseInt(s, 10, 64)
	if err != nil || sec < 0 {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q: want seconds since 1970", s)
	}
	return time.Unix(sec, 0).UTC(), nil
}

type buildOptions struct {
	binary, version, revision, arch string
	created                         time.Time
	host                            hostFiles
}

// build puts the image together: base, (busybox,) keyd, then the config.
func build(k kind, o buildOptions) (v1.Image, error) {
	base, err := baseLayer(o.host)
	if err != nil {
		return nil, err
	}
	layers := []*layer{base}
	history := []string{"keyd base: passwd and group (nonroot 65532), CA certificates, zoneinfo, /tmp 1777, /data (65532, 0700)"}
	if k.shell {
		bb, err := busyboxLayer(o.host)
		if err != nil {
			return nil, err
		}
		layers = append(layers, bb)
		history = append(history, "busybox-static: /bin/sh and the other applets")
	}
	kl, err := keydLayer(o.binary)
	if err != nil {
		return nil, err
	}
	layers = append(layers, kl)
	history = append(history, "keyd "+o.version+": /usr/local/bin/keyd (static)")

	img := empty.Image
	for i, l := range layers {
		vl, err := l.v1Layer(o.created)
		if err != nil {
			return nil, err
		}
		img, err = mutate.Append(img, mutate.Addendum{Layer: vl, History: v1.History{
			Created: v1.Time{Time: o.created}, CreatedBy: history[i], Comment: "make image",
		}})
		if err != nil {
			return nil, err
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = o.arch, "linux"
	cf.Created = v1.Time{Time: o.created}
	cf.Config = imageConfig(k, o.version, o.revision)
	return mutate.ConfigFile(img, cf)
}

// write writes img as a docker-archive tagged <name>:<version> and
// <name>:latest, through a temporary file renamed into place. The archive is
// written here rather than by go-containerregistry's tarball.Write, whose
// RepoTags order follows a map's and so changes from one build to the next.
func write(img v1.Image, k kind, version, out string, created time.Time) error {
	var tags []string
	for _, tag := range []string{version, "latest"} {
		ref, err := name.NewTag(k.name+":"+tag, name.WithDefaultRegistry(""))
		if err != nil {
			return fmt.Errorf("tag %s:%s: %w", k.name, tag, err)
		}
		tags = append(tags, ref.String())
	}
	tmp := out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	err = writeArchive(f, img, tags, created)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, out)
}

// writeArchive writes the docker-archive layout `docker load` reads: the
// config as <hex>.json, each layer as <hex>.tar.gz (compressed, as in the
// registry), then manifest.json naming them and the tags.
func writeArchive(w io.Writer, img v1.Image, tags []string, created time.Time) error {
	tw := tar.NewWriter(w)
	entry := func(name string, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: created}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	cfgName, err := img.ConfigName()
	if err != nil {
		return err
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	manifest := []tarball.Descriptor{{Config: cfgName.Hex + ".json", RepoTags: tags}}
	if err := entry(manifest[0].Config, cfg); err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return err
		}
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return err
		}
		manifest[0].Layers = append(manifest[0].Layers, d.Hex+".tar.gz")
		if err := entry(d.Hex+".tar.gz", data); err != nil {
			return err
		}
	}
	m, err := json.Marshal(manifest)
	if err != nil {
		return err
	}
	if err := entry("manifest.json", m); err != nil {
		return err
	}
	return tw.Close()
}
