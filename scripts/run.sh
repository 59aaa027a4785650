#!/bin/sh
# Sets up Berth (scripts/setup.sh) and runs berthd in the foreground with the
# default config; extra arguments go to berthd.
set -eu
cd "$(dirname "$0")/.."
sh scripts/setup.sh
exec node_modules/.bin/node dist/src/cmd/berthd.js "$@"
