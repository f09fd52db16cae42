#!/usr/bin/env bash
# Idempotent installer for edge on Debian 12 (Python 3.11).
#   bash .ci/setup.sh          -> .venv with the node installed
#   bash .ci/setup.sh --test   -> also what the tests need: chromium, redis-server,
#                                 nftables/iptables, node + npm packages, test extras
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

apt_updated=0
apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ $apt_updated -eq 0 ]; then $SUDO apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

PY="${PYTHON:-python3}"
if ! "$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null; then
  echo "edge needs Python 3.11 as '$PY' (set PYTHON=/path/to/python3.11)" >&2
  exit 1
fi
if ! "$PY" -c 'import venv, ensurepip' 2>/dev/null; then
  apt_install python3-venv python3-pip
fi

# Build tools for wheels that may compile from source, and for the native data
# plane (native/: a C extension on OpenSSL's libcrypto).
command -v cc >/dev/null 2>&1 || apt_install build-essential
[ -f /usr/include/openssl/evp.h ] || apt_install libssl-dev
"$PY" -c 'import sysconfig, os; assert os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h"))' 2>/dev/null \
  || apt_install python3-dev

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true

# First-party plugins are separate packages, installed like any third-party one.
plugin_args=()
for dir in plugins/*/; do
  [ -f "$dir/pyproject.toml" ] && plugin_args+=(-e "$dir")
done

if [ $want_test -eq 1 ]; then
  apt_install chromium redis-server nftables iptables iproute2 libnetfilter-queue-dev ca-certificates
  if ! command -v npm >/dev/null 2>&1; then apt_install nodejs npm; fi
  .venv/bin/python -m pip install -q -e '.[test]' "${plugin_args[@]}"
  npm ci --prefix tests/e2e --no-audit --no-fund --loglevel=error
else
  .venv/bin/python -m pip install -q -e . "${plugin_args[@]}"
fi
