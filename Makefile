# hull: see README.md. `make demo` runs the main job, `make test` every test;
# both install what they need first (as root, on Debian).

GO       ?= go
PREFIX   ?= /usr/local
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
# urfave_cli_no_docs leaves out hullctl's man-page generator; grpcnotrace
# leaves out gRPC's x/net/trace pages, whose html/template would make the
# linker keep every exported method (see cmd/hulld/main.go).
BUILDTAGS := urfave_cli_no_docs,grpcnotrace
LDFLAGS  := -s -w -X github.com/hullrt/hull/internal/version.Version=$(VERSION) -X github.com/hullrt/hull/internal/version.Revision=$(REVISION)
BINARIES := bin/hulld bin/hullctl bin/hull-snapshotter bin/containerd-shim-hull-v2
# Fuzz targets run briefly in `make test`; `make fuzz FUZZTIME=2000000x` runs
# longer. The limit is a number of inputs, not a duration: a time limit that
# expires while the engine minimizes a new input fails the run with "context
# deadline exceeded" though nothing failed. An entry may end in its own
# :limit (the layer applier writes files for every input, so it runs fewer).
FUZZTIME ?= 50000x
FUZZ     := ./core/filters:FuzzParse ./core/mount:FuzzParseIDMaps ./config:FuzzParse ./config:FuzzMigrate ./core/reference:FuzzParse ./core/remotes/hosts:FuzzParse ./core/remotes/registry:FuzzParseChallenges ./core/images:FuzzParseChildren ./core/archive:FuzzApply:5000x ./core/runtime/shims:FuzzParseBootstrap ./client/oci:FuzzParsePasswd ./client/oci:FuzzParseGroup ./client/oci:FuzzParseUserSpec ./shim/runc:FuzzParsePs ./shim/runc:FuzzParseState ./shim/runc:FuzzLastError ./shim/bootstrap:FuzzParseArgs ./shim/launch:FuzzGroupID ./shim/task:FuzzClampSpecOOMScoreAdj ./core/metadata:FuzzDecodeRecord ./internal/crashpoint:FuzzParse ./core/leases:FuzzIdleTimeout ./internal/errgrpc:FuzzRoundTrip ./cri/logs:FuzzParse ./cri/logs:FuzzWriter:10000x ./cri/cni:FuzzValidatePortMappings ./cri/cni:FuzzParseBandwidth ./cri/cni:FuzzRenderTemplate ./cri/spec:FuzzParseCapability ./cri/spec:FuzzParseProfileName ./cri/spec:FuzzLoadSeccompProfile ./cri/spec:FuzzCgroupsPath ./cri/spec:FuzzCheckSysctls ./cri/spec:FuzzResolveInRoot:5000x ./cri/images:FuzzNormalizeRef ./cri/images:FuzzDecodeAuth ./cri/podmetrics:FuzzParseNetDev ./cri/podmetrics:FuzzParseLimits ./shim/bootstrap:FuzzParseStartInput ./shim/info:FuzzParseFeatures ./shim/info:FuzzParseOptions ./core/restart:FuzzParsePolicy ./core/restart:FuzzDecide ./plugins/restart:FuzzLogCreator ./plugins/restart:FuzzParseInterval ./plugins/services/introspection:FuzzParseRuntimeInfo ./plugins/services/introspection:FuzzRuntimeTarget ./shim/task:FuzzWithTerminal ./core/imagearchive:FuzzReadIndex:5000x ./core/mount/manager:FuzzExpand ./core/mount/manager:FuzzParseBlockOptions ./core/mount/manager:FuzzParseMkdir ./core/taskmetrics:FuzzConvert ./cmd/hullctl:FuzzParseVolume ./cmd/hullctl:FuzzParseMount ./test/integration:FuzzShellWords

.PHONY: all build deps install test test-steps unit integration race fuzz bench chaos critest demo docs check-docs clean

all: build

deps:
	./scripts/deps.sh

build:
	CGO_ENABLED=0 $(GO) build -trimpath -tags $(BUILDTAGS) -ldflags '$(LDFLAGS)' -o bin/ ./cmd/hulld ./cmd/hullctl ./cmd/hull-snapshotter ./cmd/containerd-shim-hull-v2

install: build
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)/etc/systemd/system
	install -m 0755 $(BINARIES) $(DESTDIR)$(PREFIX)/bin/
	install -m 0644 contrib/hull.service $(DESTDIR)/etc/systemd/system/hull.service
	install -m 0644 contrib/hull.socket $(DESTDIR)/etc/systemd/system/hull.socket

# hull's own defaults under the temporary directory, which tests' daemons,
# shims and clients use when their paths are too long for a socket or name
# no FIFO directory: those that do not exist before `make test` are removed
# after it (once all test packages, which run side by side, are done) if
# they are empty, whether the tests passed or not.
TEST_TMP_DEFAULTS := $(shell for d in hull-shim hull-fifo; do p=$${TMPDIR:-/tmp}/$$d; [ -e $$p ] || echo $$p; done)

# After hull's own tests, containerd's conformance suites against hull's
# stores and hulld (test/compat, a module of its own so that containerd stays
# out of hull's), run against the hulld just built.
test: deps build
	@st=0; $(MAKE) --no-print-directory test-steps || st=$$?; \
	for d in $(TEST_TMP_DEFAULTS); do rmdir $$d 2>/dev/null; done; exit $$st

# Each step says when it starts, so that a slow CI run shows which step
# took the time.
STEP = @echo "[$$(date +%T)] make test:"
test-steps:
	$(STEP) vet and the tests of every package
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m ./...
	$(STEP) test/compat, the conformance suites of containerd
	cd test/compat && $(GO) vet ./... && HULLD_BIN=$(CURDIR)/bin/hulld $(GO) test -count=1 -timeout 15m ./...
	$(STEP) race detector
	$(MAKE) --no-print-directory race
	$(STEP) fuzz targets
	$(MAKE) --no-print-directory fuzz
	$(STEP) critest
	./scripts/critest.sh $(CRITEST_MIN)
	$(STEP) done

# The packages whose code runs goroutines, under the race detector (the
# integration tests run the same code in hulld, without it).
RACE := ./client/... ./core/... ./daemon ./internal/proxy ./plugin ./plugins/... ./shim/...
race:
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 20m $(RACE)

fuzz:
	@set -e; for t in $(FUZZ); do \
		pkg=$${t%%:*}; rest=$${t#*:}; fn=$${rest%%:*}; ft=$(FUZZTIME); \
		case $$rest in *:*) ft=$${rest#*:};; esac; \
		echo "fuzz $$pkg $$fn ($$ft)"; \
		$(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $$ft -fuzzminimizetime 200x $$pkg; \
	done

# cri-tools' conformance suite against hulld's CRI (see docs/kubernetes.md);
# it fails below CRITEST_MIN passed specs or on any failure but the one no
# runtime can pass offline.
CRITEST_MIN ?= 114
critest: deps build
	./scripts/critest.sh $(CRITEST_MIN)

# The chaos suite's long form: 30 rounds of random kills of hulld under
# load, besides every crash point and fault (`make test` runs 3 rounds).
chaos: deps build
	HULL_CHAOS_ROUNDS=30 $(GO) test -count=1 -timeout 30m -v -run 'TestChaos|TestFault' ./test/integration/

bench: deps build
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 60m ./test/bench/

demo: deps build
	./scripts/demo.sh

docs:
	$(GO) run ./cmd/hulld config reference > docs/configuration.md

clean:
	rm -rf bin
