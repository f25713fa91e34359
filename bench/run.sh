#!/bin/sh
# The proxy benchmark on a fresh Debian bookworm machine, as root: installs
# what it needs, builds the module in release mode, runs bench/run.py.
# Arguments go to bench/run.py (see bench/run.py --help).
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/scripts/setup-debian.sh"
export PATH="$HOME/.cargo/bin:$PATH"
cd "$here"
cargo build --release --locked
cargo build --release --locked --example udp_floor --example sqlite_floor --example copy_floor
exec python3 bench/run.py "$@"
