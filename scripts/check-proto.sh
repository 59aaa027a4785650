#!/bin/sh
# Checks that proto/cri-api/api.proto declares exactly the same API as an upstream
# kubernetes/cri-api pkg/apis/runtime/v1/api.proto: both are compiled to descriptor
# sets without source info (so comments and layout are ignored) and compared.
#
# Usage: scripts/check-proto.sh PATH/TO/UPSTREAM/api.proto
#
# Nothing is downloaded: fetch the upstream file yourself (e.g. from a cri-api
# checkout at the tag you target). Upstream's `debug_redact = true` field options
# are removed from a temporary copy first, because Debian's protoc (3.21) does not
# know them; they only affect debug printing, not the wire format.
# Exits 0 when identical, 1 on any difference (the decoded diff is printed), 2 on
# usage or tool errors.
set -eu

[ $# -eq 1 ] || { echo "usage: $0 UPSTREAM_API_PROTO" >&2; exit 2; }
[ -f "$1" ] || { echo "check-proto: $1: no such file" >&2; exit 2; }
command -v protoc >/dev/null || { echo "check-proto: protoc not found (apt-get install protobuf-compiler)" >&2; exit 2; }

# Absolute paths before leaving the caller's directory.
upstream="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
root="$(cd "$(dirname "$0")/.." && pwd)"
ours="$root/proto/cri-api/api.proto"

work="$(mktemp -d "${TMPDIR:-/tmp}/check-proto.XXXXXX")"
trap 'rm -rf "$work"' EXIT INT TERM
mkdir "$work/upstream" "$work/ours"

# Drop debug_redact from option lists on the lines that carry it, then any option
# list left empty, e.g. `string password = 2 [debug_redact = true];` -> `string password = 2;`.
sed -E '/debug_redact/{
  s/debug_redact[[:space:]]*=[[:space:]]*true[[:space:]]*,?[[:space:]]*//g
  s/,[[:space:]]*\]/]/g
  s/[[:space:]]*\[[[:space:]]*\]//g
}' "$upstream" > "$work/upstream/api.proto"
cp "$ours" "$work/ours/api.proto"

# The same file name on both sides, so the descriptors' `name` fields agree.
for side in upstream ours; do
  (cd "$work/$side" && protoc -I . --descriptor_set_out="$work/$side.pb" api.proto) ||
    { echo "check-proto: protoc failed on the $side copy" >&2; exit 2; }
  protoc --decode=google.protobuf.FileDescriptorSet google/protobuf/descriptor.proto \
    < "$work/$side.pb" > "$work/$side.txt" ||
    { echo "check-proto: could not decode the $side descriptor set" >&2; exit 2; }
done

if cmp -s "$work/upstream.pb" "$work/ours.pb"; then
  echo "check-proto: identical descriptors ($(wc -c < "$work/ours.pb") bytes): $ours matches $upstream"
  exit 0
fi
echo "check-proto: descriptors differ (- upstream, + ours):" >&2
diff -u "$work/upstream.txt" "$work/ours.txt" >&2 || true
exit 1
