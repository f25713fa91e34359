#!/bin/sh
# The main job, end to end: build the module, start Kamailio with it as a
# proxy between two sipp endpoints, push calls through, and show what was
# traced, both as sip_trace rows in SQLite and as HEP packets received by
# an independent decoder (hep-js).
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/scripts/setup-debian.sh"
export PATH="$HOME/.cargo/bin:$PATH"
cd "$here"
cargo build --release --locked

calls=${CALLS:-3}
work="$here/target/demo"
rm -rf "$work"
mkdir -p "$work"
proxy=35070 uas=35080 hep=39060  # the UAC uses 35090

sqlite3 "$work/trace.db" < sql/sqlite.sql
cat > "$work/kamailio.cfg" <<CFG
#!KAMAILIO
debug=2
log_stderror=yes
children=2
listen=udp:127.0.0.1:$proxy
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "siputils.so"
loadmodule "db_sqlite.so"
loadmodule "ctl.so"
loadmodule "$here/target/release/libsiptrace.so"
modparam("ctl", "binrpc", "unix:$work/ctl.sock")
modparam("siptrace", "trace_on", 1)
modparam("siptrace", "trace_mode", 3)
modparam("siptrace", "trace_to_database", 0)
modparam("siptrace", "duplicate_uri", "sip:127.0.0.1:$hep")
modparam("siptrace", "hep_mode_on", 1)
modparam("siptrace", "hep_version", 3)
modparam("siptrace", "db_url", "sqlite:///$work/trace.db")
request_route {
    if (has_totag()) {
        if (!loose_route()) { \$du = "sip:127.0.0.1:$uas"; }
        t_relay();
        exit;
    }
    record_route();
    \$du = "sip:127.0.0.1:$uas";
    t_relay();
}
CFG

pids=""
cleanup() { for p in $pids; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

node tests/hepjs/listen.js 127.0.0.1 $hep > "$work/hep.jsonl" 2>"$work/hep.err" &
pids="$pids $!"
kamailio -f "$work/kamailio.cfg" -DD -E -Y "$work" 2>"$work/kamailio.log" &
pids="$pids $!"
sipp -sf tests/fixtures/uas.xml -i 127.0.0.1 -p $uas -nostdin -nd >/dev/null 2>&1 &
pids="$pids $!"
sleep 2

echo "== $calls calls: sipp UAC -> Kamailio 127.0.0.1:$proxy -> sipp UAS 127.0.0.1:$uas"
sipp -sn uac 127.0.0.1:$proxy -i 127.0.0.1 -p 35090 -m "$calls" -r 5 -nostdin -nd -timeout 30s -timeout_error \
    >"$work/uac.out" 2>&1 && echo "all calls completed" || { echo "calls failed, see $work/uac.out"; exit 1; }
sleep 1

echo
echo "== sip_trace rows in $work/trace.db"
sqlite3 -header -column "$work/trace.db" \
    "SELECT id, strftime('%H:%M:%S', time_stamp) || '.' || printf('%06d', time_us) AS time, direction AS dir,
            method, status, fromip, toip, callid FROM sip_trace ORDER BY id"

echo
echo "== HEP packets decoded by hep-js on 127.0.0.1:$hep"
node -e '
const lines = require("fs").readFileSync(process.argv[1], "utf8").split("\n").filter(Boolean);
for (const l of lines) {
  const p = JSON.parse(l);
  if (!p.decoded) continue;
  const i = p.decoded.rcinfo;
  const first = p.decoded.payload.split("\r\n")[0];
  console.log(`${i.srcIp}:${i.srcPort} -> ${i.dstIp}:${i.dstPort}  proto ${i.protocol}  type ${i.payloadType}  capture ${i.captureId}  correlation ${i.correlation_id}  | ${first}`);
}' "$work/hep.jsonl"

echo
echo "rows: $(sqlite3 "$work/trace.db" 'SELECT COUNT(*) FROM sip_trace'), HEP packets: $(grep -c decoded "$work/hep.jsonl")"
echo "logs and files: $work"
