#!/usr/bin/env bash
# Installs what wafleet needs on a fresh Debian machine: the servers it runs beside
# (redis-server, microsocks) and a virtualenv in .venv with wafleet and its tools.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo_() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v microsocks >/dev/null || missing+=(microsocks)
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
# The chat's /stats picture and digest draw their labels with DejaVu Sans (it has Hebrew).
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo_ apt-get update -qq
  sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "setup: wafleet needs Python 3.11 or newer" >&2; exit 1; }
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e ".[dev,docker,neonize]"
