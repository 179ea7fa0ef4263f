# meshrelay — developer entry points. Two commands matter on a fresh machine:
#   make demo   run the relay on the embedded default with a simulated Istiod
#   make test   run every test (root-only eBPF tests skip with a reason elsewhere)

GO      ?= go
PROTOC  ?= protoc
DEMO_SECONDS ?= 0
GOTESTFLAGS ?=

.PHONY: all build demo test test-short vet fuzz generate generate-proto generate-bpf check-generated tools bench scale-test clean

all: build

build:
	$(GO) build ./...

demo:
	DEMO_SECONDS=$(DEMO_SECONDS) $(GO) run ./scale-tests/demo

# make test: vet, the generated-code check, then all tests.
test: vet
	$(GO) test -count=1 -timeout 15m $(GOTESTFLAGS) ./...

test-short:
	$(GO) test -short -count=1 ./...

vet:
	$(GO) vet ./...

# make fuzz: every fuzz target for FUZZTIME each (seed corpora in the
# packages' testdata/fuzz run with every plain `go test` too).
FUZZTIME ?= 10s
FUZZ_TARGETS = \
	./internal/keyspace:FuzzParseServiceKey \
	./internal/model:FuzzDecodeValue \
	./relay/translate:FuzzSotWIndex \
	./relay/translate/workload:FuzzIndex
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "fuzz $$fn ($$pkg) for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

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
