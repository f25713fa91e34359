#!/bin/sh
# Runs every cargo-fuzz target in fuzz/ for a bounded time each:
#
#   scripts/fuzz.sh [seconds-per-target]     (default 30)
#
# Installs cargo-fuzz first if it is missing. Exits non-zero when a target
# crashes (a panic, a failed check, a timeout or running out of memory) and
# says where the input that did it was saved.
#
# Works on the stable toolchain: the targets are built without a sanitizer
# (cargo fuzz --sanitizer none), which needs no nightly feature; the code
# they exercise is safe Rust, where AddressSanitizer finds nothing that
# bounds checks do not. SIPTRACE_FUZZ_SANITIZER=address builds with ASan
# anyway, through RUSTC_BOOTSTRAP=1 (see doc/fuzzing.md).
set -eu

seconds=${1:-30}
case "$seconds" in
    '' | *[!0-9]*) echo "usage: $0 [seconds-per-target]" >&2; exit 2 ;;
esac
here=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$HOME/.cargo/bin:$PATH"
cd "$here"

# The version the targets were written and checked with.
CARGO_FUZZ_VERSION=0.13.2
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION" >&2
    cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi

sanitizer=${SIPTRACE_FUZZ_SANITIZER:-none}
target_dir="$here/fuzz/target"
if [ "$sanitizer" != none ]; then
    # -Zsanitizer is a nightly flag; RUSTC_BOOTSTRAP lets the stable
    # compiler take it. Its own target directory keeps the two builds
    # from replacing each other's artifacts.
    export RUSTC_BOOTSTRAP=1
    target_dir="$here/fuzz/target/$sanitizer"
fi
build="--sanitizer $sanitizer --target-dir $target_dir"

echo "fuzz: $(cargo fuzz --version), $(rustc --version), sanitizer $sanitizer" >&2
# One build of every target; each run below finds it up to date.
# shellcheck disable=SC2086
cargo fuzz build $build

failed=
for target in $(cargo fuzz list); do
    # Not in artifacts/$target: cargo fuzz takes every file there for an
    # input that failed.
    mkdir -p "$here/fuzz/artifacts"
    log="$here/fuzz/artifacts/$target.log"
    dict=
    [ -f "$here/fuzz/dict/$target.dict" ] && dict="-dict=$here/fuzz/dict/$target.dict"
    echo "fuzz: $target for ${seconds}s (log: $log)" >&2
    # New inputs go to fuzz/corpus/$target, next to the seeds; git ignores
    # them. A single input that takes over 10 s counts as a crash.
    # shellcheck disable=SC2086
    if cargo fuzz run $build "$target" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 $dict >"$log" 2>&1; then
        grep -a -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 | sed "s/^/fuzz: $target: /" >&2 || true
    else
        failed="$failed $target"
        echo "fuzz: $target FAILED (full log: $log):" >&2
        # The panic and its message, or libFuzzer's word on a timeout,
        # out-of-memory or a build failure.
        { grep -a -m 1 -A 4 'panicked at' "$log" || true
          grep -a -E '^(==[0-9]+== ERROR|SUMMARY|error)' "$log" || true
        } | cut -c 1-300 >&2
        crash=$(grep -a -o 'Test unit written to [^ ]*' "$log" | tail -n 1 | sed 's/^Test unit written to //')
        if [ -n "$crash" ]; then
            echo "fuzz: $target: the input is $crash" >&2
            echo "fuzz: replay it with: cargo fuzz run $build $target $crash" >&2
        fi
    fi
done

if [ -n "$failed" ]; then
    echo "fuzz: failed:$failed" >&2
    exit 1
fi
echo "fuzz: every target ran ${seconds}s without a crash" >&2
