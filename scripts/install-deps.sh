#!/usr/bin/env bash
# Installs the Debian packages h3fleet's build and tests need, when missing.
#   redis-server, redis-tools  the tests start real Redis servers and a Redis Cluster
#   memcached                  the backend contract suite runs against a real memcached
#   python3                    Python's http.server: an independent plain-HTTP origin
#   dante-server               SOCKS5 egress proxy (CONNECT and UDP ASSOCIATE) for the proxy tests
#   tinyproxy, stunnel4        HTTP CONNECT egress proxy, and TLS in front of it (an https:// proxy)
#   curl                       a real client of the local proxy (`h3fleet proxy`) in its tests
#   nodejs, npm                only when `node` is missing: Node's fetch (undici) as a proxy client
#   cmake, clang, libclang-dev BoringSSL's build (the TLS engine, from the QUIC layer on)
# With --test it also installs the proxy tests' Python and Node clients locally:
#   tests/clients/.venv         Python `requests` (tests/clients/requirements.txt)
#   tests/clients/node_modules  undici (tests/clients/package.json)
# Usage: scripts/install-deps.sh [--test]   (--test adds the test services)
set -euo pipefail

packages=(cmake clang libclang-dev)
if [[ "${1:-}" == "--test" ]]; then
  packages+=(redis-server redis-tools memcached python3 dante-server tinyproxy stunnel4 curl)
  command -v node >/dev/null || packages+=(nodejs npm)
  python3 -m venv --help >/dev/null 2>&1 || packages+=(python3-venv)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "installing missing packages: ${missing[*]}"
  sudo=""
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
    sudo="sudo"
  fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

[[ "${1:-}" == "--test" ]] || exit 0
clients="$(cd "$(dirname "$0")/.." && pwd)/tests/clients"
if ! "$clients/.venv/bin/python" -c "import requests" 2>/dev/null; then
  echo "installing the Python test client (requests) into $clients/.venv"
  python3 -m venv "$clients/.venv"
  "$clients/.venv/bin/pip" install -q --disable-pip-version-check -r "$clients/requirements.txt"
fi
if [[ ! -f "$clients/node_modules/undici/package.json" ]]; then
  echo "installing the Node test client (undici) into $clients/node_modules"
  (cd "$clients" && npm install --no-audit --no-fund --loglevel=error)
fi
