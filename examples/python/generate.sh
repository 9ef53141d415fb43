#!/usr/bin/env bash
# Generates the Python client code of cygnet.v1 from ../../proto into ./generated (not committed).
#   python3 -m pip install -r requirements.txt && ./generate.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
proto="$here/../../proto"
out="$here/generated"
rm -rf "$out"
mkdir -p "$out"
# grpcio-tools carries the well-known types (google/protobuf/timestamp.proto) it was built with.
well_known=$(python3 -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')
python3 -m grpc_tools.protoc -I "$proto" -I "$well_known" \
  --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
  "$proto"/cygnet/v1/*.proto
# Packages for the generated imports (cygnet.v1.x_pb2).
touch "$out/cygnet/__init__.py" "$out/cygnet/v1/__init__.py"
echo "generated $(find "$out" -name '*_pb2*.py' | wc -l) modules in $out"
