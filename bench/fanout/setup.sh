#!/usr/bin/env bash
# Idempotent set-up for the fan-out benchmark only (CI's tests do not need Janus):
# Janus 1.1.2 from Debian, the native data plane built in place, the counter built.
set -euo pipefail
cd "$(dirname "$0")/../.."
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
PY="${PYTHON:-.venv/bin/python}"
if ! dpkg -s janus >/dev/null 2>&1; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends janus >/dev/null
fi
# The native plane: `pip install -e .` (.ci/setup.sh) builds edge/media/_native*.so.
if ! PYTHONPATH=$PWD "$PY" -c 'import edge.media._native' 2>/dev/null; then
  "$PY" -m pip install -q --no-deps --no-build-isolation -e .
fi
PYTHONPATH=$PWD "$PY" -c 'from bench.fanout.counter import build; from bench.fanout.media import load_stream; build(); load_stream()'
