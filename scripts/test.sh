#!/bin/sh
# The whole test suite: installs what it needs, then
#   1. the static checks: the import-cycle check of both bindings, rustfmt,
#      and clippy with undocumented unsafe denied (the OpenSIPS binding's
#      only when OPENSIPS_SRC names a built tree: it needs one to build);
#   2. the unit tests of the core and the tests that drive a real Kamailio
#      loading the module;
#   3. the Debian packages, built, installed and removed
#      (SIPTRACE_SKIP_PACKAGE=1 leaves that out);
#   4. a bounded run of the fuzz targets (SIPTRACE_SKIP_FUZZ=1 leaves that out).
# Arguments go to `cargo test`.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/scripts/setup-debian.sh"
export PATH="$HOME/.cargo/bin:$PATH"
cd "$here"

echo "== static checks" >&2
python3 scripts/check-cycles.py
cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
if [ -n "${OPENSIPS_SRC:-}" ]; then
    # One target directory per OpenSIPS release, as the tests use.
    release=$(sed -n 's/^VERSION_MAJOR *= *//p; s/^VERSION_MINOR *= *//p' "$OPENSIPS_SRC/Makefile.defs" | paste -sd.)
    cargo clippy --locked --all-targets --no-default-features --features opensips \
        --target-dir "target/opensips-$release" -- -D warnings
else
    echo "clippy (opensips feature): skipped: OPENSIPS_SRC is not set (doc/opensips.md)" >&2
fi

echo "== tests against Kamailio 5.6.3 (Debian bookworm)" >&2
cargo test --locked "$@"

if [ "${SIPTRACE_SKIP_PACKAGE:-0}" != 1 ]; then
    echo "== Debian packages" >&2
    "$here/scripts/test-package.sh"
fi
if [ "${SIPTRACE_SKIP_FUZZ:-0}" != 1 ]; then
    echo "== fuzz targets" >&2
    "$here/scripts/fuzz.sh" 20
fi
