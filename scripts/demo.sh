#!/usr/bin/env bash
# Runs wafleet on this machine: Redis, two proxies, the simulated network, one linked session.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/wafleet demo "$@"
