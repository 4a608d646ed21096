#!/usr/bin/env bash
# Installs the Debian packages h3fleet's build and tests need, when missing.
#   redis-server, redis-tools  the tests start real Redis servers and a Redis Cluster
#   memcached                  the backend contract suite runs against a real memcached
#   python3                    Python's http.server: an independent plain-HTTP origin
#   dante-server               SOCKS5 egress proxy (CONNECT and UDP ASSOCIATE) for the proxy tests
#   tinyproxy, stunnel4        HTTP CONNECT egress proxy, and TLS in front of it (an https:// proxy)
#   cmake, clang, libclang-dev BoringSSL's build (the TLS engine, from the QUIC layer on)
# Usage: scripts/install-deps.sh [--test]   (--test adds the test services)
set -euo pipefail

packages=(cmake clang libclang-dev)
if [[ "${1:-}" == "--test" ]]; then
  packages+=(redis-server redis-tools memcached python3 dante-server tinyproxy stunnel4)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "installing missing packages: ${missing[*]}"
sudo=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
