# keyalert — `make run` runs the demo end to end, `make test` runs every test.
GO      ?= go
CC      ?= cc
BUILD   := $(CURDIR)/build
PKGS    := ./...

export KEYALERT_BUILD := $(BUILD)

.PHONY: all build plugin backend cli demo host receiver run clean-demo test test-short bench fuzz vet redis alertmanager chromium console-screenshots run clean FORCE

all: build

build: plugin backend cli demo host receiver

plugin: $(BUILD)/keyalert.so
backend: $(BUILD)/keyalertd
cli: $(BUILD)/keyalert
demo: $(BUILD)/keyalert-demo
host: $(BUILD)/flbhost
receiver: $(BUILD)/pdreceiver

# Go's build cache decides what is stale, so the Go targets always ask it.
$(BUILD)/keyalert.so: FORCE
	CGO_ENABLED=1 $(GO) build -buildmode=c-shared -trimpath -o $@ ./plugin

$(BUILD)/keyalertd: FORCE
	$(GO) build -trimpath -o $@ ./cmd/keyalertd

$(BUILD)/keyalert: FORCE
	$(GO) build -trimpath -o $@ ./cmd/keyalert

$(BUILD)/keyalert-demo: FORCE
	$(GO) build -trimpath -o $@ ./cmd/keyalert-demo

$(BUILD)/pdreceiver: FORCE
	$(GO) build -trimpath -o $@ ./cmd/pdreceiver

# The Fluent Bit stand-in that dlopens keyalert.so (see harness/flbhost/README.md).
$(BUILD)/flbhost: harness/flbhost/c/flbhost.c
	@mkdir -p $(BUILD)
	$(CC) -O2 -g -Wall -Wextra -o $@ $< -ldl -lpthread

# redis-server from Debian's package; the tests start their own instances of it
# on free loopback ports (package redistest), the demo one under var/.
redis:
	@if ! command -v redis-server >/dev/null 2>&1 && [ ! -x /usr/bin/redis-server ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "redis-server is missing: installing the Debian package redis-server"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
		elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
			echo "redis-server is missing: installing the Debian package redis-server (sudo)"; \
			sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
		else \
			echo "redis-server is missing. Install it with:  sudo apt-get install -y redis-server"; exit 1; \
		fi; \
	fi

# prometheus-alertmanager from Debian's package: the notification tests start
# their own on free loopback ports (package harness/amtest) and skip without it.
alertmanager:
	@if ! command -v prometheus-alertmanager >/dev/null 2>&1 && [ ! -x /usr/bin/prometheus-alertmanager ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "prometheus-alertmanager is missing: installing the Debian package"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus-alertmanager >/dev/null; \
		elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
			echo "prometheus-alertmanager is missing: installing the Debian package (sudo)"; \
			sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus-alertmanager >/dev/null; \
		else \
			echo "prometheus-alertmanager is missing (its tests will skip). Install it with:  sudo apt-get install -y prometheus-alertmanager"; \
		fi; \
	fi

# chromium from Debian's package: the web console's browser test drives it
# headless (package harness/browser) and writes screenshots to build/console/.
chromium:
	@if ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/bin/chromium ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "chromium is missing: installing the Debian package chromium"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
			echo "chromium is missing: installing the Debian package chromium (sudo)"; \
			sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		else \
			echo "chromium is missing. Install it with:  sudo apt-get install -y chromium"; exit 1; \
		fi; \
	fi

# The console's browser test alone; screenshots land in build/console/.
console-screenshots: redis chromium backend plugin host receiver
	KEYALERT_REQUIRE_CHROMIUM=1 $(GO) test -count=1 -run TestConsole -v ./cmd/keyalertd/

vet:
	$(GO) vet $(PKGS)

# The whole suite: unit, fuzz seeds, integration against real redis-server,
# the plugin through the C test host, the backend over loopback HTTP.
# harness/testsummary prints a line per package as it finishes (and what is
# still running when a while passes quietly), each failure's output, and at
# the end every skipped test with its reason; it keeps go test's exit status.
test: redis alertmanager chromium build vet $(BUILD)/testsummary
	@$(LOGHUB_NOTE)
	KEYALERT_REQUIRE_REDIS=1 KEYALERT_REQUIRE_CHROMIUM=1 $(BUILD)/testsummary -race -count=1 -timeout 9m $(PKGS)

$(BUILD)/testsummary: FORCE
	$(GO) build -o $@ ./harness/testsummary

# Tests and benchmarks on real logs read the public loghub samples from
# ../shared/loghub (README.md § Test data says how to get them); without
# them they skip, which is said up front rather than discovered later.
LOGHUB_DIR  := $(abspath $(CURDIR)/../shared/loghub)
LOGHUB_NOTE := if [ ! -d "$(LOGHUB_DIR)" ]; then echo "note: $(LOGHUB_DIR) is missing: the tests and benchmarks on loghub samples skip (BenchmarkFlush, the README's records/s figure, among them). README.md § Test data says how to get them."; fi

# Benchmarks: the commands behind the figures in README.md § Benchmarks and
# bench/*.md (each file names its own command too). Takes several minutes.
bench: redis alertmanager build
	@$(LOGHUB_NOTE)
	$(GO) test -run '^$$' -bench . -benchmem ./pkg/match/
	$(GO) test -run '^$$' -bench 'Flush|GetRecord' -benchmem -cpu 1 -count 5 ./plugin/flush/
	$(GO) test -run '^$$' -bench BenchmarkKeyalertd -benchtime=300000x -count 3 ./cmd/keyalertd
	$(GO) test -run '^$$' -bench EvaluateTick -benchtime 20x -count 3 ./backend/alert/
	$(GO) test -run '^$$' -bench AlertLatency -benchtime 1x -count 3 ./cmd/keyalertd/
	$(GO) test -v -run '^$$' -bench BenchmarkFleet -benchtime 1x -timeout 10m ./cmd/keyalertd/
	$(GO) test -run '^$$' -bench DeliveryLatency -benchtime 200x -count 3 ./backend/receiver/
	@if [ -n "$$FLUENT_BIT" ]; then bash bench/fluentbit-cpu.sh; else echo "bench/fluentbit-cpu.sh skipped: set FLUENT_BIT=/path/to/fluent-bit"; fi

# The demo, end to end (scripts/demo.sh); Ctrl-C stops everything.
run: redis build
	@bash scripts/demo.sh

clean:
	rm -rf $(BUILD)

clean-demo:
	rm -rf var

FORCE:
