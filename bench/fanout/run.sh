#!/usr/bin/env bash
# The whole fan-out benchmark in one command (see bench/fanout/__main__.py):
#   bash bench/fanout/run.sh                 # N = 10 100 500 1000, all four configurations
#   bash bench/fanout/run.sh --n 10 100      # any python -m bench.fanout options
# Writes bench/fanout/.build/results.md and results.json, and prints the table.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${PYTHON:-.venv/bin/python}"
bash bench/fanout/setup.sh
PYTHONPATH=$PWD exec "$PY" -m bench.fanout --markdown bench/fanout/.build/results.md \
  --json bench/fanout/.build/results.json "$@"
