# Two commands set up everything on a fresh Debian machine:
#   make demo   build and run the demo on the embedded SQLite cache
#   make test   the full check CI runs: fmt, clippy, docs, every test
# Each installs the system packages it needs first (scripts/install-deps.sh).

CARGO ?= cargo
JOBS  ?= 2

.PHONY: demo test bench deps deps-test

deps:
	@scripts/install-deps.sh

deps-test:
	@scripts/install-deps.sh --test

demo: deps
	$(CARGO) run --release -j$(JOBS) -- demo

test: deps-test
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy -j$(JOBS) --all-targets -- -D warnings
	# The library alone, without the origin, the CLI or any backend.
	$(CARGO) clippy -j$(JOBS) --lib --no-default-features -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc -j$(JOBS) --no-deps
	$(CARGO) test -j$(JOBS) --all-targets
	$(CARGO) test -j$(JOBS) --doc

bench: deps-test
	$(CARGO) bench -j$(JOBS) --bench cache
