#!/bin/sh
# Builds Kamailio 6.0.1, the Kamailio of Debian trixie, on Debian bookworm
# from trixie's own source package, the way its debian/rules builds it, and
# installs it under .deps/kamailio-6.0 of this clone. setup-debian.sh runs
# this when KAMAILIO_VERSION=6.0; it needs root (apt-get install).
#
# Layout (PREFIX = .deps/kamailio-6.0, the path is compiled into the binary):
#   PREFIX/sbin/kamailio, PREFIX/sbin/kamcmd      the server and its RPC client
#   PREFIX/lib/x86_64-linux-gnu/kamailio/modules  the modules, siptrace.so too
#   PREFIX/share/kamailio, PREFIX/etc/kamailio    as `make install` puts them
#   PREFIX/src-tree      the patched, built source tree (KAMAILIO_SRC)
#   PREFIX/trixie        the source package, trixie's kamailio .deb, and
#                        kamailio-V.expected: the strings read out of that .deb
#   .deps/apt-trixie     an apt state of its own that knows trixie; the
#                        machine's /etc/apt never does
# 6.0 has no libsrdb1.so: the DB API (srdb1, srdb2) is in the kamailio
# binary itself.
#
# Only the modules the tests, the demo and the bench load are built, plus
# the C siptrace (the differential reference) and sipcapture (an independent
# HEP decoder in the tests). Building and installing core plus these 19
# modules with make -j2 took 127 s on this 2-core machine, shared with other
# jobs (212 s and 278 s when they were busier; about 3 min of CPU). A second
# run finds the installed tree, checks its strings, and does nothing else
# (about 1 s).
set -eu

export DEBIAN_FRONTEND=noninteractive
DEB_VERSION=6.0.1-1+deb13u1
# What Debian's own trixie binary prints; the build is checked against the
# strings read out of that binary, and these guard the reading itself.
EXPECTED_VERSION="kamailio 6.0.1 (x86_64/linux)"
EXPECTED_FLAGS="USE_TCP, USE_TLS, USE_SCTP, TLS_HOOKS, USE_RAW_SOCKS, DISABLE_NAGLE, USE_MCAST, DNS_IP_HACK, SHM_MMAP, PKG_MALLOC, MEM_JOIN_FREE, Q_MALLOC, F_MALLOC, TLSF_MALLOC, DBG_SR_MEMORY, USE_FUTEX, FAST_LOCK-ADAPTIVE_WAIT, USE_DNS_CACHE, USE_DNS_FAILOVER, USE_NAPTR, USE_DST_BLOCKLIST, HAVE_RESOLV_RES, TLS_PTHREAD_MUTEX_SHARED"
# grep loadmodule in tests/ (tests/common builds its configs at run time),
# bench/ and scripts/ when this list needs to change.
MODULES="ctl tm sl rr pv siputils textops kex xlog dialog db_sqlite db_postgres
         http_client jsonrpcs xhttp app_lua tls sipcapture siptrace"
# What those modules and the core need on bookworm (debian/control has the
# full list): bison and flex for the config parser, readline for kamcmd,
# openssl's pkg-config for tls (and TLS_PTHREAD_MUTEX_SHARED in the flags).
BUILD_DEPS="build-essential dpkg-dev binutils pkg-config bison flex
            libssl-dev libpq-dev libsqlite3-dev libcurl4-openssl-dev
            liblua5.1-0-dev libreadline-dev libncurses-dev"

if [ "$(id -u)" != 0 ]; then
    echo "setup: run this as root" >&2
    exit 1
fi

# First, as dpkg-architecture below is in dpkg-dev. The runtime libraries
# of the built modules come with their -dev packages. --no-upgrade: what is
# there already is left alone (libpq-dev would otherwise drag a newer
# postgresql-15 in with its libpq5).
apt-get install -y -q --no-install-recommends --no-upgrade $BUILD_DEPS

here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$here/.deps"
# The physical path: the prefix is compiled into the binary (default mpath),
# so it must not go through a worktree's .deps symlink.
deps=$(cd "$here/.deps" && pwd -P)
prefix="$deps/kamailio-6.0"
tree="$prefix/src-tree"
pkg="$prefix/trixie"
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
moddir="$prefix/lib/$multiarch/kamailio/modules"
expected="$pkg/kamailio-V.expected"

