#!/bin/sh
# The Debian packages, tested the way an operator uses them (run as root,
# after scripts/setup-debian.sh; scripts/test.sh calls it):
# - the bookworm package is built, checked with lintian, installed with
#   apt, and part of the suite runs against the installed module: a call
#   traced to HEP and SQLite, and siptrace.status; then it is removed, and
#   nothing of it may be left, nor anything else changed;
# - with the 6.0 build present (.deps/kamailio-6.0), the trixie package is
#   built and inspected: its control fields, its files, and the module's
#   version and flags strings against the 6.0 server's. It cannot be
#   installed here: trixie's kamailio does not exist on bookworm.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
export PATH="$HOME/.cargo/bin:$PATH"
export DEBIAN_FRONTEND=noninteractive
package=kamailio-siptrace-rs
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
module=/usr/lib/$multiarch/kamailio/modules-rs/siptrace.so

fail() { echo "test-package: $*" >&2; exit 1; }

command -v lintian >/dev/null 2>&1 || apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends lintian >/dev/null

check_lintian() {
    # Errors and warnings fail the run, and so does an override lintian
    # finds no use for. The info tags kept are listed, with reasons, in
    # doc/packaging.md.
    report=$(lintian -I --fail-on error,warning "$1" 2>&1) || fail "lintian reports errors or warnings in $1: $report"
    echo "$report" | grep -v 'running with root privileges' | grep -v hardening-no-fortify-functions || true
    if echo "$report" | grep -q unused-override; then fail "$1 ships an override lintian does not use"; fi
}

check_contents() {
    # What doc/packaging.md says a package installs.
    listing=$(dpkg-deb -c "$1" | awk '{print $6}')
    for f in "usr/lib/$multiarch/kamailio/modules-rs/siptrace.so" \
        usr/share/kamailio-siptrace-rs/sql/sqlite.sql usr/share/kamailio-siptrace-rs/sql/postgres.sql \
        usr/share/kamailio-siptrace-rs/sql/mysql.sql usr/share/doc/kamailio-siptrace-rs/README.Debian \
        usr/share/doc/kamailio-siptrace-rs/admin.md.gz usr/share/doc/kamailio-siptrace-rs/copyright \
        usr/share/doc/kamailio-siptrace-rs/changelog.Debian.gz; do
        echo "$listing" | grep -qxF "./$f" || fail "$1 lacks /$f"
    done
    if echo "$listing" | grep -q '^\./etc/'; then fail "$1 ships files under /etc"; fi
    if dpkg-deb --ctrl-tarfile "$1" | tar -t | grep -qE 'postinst|prerm|postrm|preinst'; then
        fail "$1 has maintainer scripts"
    fi
}

# --- bookworm: build, install, test, remove ---
deb=$(scripts/build-deb.sh 5.6 | tail -n 1)
check_lintian "$deb"
check_contents "$deb"
dpkg-deb -f "$deb" Depends | grep -q '^kamailio (= 5.6.3-2)' || fail "$deb does not depend on kamailio (= 5.6.3-2)"

config=/etc/kamailio/kamailio.cfg
before=$(md5sum "$config" /usr/lib/"$multiarch"/kamailio/modules/siptrace.so)
apt-get -o DPkg::Lock::Timeout=300 install -y -q "$deb" >/dev/null
[ -f "$module" ] || fail "the package did not install $module"
files=$(dpkg -L "$package")
SIPTRACE_MODULE="$module" cargo test --locked --test kamailio_trace -- --exact \
    core_events_reach_sipcapture_and_sqlite_once_per_message status_rpc_stops_and_resumes_tracing
apt-get -o DPkg::Lock::Timeout=300 remove --purge -y -q "$package" >/dev/null
dpkg-query -W "$package" >/dev/null 2>&1 && fail "$package is still installed"
for f in $files; do
    # Directories shared with other packages (/usr, /usr/share/doc, ...) stay.
    if [ -e "$f" ] && [ ! -d "$f" ]; then fail "$f is left after removal"; fi
done
[ ! -e "$(dirname "$module")" ] || fail "$(dirname "$module") is left after removal"
after=$(md5sum "$config" /usr/lib/"$multiarch"/kamailio/modules/siptrace.so)
[ "$before" = "$after" ] || fail "installing and removing the package changed Kamailio's config or module"
echo "test-package: bookworm package installed, tested against the installed module, and removed cleanly"

# --- trixie: build and inspect ---
k60="$here/.deps/kamailio-6.0"
if [ ! -x "$k60/sbin/kamailio" ]; then
    echo "test-package: trixie package skipped: no Kamailio 6.0 build in $k60 (KAMAILIO_VERSION=6.0 scripts/setup-debian.sh)"
    exit 0
fi
deb=$(scripts/build-deb.sh 6.0 | tail -n 1)
check_lintian "$deb"
check_contents "$deb"
dpkg-deb -f "$deb" Depends | grep -q '^kamailio (= 6.0.1-1+deb13u1)' \
    || fail "$deb does not depend on kamailio (= 6.0.1-1+deb13u1)"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
dpkg-deb -x "$deb" "$scratch"
# The strings Kamailio compares when it loads a module, against the 6.0
# server's own (which setup checked against Debian's trixie binary).
version=$("$k60/sbin/kamailio" -v | sed -n 's/^version: //p' | sed 's/ [0-9a-f]*$//')
flags=$("$k60/sbin/kamailio" -v | sed -n 's/^flags: //p')
strings "$scratch/usr/lib/$multiarch/kamailio/modules-rs/siptrace.so" | grep -qxF "$version" \
    || fail "the trixie module does not carry the version string '$version'"
strings "$scratch/usr/lib/$multiarch/kamailio/modules-rs/siptrace.so" | grep -qxF "$flags" \
    || fail "the trixie module does not carry the flags string '$flags'"
echo "test-package: trixie package built; control, files and module strings checked (not installable on bookworm)"
