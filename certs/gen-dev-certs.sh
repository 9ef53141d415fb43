#!/usr/bin/env bash
# Makes a development CA, a server certificate for localhost/127.0.0.1 and an agent client
# certificate, with openssl. For development and tests only: production certificates come from
# your own PKI.
#
# Usage: certs/gen-dev-certs.sh [OUT_DIR] [AGENT_UUID]
#   OUT_DIR     where to write the files (default: certs/dev next to this script)
#   AGENT_UUID  the agent's uuid, used as the client certificate's CN (default: acme-001)
#
# Writes: ca.pem ca.key server.pem server.key agent.pem agent.key (keys mode 0600).
set -euo pipefail

out_dir=${1:-"$(cd "$(dirname "$0")" && pwd)/dev"}
agent_uuid=${2:-acme-001}
days=825

command -v openssl >/dev/null || { echo "gen-dev-certs: openssl is required" >&2; exit 1; }
mkdir -p "$out_dir"
cd "$out_dir"
umask 077

new_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

new_key ca.key
openssl req -x509 -new -key ca.key -sha256 -days 3650 -subj "/CN=CygnetCI Development CA" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out ca.pem

sign() { # name subject extensions
  local name=$1 subject=$2 extensions=$3
  new_key "$name.key"
  openssl req -new -key "$name.key" -subj "$subject" -out "$name.csr"
  printf '%b' "$extensions" > "$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days "$days" \
    -sha256 -extfile "$name.ext" -out "$name.pem" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}

sign server "/CN=localhost" \
  "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
sign agent "/CN=$agent_uuid" \
  "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n"

rm -f ca.srl
chmod 0644 ca.pem server.pem agent.pem
echo "wrote $out_dir/{ca,server,agent}.{pem,key} (agent CN=$agent_uuid)"