# The "version:" (without -V's trailing blank) and "flags:" lines of a
# kamailio binary that runs here.
run_strings() {
    "$1" -V | sed -n -e 's/^version: \(.*[^ ]\) *$/version: \1/p' -e '/^flags: /p'
}

# The same two lines read out of a binary that does not run here (trixie's
# needs a newer glibc): `kamailio -V` prints full_version, which is
# "kamailio X.Y.Z (arch/os) " plus the repository hash, and the flags.
file_strings() {
    v=$(strings -a "$1" | grep -E '^kamailio [0-9]+\.[0-9]+\.[0-9]+ \([^)]*\) ' | sed 's/ *$//' | sort -u)
    f=$(strings -a "$1" | grep -E '^[A-Z][A-Z0-9_-]*(, [A-Z][A-Z0-9_-]*)+$' | sort -u)
    if [ "$(printf '%s\n' "$v" | wc -l)" != 1 ] || [ -z "$v" ] \
       || [ "$(printf '%s\n' "$f" | wc -l)" != 1 ] || [ -z "$f" ]; then
        printf 'setup: cannot read one version and one flags string out of %s:\n%s\n%s\n' "$1" "$v" "$f" >&2
        return 1
    fi
    printf 'version: %s\nflags: %s\n' "$v" "$f"
}

# True when the installed tree is complete and prints the strings of
# Debian's trixie binary.
installed_ok() {
    [ -x "$prefix/sbin/kamailio" ] && [ -x "$prefix/sbin/kamcmd" ] \
        && [ -d "$prefix/share/kamailio" ] && [ -f "$tree/src/Makefile.defs" ] \
        && [ -s "$expected" ] || return 1
    for m in $MODULES; do
        [ -f "$moddir/$m.so" ] || return 1
    done
    [ "$(run_strings "$prefix/sbin/kamailio" 2>/dev/null)" = "$(cat "$expected")" ]
}

if installed_ok; then
    echo "setup: Kamailio 6.0.1 already built in $prefix"
    exit 0
fi

# trixie's package lists in an apt state of its own, signed by the same
# Debian archive keys as bookworm's (the keyring knows trixie's).
apt_state="$deps/apt-trixie"
mkdir -p "$apt_state/lists/partial" "$apt_state/cache/archives/partial"
uri=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
[ -n "$uri" ] || uri=http://deb.debian.org/debian
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
printf 'deb-src [signed-by=%s] %s trixie main\ndeb [signed-by=%s] %s trixie main\n' \
    "$keyring" "$uri" "$keyring" "$uri" > "$apt_state/sources.list"
O="-o Dir::Etc::SourceList=$apt_state/sources.list -o Dir::Etc::SourceParts=/dev/null"
O="$O -o Dir::State::Lists=$apt_state/lists -o Dir::Cache=$apt_state/cache"
apt-get $O update -q

mkdir -p "$pkg"
cd "$pkg"
dsc="kamailio_$DEB_VERSION.dsc"
# The upstream signature (kamailio_6.0.1.orig.tar.gz.asc) is listed in the
# .dsc but missing from the archive (404), so apt-get source stops with an
# error after fetching the rest; the checks below decide.
apt-get $O source -q --download-only "kamailio=$DEB_VERSION" \
    || echo "setup: apt-get source failed (the .orig.tar.gz.asc is missing upstream); checking what it fetched"

# The .dsc against the signed trixie index, then every file against the .dsc.
want=$(apt-cache $O showsrc kamailio | awk -v v="$DEB_VERSION" -v f="$dsc" '
    /^Package:/ { ver = "" }
    /^Version:/ { ver = $2 }
    /^Checksums-Sha256:/ { c = 1; next }
    /^ / && c && ver == v && $3 == f { print $1 }
    !/^ / { c = 0 }')
[ -f "$dsc" ] || { echo "setup: apt-get source did not fetch $dsc" >&2; exit 1; }
have=$(sha256sum "$dsc" | cut -d' ' -f1)
if [ -z "$want" ] || [ "$want" != "$have" ]; then
    echo "setup: $dsc has sha256 $have, trixie's Sources index says '$want'" >&2
    exit 1
fi
awk '/^Checksums-Sha256:/ { c = 1; next } /^ / && c { print $1, $2, $3; next } { c = 0 }' \
    "$dsc" > sha256.list
[ -s sha256.list ] || { echo "setup: $dsc lists no Checksums-Sha256" >&2; exit 1; }
while read -r sum size name; do
    if [ ! -f "$name" ]; then
        case "$name" in
            *.asc) echo "setup: $name is missing upstream; the tarball is checked by its sha256"; continue ;;
        esac
        echo "setup: $name, listed in $dsc, was not downloaded" >&2
        exit 1
    fi
    got=$(sha256sum "$name" | cut -d' ' -f1)
    if [ "$got" != "$sum" ] || [ "$(stat -c %s "$name")" != "$size" ]; then
        echo "setup: $name: sha256 $got, size $(stat -c %s "$name"); $dsc says $sum, size $size" >&2
        exit 1
    fi
