#!/bin/sh
# The build must refuse, with a message naming the cause, what would give a
# module its server cannot load (run by scripts/test.sh, after the 6.0
# build exists):
# - a Kamailio release it does not support;
# - a source tree whose version differs from the binary's (the 6.0.1 tree
#   with Debian's 5.6.3 kamailio).
# Only the build script runs: each case fails before the crate compiles.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
export PATH="$HOME/.cargo/bin:$PATH"
# The 6.0 target directory: its build dependencies are already built.
target=target/kamailio-6.0

expect_refusal() {
    want=$1
    shift
    if out=$(env "$@" cargo check --locked --lib --target-dir "$target" 2>&1); then
        echo "build-refusals: the build with $* succeeded; it must refuse" >&2
        exit 1
    fi
    if ! printf '%s\n' "$out" | grep -qF "$want"; then
        echo "build-refusals: the build with $* failed, but not with: $want" >&2
        printf '%s\n' "$out" | tail -n 20 >&2
        exit 1
    fi
    echo "build-refusals: $* refused: $want" >&2
}

expect_refusal "Kamailio 5.8 is not supported; the supported releases are 5.6 and 6.0" KAMAILIO_VERSION=5.8
expect_refusal "module_version would be 'kamailio 6.0.1 (x86_64/linux)'" \
    KAMAILIO_VERSION=6.0 KAMAILIO_BIN=/usr/sbin/kamailio
expect_refusal "but /usr/sbin/kamailio reports 'kamailio 5.6.3 (x86_64/linux)'" \
    KAMAILIO_VERSION=6.0 KAMAILIO_BIN=/usr/sbin/kamailio
