package main

import (
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// source is keyd's repository, the org.opencontainers.image.source label.
const source = "https://github.com/openedx-keyd/keyd"

// kind is one of the two images: keyd's, and keyd-tools (the same binary on
// a base with a POSIX shell, for jobs that run `sh -e -c`).
type kind struct {
	name  string // the repository in the tags, and the title label
	shell bool
}

var (
	keydImage  = kind{name: "keyd"}
	toolsImage = kind{name: "keyd-tools", shell: true}
)

// imageConfig is the image config of docs/design.md "Container image": the
// Dockerfile's stages state the same (TestDockerfileConfig).
func imageConfig(k kind, version, revision string) v1.Config {
	c := v1.Config{
		User: "65532:65532",
		Env: []string{
			"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
			"KEYD_DATA_DIR=/data",
		},
		WorkingDir:   "/",
		Entrypoint:   []string{"/usr/local/bin/keyd"},
		Cmd:          []string{"serve", "--listen", "0.0.0.0:8080"},
		Volumes:      map[string]struct{}{"/data": {}},
		ExposedPorts: map[string]struct{}{"8080/tcp": {}},
		Labels: map[string]string{
			"org.opencontainers.image.source":   source,
			"org.opencontainers.image.version":  version,
			"org.opencontainers.image.revision": revision,
			"org.opencontainers.image.licenses": "Apache-2.0",
			"org.opencontainers.image.title":    k.name,
		},
	}
	if k.shell {
		// Jobs give the whole command (`sh -e -c "..."`, a Kubernetes
		// command:), so there is no entrypoint; alone, it is a shell.
		c.Entrypoint = nil
		c.Cmd = []string{"sh"}
	}
	return c
}
