#!/bin/sh
# The whole test suite: installs what it needs, then
#   1. the static checks: the import-cycle check of both bindings, rustfmt,
#      and clippy with undocumented unsafe denied (the OpenSIPS binding's
#      only when OPENSIPS_SRC names a built tree: it needs one to build);
#   2. the unit tests of the core and the tests that drive a real Kamailio
#      loading the module, against Debian bookworm's Kamailio 5.6.3;
#   3. the same against Kamailio 6.0.1, built here from Debian trixie's
#      source package (KAMAILIO_VERSION=6.0 scripts/setup-debian.sh; about
#      2 to 5 minutes the first time, then reused), after the build's
#      refusals (an unsupported release, a tree that is not the binary's:
#      scripts/test-build-refusals.sh) and clippy for that build
#      (SIPTRACE_SKIP_60=1 leaves this out);
#   4. the Debian packages, built, installed and removed
#      (SIPTRACE_SKIP_PACKAGE=1 leaves that out);
#   5. a bounded run of the fuzz targets (SIPTRACE_SKIP_FUZZ=1 leaves that out).
# Arguments go to both `cargo test` runs.
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

if [ "${SIPTRACE_SKIP_60:-0}" != 1 ]; then
    echo "== tests against Kamailio 6.0.1 (Debian trixie's source, built here)" >&2
    KAMAILIO_VERSION=6.0 "$here/scripts/setup-debian.sh"
    k60="$here/.deps/kamailio-6.0"
    multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
    "$here/scripts/test-build-refusals.sh"
    KAMAILIO_VERSION=6.0 cargo clippy --locked --all-targets --target-dir target/kamailio-6.0 -- -D warnings
    KAMAILIO_VERSION=6.0 KAMAILIO_BIN="$k60/sbin/kamailio" KAMCMD_BIN="$k60/sbin/kamcmd" \
        KAMAILIO_MODULES_DIR="$k60/lib/$multiarch/kamailio/modules" \
        cargo test --locked --target-dir target/kamailio-6.0 "$@"
fi

if [ "${SIPTRACE_SKIP_PACKAGE:-0}" != 1 ]; then
    echo "== Debian packages" >&2
    "$here/scripts/test-package.sh"
fi
if [ "${SIPTRACE_SKIP_FUZZ:-0}" != 1 ]; then
    echo "== fuzz targets" >&2
    "$here/scripts/fuzz.sh" 20
fi
