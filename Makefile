# keyd — `make test` is what CI runs (.ci/run); `make vault` builds the real
# Vault the tests start; `make bench` compares keyd with reference servers;
# `make image` builds the container images without Docker.
GO       ?= go
PKGS_RACE = $(shell $(GO) list ./... | grep -v /e2e)
FUZZTIME ?= 10s
# staticcheck 2026.2.2 (module version v0.8.2) reads go 1.26 modules.
STATICCHECK ?= v0.8.2
# gocyclo: no production function above cyclomatic complexity 15 (issues 13, 22).
GOCYCLO ?= v0.6.0
# No production Go file above this many lines (issue 22).
MAXLINES ?= 600
# Every production Go file of the repository, the modules of tools/ included
# (tools/image, tools/k8scheck): gocyclo and the line limit read files, not modules.
PROD_GO = $$( (git ls-files '*.go' 2>/dev/null || find . -name '*.go') | grep -v '_test\.go$$')

.PHONY: build test vault lint unit e2e fuzz bench clean openedx-test openedx-lint report-test tutor-test image image-test

build:
	$(GO) build -o bin/keyd ./cmd/keyd

# Vault v1.21.0 from the Go module proxy, in its own module (tools/vault) so
# its dependencies never enter keyd's go.mod. Cold: 10+ minutes; then cached.
vault: bin/vault
bin/vault: tools/vault/go.mod tools/vault/go.sum
	@mkdir -p bin
	cd tools/vault && $(GO) build -trimpath -ldflags "-s -w" -o ../../bin/vault github.com/hashicorp/vault
	@touch bin/vault

# Everything the tests need, on a fresh clone: the Debian packages (installed
# when run as root, else one line naming the apt-get command), Go modules,
# the npm packages of the jose interop test (npm ci when node_modules is
# missing or older than the lock file) and bin/vault. `make test` runs it first.
.PHONY: image-lint setup debian-packages go-modules npm-packages
setup: debian-packages go-modules npm-packages vault

debian-packages:
	@tools/setup-debian

go-modules:
	$(GO) mod download

npm-packages: interop/js/node_modules/.package-lock.json
interop/js/node_modules/.package-lock.json: interop/js/package.json interop/js/package-lock.json
	cd interop/js && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

lint: openedx-lint image-lint
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK) ./...
	$(GO) run github.com/fzipp/gocyclo/cmd/gocyclo@$(GOCYCLO) -over 15 $(PROD_GO)
	@out=$$(wc -l $(PROD_GO) | awk '$$2 != "total" && $$1 > $(MAXLINES) { print $$2 ": " $$1 " lines, at most $(MAXLINES) in a production Go file" }'); \
	  if [ -n "$$out" ]; then echo "$$out"; exit 1; fi

# Unit, API, interop and real-Vault tests under the race detector.
unit: vault
	CI=$${CI:-1} $(GO) test -race -count=1 -timeout 20m $(PKGS_RACE)

# The audit report in a real browser (Debian's chromium, headless; installed
# by tools/setup-debian): also part of unit, this target runs it alone.
report-test:
	CI=$${CI:-1} $(GO) test -count=1 -run 'TestReportInBrowser' ./internal/report/

# Short fuzzing of every parser of untrusted input.
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzBuild$$' -fuzztime $(FUZZTIME) ./internal/claims/
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./verify/
	$(GO) test -run '^$$' -fuzz '^FuzzSignRequest$$' -fuzztime $(FUZZTIME) ./internal/api/

# End-to-end runs of real keyd processes on wall-clock time (no -race: timing).
e2e: vault build
	CI=$${CI:-1} $(GO) test -count=1 -timeout 20m ./e2e/

test: setup lint unit fuzz e2e openedx-test tutor-test k8s-check rules-check image-test

