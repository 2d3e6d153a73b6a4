# Local and CI commands, written once. `make test` is what CI runs (.ci/run).

NATS_SERVER := $(CURDIR)/.tools/venv/bin/nats-server
export NATS_SERVER
MOTO_SERVER := $(CURDIR)/.tools/venv/bin/moto_server
export MOTO_SERVER
# Real etcd, kube-apiserver, kube-controller-manager and Helm for the tests (`make test-tools`).
BATON_TEST_TOOLS_BIN := $(CURDIR)/.tools/bin
export BATON_TEST_TOOLS_BIN

# One target directory per machine, shared by every checkout and by clippy and test: these
# machines have 2 cores and a cold build of the dependencies is their longest step. Override
# with CARGO_TARGET_DIR.
CARGO_TARGET_DIR ?= $(HOME)/.cache/baton/target
export CARGO_TARGET_DIR

.PHONY: tools test-tools build up test lint unit bench crds install-yaml nats-permissions

## Installs the pinned nats-server into .tools/ (no root needed).
tools:
	@scripts/tools.sh >/dev/null

## Installs what the tests need besides: the pinned ELBv2 emulator (moto) into .tools/, and
## Prometheus (Debian's package, as root) when it is missing.
test-tools:
	@scripts/tools.sh --test >/dev/null

build:
	cargo build --workspace

## Runs Baton on its embedded defaults (own nats-server, redb under .baton/, planner, workers,
## API on 127.0.0.1:7070) and starts the diamond example; Ctrl-C stops everything.
up: tools
	cargo run -p baton-cli --bin baton -- up --apply examples/diamond.yaml --apply examples/retry-and-handler.yaml

## The whole test suite: formatting, clippy, unit, integration and end-to-end tests.
test: test-tools lint
	cargo test --workspace

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

## Writes the CRDs generated from `schemas` into deploy/crds/ and, as one file, into the
## install manifests' base (a test fails when they drift).
crds:
	cargo run -q -p baton-cli --bin baton -- crds --out-dir deploy/crds
	cargo run -q -p baton-cli --bin baton -- crds > deploy/kubernetes/base/crds.yaml

## Renders the dev install (deploy/kubernetes/overlays/dev) into deploy/install.yaml (a test
## fails when it drifts).
install-yaml: test-tools
	{ echo "# Rendered from deploy/kubernetes/overlays/dev by \`make install-yaml\`; do not edit."; \
	  .tools/venv/bin/kubectl kustomize deploy/kubernetes/overlays/dev; } > deploy/install.yaml

## Writes the nats-server permission file for the default prefix into deploy/nats/ (a test
## fails when it drifts).
nats-permissions:
	mkdir -p deploy/nats
	cargo run -q -p baton-cli --bin baton -- nats-permissions > deploy/nats/permissions.conf

## Unit tests only (no servers).
unit:
	cargo test --workspace --lib

## Baton's orchestration overhead against raw JetStream, release build (`SCALE=quick` for
## a few seconds; `full` about half a minute, once built).
SCALE ?= full
bench: tools
	cargo run --release -q -p baton-cli --bin baton -- bench --scale $(SCALE) --nats-server $(NATS_SERVER)
