#!/bin/sh
# The proxy benchmark on a fresh Debian bookworm machine, as root: installs
# what it needs, builds the module in release mode, runs bench/run.py.
# Arguments go to bench/run.py (see bench/run.py --help). With
# KAMAILIO_VERSION=6.0, against the Kamailio 6.0.1 that setup builds.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/scripts/setup-debian.sh"
export PATH="$HOME/.cargo/bin:$PATH"
cd "$here"
target=target
case "${KAMAILIO_VERSION:-}" in 6.0*) target=target/kamailio-6.0 ;; esac
cargo build --release --locked --target-dir "$target"
cargo build --release --locked --target-dir "$target" --example udp_floor --example sqlite_floor --example copy_floor
exec python3 bench/run.py "$@"