# Kubernetes manifests (deploy/k8s): bin/k8scheck renders each kustomization
# and decodes every object strictly into the k8s.io/api types, in its own
# module (tools/k8scheck) so k8s.io/* never enters keyd's go.mod. Usage:
# bin/k8scheck [-kustomize DIR]... [FILE.yaml]...
.PHONY: k8s-check
bin/k8scheck: tools/k8scheck/go.mod tools/k8scheck/go.sum $(wildcard tools/k8scheck/*.go)
	@mkdir -p bin
	cd tools/k8scheck && $(GO) build -trimpath -o ../../bin/k8scheck .

k8s-check: bin/k8scheck
	cd tools/k8scheck && $(GO) vet ./... && $(GO) test -count=1 ./...
	bin/k8scheck -kustomize deploy/k8s/base -kustomize deploy/k8s/overlays/local

# Prometheus alerts (deploy/prometheus): promtool from the Go module proxy,
# in its own module (tools/promtool). Cold: several minutes; then cached.
.PHONY: rules-check
bin/promtool: tools/promtool/go.mod tools/promtool/go.sum
	@mkdir -p bin
	cd tools/promtool && $(GO) build -trimpath -ldflags "-s -w" -o ../../bin/promtool github.com/prometheus/prometheus/cmd/promtool
	@touch bin/promtool

rules-check: bin/promtool
	bin/promtool check rules deploy/prometheus/keyd-rules.yml
	cd deploy/prometheus && ../../bin/promtool test rules keyd-rules_test.yml

# The Open edX bridge (openedx/): its pytest suite against real keyd and Vault
# processes, with Debian's python3 (exit 5, no tests collected, fails too).
openedx-test: build vault
	CI=$${CI:-1} /usr/bin/python3 -m pytest -q -p no:cacheprovider openedx/tests

openedx-lint:
	/usr/bin/python3 -m pyflakes openedx/ deploy/tutor/

# The Tutor plugin (deploy/tutor/): its render harness (Tutor v21's renderer, a stand-in of
# tutor.hooks), docker-compose config of the rendered files, the schema check of the rendered k8s
# objects (bin/k8scheck) and the four-step rollout against a real keyd.
tutor-test: build bin/k8scheck
	CI=$${CI:-1} /usr/bin/python3 -m pytest -q -p no:cacheprovider deploy/tutor/tests

# Container images, with no Docker engine and no registry pull (docs/design.md
# "Container image"): the static keyd binary, stamped with VERSION, on a base
# layer made from Debian's files here (tools/image, its own module so that
# go-containerregistry stays out of keyd's go.mod), written as docker-archives
# (`docker load < bin/keyd-image.tar`). Every time in them is the commit's
# (SOURCE_DATE_EPOCH): two builds of one commit are the same bytes.
# The release version (the VERSION file) tags the images; the commit is their
# revision label. The Tutor plugin's default image tags name the same version.
VERSION           ?= $(shell cat VERSION)
REVISION          ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
IMAGE_ARCH        ?= $(shell $(GO) env GOARCH)
IMAGE_DIR         ?= bin
IMAGE_OUT          = $(abspath $(IMAGE_DIR))

image:
	@mkdir -p $(IMAGE_OUT)
	CGO_ENABLED=0 GOOS=linux GOARCH=$(IMAGE_ARCH) $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" \
	  -o $(IMAGE_OUT)/keyd-linux-$(IMAGE_ARCH) ./cmd/keyd
	cd tools/image && $(GO) build -o $(IMAGE_OUT)/image-build .
	for img in keyd keyd-tools; do \
	  SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) $(IMAGE_OUT)/image-build -image $$img -binary $(IMAGE_OUT)/keyd-linux-$(IMAGE_ARCH) \
	    -version $(VERSION) -revision $(REVISION) -arch $(IMAGE_ARCH) -out $(IMAGE_OUT)/$$img-image.tar || exit 1; \
	done

# Both images unpacked (skopeo, umoci) and run under runc, as root (CI is):
# tools/image's tests, which fail rather than skip when CI=1 and something is
# missing. Also: the Dockerfile states the config make image writes, and a
# second build is the same bytes.
image-test: image build
	cd tools/image && CI=$${CI:-1} KEYD_IMAGE_DIR=$(IMAGE_OUT) KEYD_HOST_BIN=$(abspath bin/keyd) \
	  $(GO) test -count=1 -timeout 15m ./...

# tools/image is a module of its own: go vet ./... at the root does not see it.
image-lint:
	cd tools/image && $(GO) vet ./... && $(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK) ./...

bench: vault build
	./bench/run

clean:
	rm -rf bin keyd-data
