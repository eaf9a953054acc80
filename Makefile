# Wardgate build, demo and test entry points. `make help` lists them.
GO      ?= go
BIN     := bin
CMDS    := wardgate wardhub devicesim
PKGS    := ./...

.PHONY: help build demo test test-deps bench fuzz vet fmt-check tidy-check clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build the binaries into bin/
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ $(addprefix ./cmd/,$(CMDS))

demo: build ## run hub, gateway and 20 simulated devices on loopback and print a summary
	BIN=$(BIN) ./scripts/demo.sh

test-deps: ## install the Debian and npm packages the tests need (idempotent)
	./scripts/test-deps.sh

test: test-deps ## run every test with the race detector
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

bench: ## run the benchmarks once and print their figures
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 1x -timeout 30m $(PKGS)
	./scripts/bench-cache.sh

fuzz: ## run each fuzz target for 30 seconds
	./scripts/fuzz.sh 30s

vet: ## run go vet
	$(GO) vet $(PKGS)

fmt-check: ## fail if gofmt would change a file
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

tidy-check: ## fail if go mod tidy would change go.mod or go.sum
	@cp go.mod /tmp/wardgate-go.mod.bak; cp go.sum /tmp/wardgate-go.sum.bak; \
	$(GO) mod tidy; \
	if ! cmp -s go.mod /tmp/wardgate-go.mod.bak || ! cmp -s go.sum /tmp/wardgate-go.sum.bak; then \
	  echo "go.mod or go.sum is not tidy: run go mod tidy"; cp /tmp/wardgate-go.mod.bak go.mod; cp /tmp/wardgate-go.sum.bak go.sum; exit 1; fi

# The Debian package. nfpm runs with `go run` at a fixed version, so it
# needs no install and stays out of go.mod.
NFPM    ?= github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.48.0
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null | sed 's/^v//' | grep -E '^[0-9]' || echo 0.0.0~git$$(git rev-parse --short HEAD 2>/dev/null || echo unknown))
ARCH    ?= $(shell $(GO) env GOARCH)

.PHONY: package
package: ## build bin/wardgate_VERSION_ARCH.deb (systemd unit, sysctl drop-in, commented config)
	@mkdir -p $(BIN)/package
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o $(BIN)/wardgate ./cmd/wardgate
	cp gateway/config/example.toml $(BIN)/package/wardgate.toml
	VERSION=$(VERSION) ARCH=$(ARCH) $(GO) run $(NFPM) package --config deploy/nfpm.yaml --packager deb --target $(BIN)/wardgate_$(VERSION)_$(ARCH).deb
	@echo "built $(BIN)/wardgate_$(VERSION)_$(ARCH).deb"

clean: ## remove build output
	rm -rf $(BIN)
