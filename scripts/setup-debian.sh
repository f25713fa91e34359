#!/bin/sh
# Installs everything the build, the demo and the tests need on Debian
# bookworm, as root. Safe to run again: each step checks before it acts.
#
# KAMAILIO_VERSION selects the server to build for:
#   unset, 5.6 or 5.6.3: Debian bookworm's installed Kamailio 5.6.3, its
#       source unpacked in .deps/kamailio-5.6.3 (KAMAILIO_SRC).
#   6.0: all of the above, plus Kamailio 6.0.1 built from Debian trixie's
#       source package by scripts/setup-kamailio-6.0.sh, which checks that it
#       prints the version and flags of Debian's trixie binary:
#         .deps/kamailio-6.0/sbin/kamailio, .deps/kamailio-6.0/sbin/kamcmd
#         .deps/kamailio-6.0/lib/x86_64-linux-gnu/kamailio/modules
#         .deps/kamailio-6.0/share/kamailio
#         .deps/kamailio-6.0/src-tree (KAMAILIO_SRC)
#       6.0 has no libsrdb1.so: the DB API is in the kamailio binary.
#       The first run builds core plus 19 modules (127 to 278 s with make -j2
#       on a shared 2-core machine); later runs reuse the tree once its
#       strings check out.
set -eu

export DEBIAN_FRONTEND=noninteractive
case "${KAMAILIO_VERSION:-}" in
    ""|5.6|5.6.3) build_60=no ;;
    6.0) build_60=yes ;;
    *) echo "setup: KAMAILIO_VERSION=$KAMAILIO_VERSION is not supported: use 5.6 (the default) or 6.0" >&2; exit 1 ;;
esac
# Bookworm's Kamailio: always installed, the tests run on it in any case.
DEBIAN_KAMAILIO=5.6.3
here=$(cd "$(dirname "$0")/.." && pwd)
deps="$here/.deps"

if [ "$(id -u)" != 0 ]; then
    echo "setup: run this as root" >&2
    exit 1
fi

# deb-src lines, so that `apt-get source kamailio` works.
if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ \
   && ! grep -qs '^deb-src' /etc/apt/sources.list /etc/apt/sources.list.d/*.list; then
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] && sed -i 's/^Types: deb$/Types: deb deb-src/' "$f"
    done
    if [ -s /etc/apt/sources.list ]; then
        sed -n 's/^deb \(.*\)/deb-src \1/p' /etc/apt/sources.list > /etc/apt/sources.list.d/siptrace-rs-src.list
    fi
fi

# Debian's kamailio and postgresql packages start services on install;
# the demo and the tests start their own instances on free ports.
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
chmod +x /usr/sbin/policy-rc.d
trap 'rm -f /usr/sbin/policy-rc.d' EXIT

apt-get update -q
apt-get install -y -q --no-install-recommends \
    kamailio kamailio-sqlite-modules kamailio-extra-modules kamailio-postgres-modules kamailio-tls-modules kamailio-lua-modules kamailio-utils-modules libcurl4-openssl-dev \
    sip-tester sngrep sqlite3 libsqlite3-dev postgresql postgresql-client \
    dpkg-dev build-essential make pkg-config libclang-dev clang libssl-dev \
    ca-certificates curl python3 openssl
# hep-js needs node and npm; a machine may already have them from elsewhere.
command -v npm >/dev/null 2>&1 || apt-get install -y -q --no-install-recommends nodejs npm

installed=$(dpkg-query -W -f='${Version}' kamailio)
case "$installed" in
    "$DEBIAN_KAMAILIO"-*) ;;
    *) echo "setup: kamailio $installed is installed, but this module is built for $DEBIAN_KAMAILIO" >&2; exit 1 ;;
esac

# The source tree of exactly the installed version, for bindgen and for
# the build defines (build.rs reads it through KAMAILIO_SRC).
if [ ! -f "$deps/kamailio-$DEBIAN_KAMAILIO/src/Makefile.defs" ]; then
    mkdir -p "$deps"
    (cd "$deps" && apt-get source -q "kamailio=$installed")
fi

if [ "$build_60" = yes ]; then
    sh "$here/scripts/setup-kamailio-6.0.sh"
fi

# Rust: Debian's own is too old for this crate.
if ! command -v cargo >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
fi

# The hep-js decoder the tests and the demo use.
(cd "$here/tests/hepjs" && npm ci --no-audit --no-fund --loglevel=error)

echo "setup: done (KAMAILIO_SRC=$deps/kamailio-$DEBIAN_KAMAILIO)"
if [ "$build_60" = yes ]; then
    echo "setup: Kamailio 6.0: KAMAILIO_SRC=$deps/kamailio-6.0/src-tree KAMAILIO_BIN=$deps/kamailio-6.0/sbin/kamailio"
fi
