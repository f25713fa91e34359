#!/bin/sh
# Installs everything the build, the demo and the tests need on Debian
# bookworm, as root. Safe to run again: each step checks before it acts.
set -eu

export DEBIAN_FRONTEND=noninteractive
KAMAILIO_VERSION=5.6.3
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
    "$KAMAILIO_VERSION"-*) ;;
    *) echo "setup: kamailio $installed is installed, but this module is built for $KAMAILIO_VERSION" >&2; exit 1 ;;
esac

# The source tree of exactly the installed version, for bindgen and for
# the build defines (build.rs reads it through KAMAILIO_SRC).
if [ ! -f "$deps/kamailio-$KAMAILIO_VERSION/src/Makefile.defs" ]; then
    mkdir -p "$deps"
    (cd "$deps" && apt-get source -q "kamailio=$installed")
fi

# Rust: Debian's own is too old for this crate.
if ! command -v cargo >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
fi

# The hep-js decoder the tests and the demo use.
(cd "$here/tests/hepjs" && npm ci --no-audit --no-fund --loglevel=error)

echo "setup: done (KAMAILIO_SRC=$deps/kamailio-$KAMAILIO_VERSION)"
