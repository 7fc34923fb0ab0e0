#!/bin/bash
# Install the Debian packages relive needs to build and test (idempotent).
set -euo pipefail

PKGS=(meson ninja-build pkg-config gcc clang libclang-rt-14-dev binutils python3
      protobuf-c-compiler libprotobuf-c-dev liburing-dev libnl-3-dev libnl-route-3-dev
      libcap-dev libcmocka-dev libxxhash-dev iproute2 procps util-linux gnuplot-nox
      nftables redis-server redis-tools)
# nftables: the network lock of TCP connections (docs/sockets.md);
# redis-server, redis-tools: the real-server migration test (lazy-e2e-redis)

missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "deps.sh: need root to install: ${missing[*]}" >&2
	exit 1
fi
echo "deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
