#!/usr/bin/env bash
# Install everything the tests need (idempotent), then run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup.sh --test
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
