#!/usr/bin/env bash
# Generates the Python client code of cygnet.v1 from the repository's proto/ into DIR
# (default ./cygnet-python, in the current directory; client.py --generated DIR reads it).
#   python3 -m pip install -r requirements.txt && ./generate.sh [DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd -P)
proto="$here/../../proto"
out=${1:-cygnet-python}
case "$out" in
  /*) ;;
  *) out="$PWD/$out" ;;
esac
# Only a directory this script made is replaced.
if [ -e "$out" ] && [ ! -f "$out/.cygnet-generated" ]; then
  echo "$out exists and was not made by generate.sh: choose another directory" >&2
  exit 1
fi
rm -rf "$out"
mkdir -p "$out"
touch "$out/.cygnet-generated"
# grpcio-tools carries the well-known types (google/protobuf/timestamp.proto) it was built with.
well_known=$(python3 -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')
python3 -m grpc_tools.protoc -I "$proto" -I "$well_known" \
  --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
  "$proto"/cygnet/v1/*.proto
# Packages for the generated imports (cygnet.v1.x_pb2).
touch "$out/cygnet/__init__.py" "$out/cygnet/v1/__init__.py"
echo "generated $(find "$out" -name '*_pb2*.py' | wc -l) modules in $out"
