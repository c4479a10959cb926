# keyd container image: a static binary on a distroless base, running as a non-root user.
#
#   docker build -t keyd .
#   docker run --rm -p 8080:8080 -v keyd-data:/data -e KEYD_SIGNER_TOKEN=... keyd
#       local backend; keys, generated role tokens and the audit log live in the /data volume
#   docker run --rm -i keyd sign --server http://keyd:8080 --token ... < claims.json   (any client command)
#
# The final image has no shell and no package manager: everything, including the container
# healthcheck (`keyd healthcheck --url http://127.0.0.1:8080/readyz`), runs through the keyd binary.

FROM golang:1.26-bookworm AS build
WORKDIR /src
# Dependencies first, so that a source change does not download modules again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /keyd ./cmd/keyd
# The data directory for the local backend, owned by the distroless "nonroot" user (65532).
# It is copied as a subdirectory of /rootfs so that the directory itself gets the owner and mode.
RUN mkdir -p /rootfs/data && chown 65532:65532 /rootfs/data && chmod 0700 /rootfs/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /keyd /usr/local/bin/keyd
COPY --from=build --chown=65532:65532 /rootfs/ /
USER 65532:65532
# Local mode keeps keys, role tokens and the audit log here; Vault mode does not use it.
ENV KEYD_DATA_DIR=/data
VOLUME ["/data"]
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/keyd"]
CMD ["serve", "--listen", "0.0.0.0:8080"]
