#!/bin/sh
# Sets up Berth (scripts/setup.sh) and runs every test: unit and end-to-end.
# The e2e tests start real daemons, containers and registries, so run as root.
set -eu
cd "$(dirname "$0")/.."
sh scripts/setup.sh
npm test
