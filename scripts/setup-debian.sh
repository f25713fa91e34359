#!/bin/sh
# Installs everything the build, the demo and the tests need on Debian bookworm.
# Run as root. Safe to run again: every step checks before it acts.
set -eu

export DEBIAN_FRONTEND=noninteractive
KAMAILIO_VERSION=5.6.3
here=$(cd "$(dirname "$0")/.." && pwd)
src_parent=${KAMAILIO_SRC_PARENT:-$here/target/kamailio-src}

# Enable deb-src so that `apt-get source kamailio` works.
if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ \
   && ! grep -qs '^deb-src' /etc/apt/sources.list; then
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] && sed -i 's/^Types: deb$/Types: deb deb-src/' "$f"
    done
    if [ -f /etc/apt/sources.list ]; then
        sed -n 's/^deb \(.*\)/deb-src \1/p' /etc/apt/sources.list > /etc/apt/sources.list.d/deb-src.list
    fi
fi

# Kamailio's package starts a service on 5060 unless told not to; tests bring their own.
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
chmod +x /usr/sbin/policy-rc.d

apt-get update -q
apt-get install -y -q --no-install-recommends \
    kamailio kamailio-sqlite-modules kamailio-extra-modules kamailio-postgres-modules \
    sip-tester sngrep sqlite3 postgresql \
    dpkg-dev build-essential pkg-config libclang-dev clang ca-certificates
# hep-js needs node and npm; a machine may already have them from elsewhere.
command -v npm >/dev/null 2>&1 || apt-get install -y -q --no-install-recommends nodejs npm
rm -f /usr/sbin/policy-rc.d

installed=$(dpkg-query -W -f='${Version}' kamailio)
case "$installed" in
    "$KAMAILIO_VERSION"-*) ;;
    *) echo "setup: kamailio $installed is installed, expected $KAMAILIO_VERSION" >&2; exit 1 ;;
esac

# The matching source tree, for bindgen and the build defines.
if [ ! -f "$src_parent/kamailio-$KAMAILIO_VERSION/src/Makefile.defs" ]; then
    mkdir -p "$src_parent"
    (cd "$src_parent" && apt-get source -q "kamailio=$installed")
fi
echo "KAMAILIO_SRC=$src_parent/kamailio-$KAMAILIO_VERSION"
