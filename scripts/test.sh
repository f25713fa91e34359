#!/bin/sh
# The whole test suite: installs what it needs, then runs the unit tests of
# the core and the tests that drive a real Kamailio loading the module.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/scripts/setup-debian.sh"
export PATH="$HOME/.cargo/bin:$PATH"
cd "$here"
cargo test --locked "$@"
