# meshrelay — developer entry points. Two commands matter on a fresh machine:
#   make demo   run the relay on the embedded default with a simulated Istiod
#   make test   run every test (root-only eBPF tests skip with a reason elsewhere)

GO      ?= go
PROTOC  ?= protoc
DEMO_SECONDS ?= 0
GOTESTFLAGS ?=

.PHONY: all build demo test chaos fuzz test-short vet generate generate-proto generate-bpf check-generated tools bench scale-test clean certs chart-test chart-etcd-test manifests check-manifests

all: build

build:
	$(GO) build ./...

demo:
	DEMO_SECONDS=$(DEMO_SECONDS) $(GO) run ./demo

# make test: vet, every test (the generated-code check is one of them,
# internal/archtest), then each fuzz target for FUZZTIME.
test: vet
	$(GO) test -count=1 -timeout 15m $(GOTESTFLAGS) ./...
	$(MAKE) --no-print-directory fuzz

# fuzz runs every Fuzz* target of the module for FUZZTIME each, from its
# committed seed corpus (testdata/fuzz) on. Go 1.26's fuzz coordinator can
# fail a target with a bare "context deadline exceeded" when -fuzztime ends
# while a worker is busy (go.dev/issue/75804, fixed in Go 1.27): no input
# failed and none is written. Only that exact outcome is run again, at most
# FUZZRETRIES times; a failing input ("Failing input written to ...") or any
# other failure stops make at once.
FUZZTIME ?= 10s
FUZZRETRIES ?= 4
fuzz:
	@set -e; mkdir -p bin; for f in $$(grep -rl --include='*_test.go' '^func Fuzz' relay nodeagent internal); do \
		d=$$(dirname $$f); \
		for t in $$(grep -o '^func Fuzz[A-Za-z0-9_]*' $$f | cut -c6-); do \
			try=0; \
			while :; do \
				echo "fuzz: $$t in ./$$d for $(FUZZTIME)"; \
				if $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) ./$$d > bin/fuzz.log 2>&1; then cat bin/fuzz.log; break; fi; \
				cat bin/fuzz.log; try=$$((try+1)); \
				if grep -q 'Failing input written' bin/fuzz.log || ! grep -qx '    context deadline exceeded' bin/fuzz.log || [ $$try -gt $(FUZZRETRIES) ]; then \
					echo "fuzz: $$t failed"; exit 1; fi; \
				echo "fuzz: $$t ended on the Go fuzz coordinator's deadline race (go.dev/issue/75804) with no failing input; running it again ($$try of $(FUZZRETRIES))"; \
			done; \
		done; \
	done

# chaos: the reliability suite (e2e/chaos) at larger scale, a progress line
# per case; it rewrites the results table of docs/reliability.md. `go test
# ./...` runs the same cases at small scale (-short: the CI subset).
CHAOS_SCALE ?= large
chaos:
	@mkdir -p bin; : > bin/chaos.log; rm -f bin/chaos.rc; { $(GO) test -count=1 -timeout 60m -v -run . ./e2e/chaos -args -chaos.scale=$(CHAOS_SCALE) \
		-chaos.results=$(CURDIR)/docs/reliability.md > bin/chaos.log 2>&1; echo $$? > bin/chaos.rc; } & \
		tail -n +1 -f --pid=$$! bin/chaos.log 2>/dev/null | grep --line-buffered -E '^(chaos:|--- |ok|FAIL|panic)'; \
		echo "full log: bin/chaos.log"; exit $$(cat bin/chaos.rc)

test-short:
	$(GO) test -short -count=1 ./...

vet:
	$(GO) vet ./...


bench:
	$(GO) test -run '^$$' -bench . -benchtime 3x ./relay/... ./nodeagent/...

scale-test:
	$(GO) run ./scale-tests $(SCALE_ARGS)

# tools installs what `make generate` needs that Go cannot fetch itself
# (protoc, clang, libbpf headers), through apt when missing.
tools:
	@command -v $(PROTOC) >/dev/null && command -v clang >/dev/null && test -f /usr/include/bpf/bpf_helpers.h || \
		{ echo "installing protoc, clang, libbpf-dev with apt-get"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq protobuf-compiler clang llvm libbpf-dev; }

generate: tools generate-proto generate-bpf

# protoc-gen-go is pinned in go.mod's tool block.
generate-proto:
	$(GO) build -o bin/protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go
	$(PROTOC) --plugin=protoc-gen-go=bin/protoc-gen-go --go_out=. --go_opt=paths=source_relative proto/meshrelay/v1/*.proto

# bpf2go is pinned in go.mod's tool block; the go:generate directives live in
# nodeagent/datapath.
generate-bpf:
	$(GO) generate ./nodeagent/...

# check-generated fails when the committed generated code differs from what
# `make generate` produces.
check-generated: generate
	@git diff --exit-code -- proto nodeagent || { echo "generated code is stale: run 'make generate' and commit"; exit 1; }

clean:
	rm -rf bin

# Deployment (deploy/): the Helm chart deploy/helm/meshrelay and the manifests
# rendered from it. deploy/chart-test is a module of its own (Helm and the
# Kubernetes API types stay out of the main module's build); it needs no
# cluster and no network once its modules are downloaded.
CHART_TEST = cd deploy/chart-test && $(GO)

# make certs: etcd TLS material (CA, server, peer, relay, agent, root) in
# deploy/certs/out, plus tls-values.yaml for the chart. RELEASE, NAMESPACE,
# DAYS, OUT override the defaults.
certs:
	sh deploy/certs/gen.sh

# chart-test: lint and render the chart with the default and a custom values
# file, decode every object strictly, check security contexts, probes,
# resources, labels, and that deploy/kubernetes is current.
chart-test:
	$(CHART_TEST) vet ./... && $(GO) test -count=1 ./...

# manifests: regenerate deploy/kubernetes from the chart.
manifests:
	$(CHART_TEST) run ./cmd/render -chart ../helm/meshrelay -out ../kubernetes

# chart-etcd-test: also run the chart's etcd start script and flags with a
# real etcd (built from deploy/etcd-smoke, the main module's etcd version) on
# loopback, with `make certs` material.
chart-etcd-test:
	cd deploy/etcd-smoke && $(GO) build -o ../../bin/etcd-smoke .
	MESHRELAY_ETCD_BIN=$(CURDIR)/bin/etcd-smoke $(CHART_TEST) test -count=1 -run 'TestEtcdCommandLine|TestMakeCerts' -v ./...

check-manifests:
	$(CHART_TEST) test -count=1 -run TestManifestsUpToDate ./...