done < sha256.list

# Debian's binary for the strings the build must print: it does not run on
# bookworm's glibc, so they are read out of the file.
apt-get $O download -q "kamailio=$DEB_VERSION"
scratch=$(mktemp -d)
dpkg-deb -x "kamailio_${DEB_VERSION}_$(dpkg --print-architecture).deb" "$scratch"
file_strings "$scratch/usr/sbin/kamailio" > "$expected.new"
rm -rf "$scratch"
printf 'version: %s\nflags: %s\n' "$EXPECTED_VERSION" "$EXPECTED_FLAGS" > "$expected.doc"
if ! cmp -s "$expected.new" "$expected.doc"; then
    echo "setup: the strings read out of trixie's kamailio .deb:" >&2
    cat "$expected.new" >&2
    echo "setup: differ from those this script documents:" >&2
    cat "$expected.doc" >&2
    exit 1
fi
mv "$expected.new" "$expected"
rm -f "$expected.doc"

# A clean tree and install. --no-check: dpkg-source refuses a .dsc whose
# .asc is missing; the sha256 of every file was checked above. --no-copy:
# the tarballs stay in trixie/ only.
rm -rf "$tree" "$prefix/sbin" "$prefix/lib" "$prefix/share" "$prefix/etc"
dpkg-source -q --no-check --no-copy -x "$dsc" "$tree"

# As debian/rules: hardening=+all, the build flags exported
# (DPKG_EXPORT_BUILDFLAGS) and passed as CC_EXTRA_OPTS/LD_EXTRA_OPTS, from
# the top of the tree (-ffile-prefix-map), -DVERSION_NODATE, FLAVOUR and
# LIBDIR. Its clean target (maintainer-clean) deletes src/core/autover.h;
# left in, -V would print the tarball's hash after the version.
# group_include names no real group, so that only include_modules is built.
cd "$tree"
rm -f src/core/autover.h
export DEB_BUILD_MAINT_OPTIONS=hardening=+all
eval "$(dpkg-buildflags --export=sh)"
export LIBDIR="lib/$multiarch"
cc_extra="$(dpkg-buildflags --get CPPFLAGS) $(dpkg-buildflags --get CFLAGS) -DVERSION_NODATE"
ld_extra=$(dpkg-buildflags --get LDFLAGS)
log="$prefix/build.log"
echo "setup: building Kamailio $DEB_VERSION in $tree (log: $log)"
start=$(date +%s)
if ! { make cfg prefix="$prefix" FLAVOUR=kamailio \
           CC_EXTRA_OPTS="$cc_extra" LD_EXTRA_OPTS="$ld_extra" \
           group_include=knone include_modules="$(echo $MODULES)" \
       && make -j2 all \
       && make install; } > "$log" 2>&1; then
    tail -40 "$log" >&2
    echo "setup: the Kamailio 6.0.1 build failed; see $log" >&2
    exit 1
fi
echo "setup: Kamailio 6.0.1 built and installed in $(($(date +%s) - start)) s"

for m in $MODULES; do
    [ -f "$moddir/$m.so" ] || { echo "setup: $moddir/$m.so was not built" >&2; exit 1; }
done
if [ "$(run_strings "$prefix/sbin/kamailio")" != "$(cat "$expected")" ]; then
    echo "setup: $prefix/sbin/kamailio -V prints:" >&2
    run_strings "$prefix/sbin/kamailio" >&2
    echo "setup: Debian's trixie binary has:" >&2
    cat "$expected" >&2
    exit 1
fi
echo "setup: $prefix/sbin/kamailio prints the version and flags of Debian's trixie binary"
