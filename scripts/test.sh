#!/bin/sh
# The whole test suite: installs what it needs, then runs the unit tests of
# the core and the tests that drive a real Kamailio loading the module, then
# a bounded run of the fuzz targets (SIPTRACE_SKIP_FUZZ=1 leaves that out).
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/scripts/setup-debian.sh"
export PATH="$HOME/.cargo/bin:$PATH"
cd "$here"
cargo test --locked "$@"
if [ "${SIPTRACE_SKIP_FUZZ:-0}" != 1 ]; then
    "$here/scripts/fuzz.sh" 20
fi
