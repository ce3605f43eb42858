# fedgate developer targets. Everything here is plain `go` underneath; the
# README's commands work without make.

GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
FUZZTIME  ?= 15s
BENCH     ?= .
BENCHTIME ?= 1s
BENCHCOUNT ?= 1

.PHONY: build test lint bench fuzz run docker dist deb generate clean

## build: static binary in bin/fedgate
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ ./cmd/...

## test: the README's test command
test:
	$(GO) test -race ./...

## lint: formatting, vet and module checks (what CI checks before the tests)
lint:
	@out=$$(gofmt -l $$(git ls-files --cached --others --exclude-standard '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) mod verify
	$(GO) mod tidy -diff

## bench: benchmarks of the hot path (results in docs/performance.md):
## X-Matrix parse, canonical JSON (2/16/64 KiB, canonical and not),
## sign/verify (precomputed keys and crypto/ed25519), policy,
## rate limiters, route lookup, the inbound pipeline in process, the
## upstream forwarder, upstream pools (choosing a member by origin with
## 2/8/32 members, the route lookup, the pipeline in front of pools).
## BENCHTIME=2s BENCHCOUNT=5 for numbers worth comparing (benchstat).
bench:
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -benchtime $(BENCHTIME) -count $(BENCHCOUNT) \
		./auth/ ./policy/ ./internal/endpoints/ ./internal/glob/ ./internal/edverify/ ./gateway/ ./upstream/

## fuzz: every fuzz target for FUZZTIME each
fuzz:
	./.ci/fuzz $(FUZZTIME)

## run: fedgate on the example configuration
run:
	$(GO) run ./cmd/fedgate run -config gateway.toml.example

## docker: the container image (packaging/Dockerfile), tagged fedgate:VERSION
docker:
	docker build -f packaging/Dockerfile --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) \
	  -t fedgate:$(VERSION) -t fedgate:latest .

## dist: release binaries for linux/amd64 and linux/arm64 with SHA-256
## sums in dist/ (scripts/dist.sh; VERSION=1.2.0 make dist for a release)
dist:
	VERSION=$(VERSION) COMMIT=$(COMMIT) ./scripts/dist.sh

## deb: the Debian package in dist/ (scripts/deb.sh: static binary plus
## packaging/nfpm.yaml, packed by nfpm run as a pinned tool)
deb:
	VERSION=$(VERSION) COMMIT=$(COMMIT) ./scripts/deb.sh

## generate: docs/configuration.md from the configuration schema
generate:
	$(GO) generate ./...

## clean: build output (data/, where "make run" keeps its keys, stays)
clean:
	rm -rf bin/ dist/
