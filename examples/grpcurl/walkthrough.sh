#!/usr/bin/env bash
# The operator's walkthrough, end to end: every command block of the README's sections "Try it
# with grpcurl", "Add a build agent", "Run your first pipeline", "Ship a release", "The dashboard
# from the terminal", "Operate" (the Python and Rust clients, metrics) and "Quotas and fair
# sharing", run in order in one shell. (The README's first block, the two commands, is what
# starts the server and what CI's test step runs.) They are the single source: this script runs
# them verbatim, and CI (.ci/check-readme-walkthrough) runs them the same way and checks what
# they print.
#
# Start a server on a fresh data directory first (the ids in the README assume one), from the
# repository root, then run this from the repository root too (the agent's files are created in
# the current directory):
#   cargo run --bin cygnet-server            # in one terminal
#   examples/grpcurl/walkthrough.sh          # in another
#   examples/grpcurl/walkthrough.sh --print  # only print the commands
# Needs grpcurl, jq, curl and python3 with pip.
set -euo pipefail
readme="$(cd "$(dirname "$0")/../.." && pwd)/README.md"
sections=("## Try it with grpcurl" "## Add a build agent" "## Run your first pipeline"
  "## Ship a release" "## The dashboard from the terminal" "## Operate" "## Quotas and fair sharing")

# Every ```sh block of a section (up to the next "## " heading).
block() {
  awk -v heading="$1" '$0 == heading {found=1; next} found && /^## / {exit}
    found && /^```sh$/ {inblock=1; next} inblock && /^```$/ {inblock=0; print ""; next} inblock {print}' \
    "$readme"
}
script=""
for heading in "${sections[@]}"; do
  text=$(block "$heading")
  [ -n "$text" ] || { echo "no sh block under '$heading' in $readme" >&2; exit 1; }
  script+="$text"$'\n'
done
if [ "${1:-}" = "--print" ]; then
  printf '%s' "$script"
else
  bash -euo pipefail -c "$script"
fi
