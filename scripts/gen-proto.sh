#!/bin/sh
# Regenerates the TypeScript for the CRI v1 proto with ts-proto.
# protoc comes from Debian's protobuf-compiler; ts-proto from node_modules.
set -eu
cd "$(dirname "$0")/.."
out=src/generated
command -v protoc >/dev/null || { echo "gen-proto: protoc not found (apt-get install protobuf-compiler)" >&2; exit 1; }
rm -rf "$out" && mkdir -p "$out"
protoc \
  --plugin=protoc-gen-ts_proto=node_modules/.bin/protoc-gen-ts_proto \
  --ts_proto_out="$out" \
  --ts_proto_opt=outputServices=grpc-js,env=node,esModuleInterop=true,forceLong=bigint,importSuffix=.js,useOptionals=messages,oneof=unions-value,useDate=false \
  -I proto/cri-api proto/cri-api/api.proto
