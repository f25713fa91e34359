#!/bin/sh
# Builds the Debian package kamailio-siptrace-rs for one Kamailio build:
#   scripts/build-deb.sh            bookworm's Kamailio 5.6.3 (the default)
#   scripts/build-deb.sh 6.0        trixie's Kamailio 6.0.1, built by
#                                   KAMAILIO_VERSION=6.0 scripts/setup-debian.sh
# The package goes to target/debian/. It depends on exactly one kamailio
# version, because Kamailio loads a module only into the build whose
# version and flags strings it carries.
#
# The package is assembled with dpkg-deb from the files listed below, not
# with cargo-deb: two packages from one crate, each against another server
# build, with a Depends line that names the server's exact Debian version,
# are a few lines of shell, and need no tool to be installed in CI.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
export PATH="$HOME/.cargo/bin:$PATH"

server=${1:-${KAMAILIO_VERSION:-5.6}}
case "$server" in
    5.6|5.6.3)
        server=5.6
        kamailio_deb=5.6.3-2
        dist=deb12
        target="$here/target"
        ;;
    6.0|6.0.1)
        server=6.0
        kamailio_deb=6.0.1-1+deb13u1
        dist=deb13
        target="$here/target/kamailio-6.0"
        ;;
    *)
        echo "build-deb: unsupported Kamailio '$server'; supported: 5.6 (bookworm), 6.0 (trixie)" >&2
        exit 2
        ;;
esac

package=kamailio-siptrace-rs
crate_version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
version="$crate_version-1+$dist"
arch=$(dpkg --print-architecture)
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
module_dir="usr/lib/$multiarch/kamailio/modules-rs"
share="usr/share/$package"
docs="usr/share/doc/$package"

KAMAILIO_VERSION=$server cargo build --release --locked --target-dir "$target"
so="$target/release/libsiptrace.so"

stage="$here/target/debian/stage-$server"
rm -rf "$stage"
mkdir -p "$stage/DEBIAN" "$stage/$module_dir" "$stage/$share/sql" "$stage/$docs"

install -m 0644 "$so" "$stage/$module_dir/siptrace.so"
# The debug info stays in the build tree; the package ships the stripped module.
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$stage/$module_dir/siptrace.so"
install -m 0644 sql/sqlite.sql sql/postgres.sql sql/mysql.sql "$stage/$share/sql/"
install -m 0644 doc/admin.md "$stage/$docs/admin.md"
gzip -9n "$stage/$docs/admin.md"
sed -e "s|@MODULE@|/$module_dir/siptrace.so|g" -e "s|@SQL@|/$share/sql|g" \
    -e "s|@KAMAILIO@|$kamailio_deb|g" packaging/README.Debian > "$stage/$docs/README.Debian"
install -m 0644 packaging/copyright "$stage/$docs/copyright"
date=$(git log -1 --format=%aD 2>/dev/null || date -R)
printf '%s (%s) unstable; urgency=medium\n\n  * Built for kamailio %s.\n\n -- siptrace-rs developers <siptrace-rs@example.org>  %s\n' \
    "$package" "$version" "$kamailio_deb" "$date" | gzip -9n > "$stage/$docs/changelog.Debian.gz"

# What the module links besides Kamailio itself (libsrdb1 on 5.6, found
# through the RUNPATH Kamailio's own DB modules carry too), from the
# libraries it needs. dpkg-shlibdeps wants a debian/control to read.
ctx="$here/target/debian/shlibs-$server"
mkdir -p "$ctx/debian"
printf 'Source: %s\n\nPackage: %s\nArchitecture: any\n' "$package" "$package" > "$ctx/debian/control"
shlibs=$(cd "$ctx" && dpkg-shlibdeps -O --ignore-missing-info "-e$stage/$module_dir/siptrace.so" \
    | sed -n 's/^shlibs:Depends=//p' | tr ',' '\n' | sed 's/^ *//' | grep -v '^kamailio ' | paste -sd, | sed 's/,/, /g')
# The override is for that RUNPATH only: a module without one (6.0) ships
# none, or lintian would call it unused.
if readelf -d "$stage/$module_dir/siptrace.so" | grep -q RUNPATH; then
    mkdir -p "$stage/usr/share/lintian/overrides"
    install -m 0644 packaging/lintian-overrides "$stage/usr/share/lintian/overrides/$package"
fi
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat > "$stage/DEBIAN/control" <<CONTROL
Package: $package
Version: $version
Architecture: $arch
Maintainer: siptrace-rs developers <siptrace-rs@example.org>
Installed-Size: $size
Depends: kamailio (= $kamailio_deb)${shlibs:+, $shlibs}
Section: net
Priority: optional
Description: SIP trace module for Kamailio, written in Rust
 A drop-in replacement for Kamailio's siptrace module: the same module
 name, parameters, functions, RPC commands and sip_trace table. SIP
 workers only copy each traced message into shared memory; sender
 processes deliver it to Homer over HEP (UDP, TCP or TLS) or to the
 database, so tracing costs calls almost nothing.
 .
 This build is for kamailio $kamailio_deb only. The module is installed
 beside Kamailio's own modules, not over them; see README.Debian for the
 one loadmodule line to change.
CONTROL
(cd "$stage" && find usr -type f -print0 | sort -z | xargs -0 md5sum > DEBIAN/md5sums)
find "$stage" -type d -exec chmod 0755 {} +

out="$here/target/debian/${package}_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$out" >/dev/null
echo "$out"
