# keyd container images: a static binary on a distroless base, running as a non-root user.
#
#   docker build -t keyd .                      keyd's image (the default target)
#   docker build --target tools -t keyd-tools . the same binary with a POSIX shell, for jobs (sh -e -c)
#   docker run --rm -p 8080:8080 -v keyd-data:/data -e KEYD_SIGNER_TOKEN=... keyd
#       local backend; keys, generated role tokens and the audit log live in the /data volume
#   docker run --rm -i keyd sign --server http://keyd:8080 --token ... < claims.json   (any client command)
#
# Without Docker, `make image` builds the same images (same config, same files; tested by
# tools/image TestDockerfileConfig) into bin/keyd-image.tar and bin/keyd-tools-image.tar.
# Pass --build-arg VERSION=$(git describe --tags --always --dirty) --build-arg REVISION=$(git rev-parse HEAD)
# for the version keyd --version prints and the OCI labels.
#
# keyd's image has no shell and no package manager: everything, including the container
# healthcheck (`keyd healthcheck --url http://127.0.0.1:8080/readyz`), runs through the keyd binary.

ARG VERSION=dev
ARG REVISION=unknown

FROM golang:1.26-bookworm AS build
ARG VERSION
WORKDIR /src
# Dependencies first, so that a source change does not download modules again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /keyd ./cmd/keyd
# The data directory for the local backend, owned by the distroless "nonroot" user (65532).
# It is copied as a subdirectory of /rootfs so that the directory itself gets the owner and mode.
RUN mkdir -p /rootfs/data && chown 65532:65532 /rootfs/data && chmod 0700 /rootfs/data

# Debian's static busybox and a symlink per applet, for the tools image's shell.
FROM debian:bookworm-slim AS shell
RUN apt-get update && apt-get install -y --no-install-recommends busybox-static \
 && mkdir -p /shell/bin && cp /bin/busybox /shell/bin/busybox \
 && for a in $(/bin/busybox --list-full); do \
      [ "$a" = bin/busybox ] || { mkdir -p "/shell/$(dirname "$a")" && ln -s /bin/busybox "/shell/$a"; }; \
    done

FROM gcr.io/distroless/static-debian12:nonroot AS keyd
ARG VERSION
ARG REVISION
COPY --from=build /keyd /usr/local/bin/keyd
COPY --from=build --chown=65532:65532 /rootfs/ /
USER 65532:65532
# PATH, SSL_CERT_FILE and the working directory are stated, not inherited, so that the config
# is the one make image writes.
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
# Local mode keeps keys, role tokens and the audit log here; Vault mode does not use it.
ENV KEYD_DATA_DIR=/data
WORKDIR /
VOLUME ["/data"]
EXPOSE 8080/tcp
LABEL org.opencontainers.image.source=https://github.com/openedx-keyd/keyd \
      org.opencontainers.image.version=${VERSION} \
      org.opencontainers.image.revision=${REVISION} \
      org.opencontainers.image.licenses=Apache-2.0 \
      org.opencontainers.image.title=keyd
ENTRYPOINT ["/usr/local/bin/keyd"]
CMD ["serve", "--listen", "0.0.0.0:8080"]

# keyd-tools: keyd's image plus a POSIX shell. Jobs give the whole command (sh -e -c "keyd ..."),
# so there is no entrypoint.
FROM keyd AS tools
COPY --from=shell /shell/ /
LABEL org.opencontainers.image.title=keyd-tools
ENTRYPOINT []
CMD ["sh"]

# The default target: keyd's image.
FROM keyd
