#!/usr/bin/env python3
"""Proxy benchmark: the CPU that tracing costs Kamailio.

sipp UAC -> Kamailio (tm, record_route, 2 children) -> sipp UAS,
INVITE/ACK/BYE calls, 13 SIP messages per call at the proxy. For each
variant it sums the CPU time (user + system) of every Kamailio process
while the calls run, and counts what reached the HEP collector or the
sip_trace table, and the calls that failed.

Variants: no tracing; the server's C siptrace.so and our module, each with
HEPv3 (trace_mode=1), with rows in SQLite (trace_mode=2) and with rows in
PostgreSQL (trace_mode=2). Ours also sends HEPv3 over TCP (-tcp) and TLS
(-tls), and writes rows through Kamailio's DB API (-dbapi, db_native=0)
beside its native writers (the default). And for trace sessions
(siptrace.trace_start): our module loaded with nothing to trace
(rust-idle), and the same with 16 running sessions that match none of the
calls (rust-sessions16): what matching costs the calls it does not trace.
Our module also runs with hep_distribution=shard over three UDP collectors
(rust-hep-shard) and with a disk spool configured and idle
(rust-hep-spool).

The same variants in instructions, under callgrind: bench/instructions.py.

Beside the ratios it prints, for our module, the sending processes' CPU
per record (HEP packet or row) in microseconds, and for the PostgreSQL
variants the CPU of the whole PostgreSQL server over the run. After the
table come the floors: what the kernel charges per datagram
(udp_floor), a bare rusqlite insert loop (sqlite_floor) and a bare binary
COPY (copy_floor) of as many rows of the same size.

The server is Debian's installed Kamailio 5.6.3 unless the environment
names another, as the tests take it: KAMAILIO_BIN, KAMCMD_BIN and
KAMAILIO_MODULES_DIR (where the C siptrace.so and the other modules are).
With KAMAILIO_VERSION=6.0 and none of them, it is the 6.0.1 build of
KAMAILIO_VERSION=6.0 scripts/setup-debian.sh, and --module defaults to
target/kamailio-6.0/release/libsiptrace.so.

With --opensips PATH (an OpenSIPS 3.6 or 4.0 tree the user built; this
project never fetches or builds OpenSIPS), the same proxy runs on OpenSIPS
too: no tracing, that tree's own tracer.so and our module built for it
(cargo build --release --no-default-features --features opensips
--target-dir target/opensips-X.Y, with OPENSIPS_SRC=PATH, X.Y the tree's
release), each sending HEPv3 over UDP, and over TCP (-tcp), with
trace("tid", "t").

Usage: bench/run.py [--rate 200] [--duration 15] [--hep-rate 1000]
       [--only name,name] [--module path/to/libsiptrace.so]
       [--opensips path/to/opensips-tree [--opensips-module path/to/libsiptrace.so]]
Run bench/run.sh for a fresh machine: it installs, builds and runs this.
"""

import argparse
import os
import pathlib
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent



def server_path(var, debian, built_60):
    """A path of the server under test: the environment's, else that of
    the 6.0 build with KAMAILIO_VERSION=6.0, else Debian's."""
    if os.environ.get(var):
        return os.environ[var]
    if os.environ.get("KAMAILIO_VERSION", "").startswith("6.0"):
        return str(ROOT / ".deps" / "kamailio-6.0" / built_60)
    return debian


MULTIARCH = "x86_64-linux-gnu"
KAMAILIO = server_path("KAMAILIO_BIN", "kamailio", "sbin/kamailio")
KAMCMD = server_path("KAMCMD_BIN", "kamcmd", "sbin/kamcmd")
MODULES = server_path("KAMAILIO_MODULES_DIR", f"/usr/lib/{MULTIARCH}/kamailio/modules",
                      f"lib/{MULTIARCH}/kamailio/modules")
C_MODULE = f"{MODULES}/siptrace.so"
TARGET = "kamailio-6.0/release" if os.environ.get("KAMAILIO_VERSION", "").startswith("6.0") else "release"
UAS_SCENARIO = ROOT / "tests" / "fixtures" / "uas.xml"
CLK_TCK = os.sysconf("SC_CLK_TCK")
MESSAGES_PER_CALL = 13
# With --pin, Kamailio gets the first CPU to itself, the load generators the
# others. Its processes then share one CPU, which a production server with
# several does not make them do; by default nothing is pinned.
PIN_KAMAILIO = []
PIN_OTHERS = []


# 16 trace sessions that match none of the benchmark's calls (sipp's
# built-in UAC: INVITE from 127.0.0.1, From sipp@127.0.0.1, To and request
# URI service@127.0.0.1). Most fail on their first key; four match the
# source and the method and fail on the To URI, the costliest miss.
BENCH_SESSIONS = (
    [f"from=alice{i}" for i in range(4)]
    + [f"src=127.0.0.1;method=INVITE;to=bob{i}" for i in range(4)]
    + [f"src=10.{i}.0.0/16" for i in range(2)]
    + ["method=MESSAGE|OPTIONS", "method=SUBSCRIBE"]
    + [f"ruri=carol{i}@example.com" for i in range(2)]
    + [f"callid=not-a-call-{i}@example.com" for i in range(2)]
)


def start_sessions(ctl, filters):
    """Starts one trace session per filter, for an hour, in the t scope."""
    for i, f in enumerate(filters):
        out = subprocess.run([KAMCMD, "-s", f"unix:{ctl}", "siptrace.trace_start", f"bench{i}", f, "3600",
                              "default", "t"], capture_output=True, text=True)
        if out.returncode != 0 or "error" in out.stdout + out.stderr:
            raise SystemExit(f"trace_start {f}: {out.stdout}{out.stderr}")


def sessions_matched(ctl):
    """The calls the running sessions matched, summed."""
    out = subprocess.run([KAMCMD, "-s", f"unix:{ctl}", "siptrace.trace_list"], capture_output=True,
                         text=True).stdout
    return sum(int(n) for n in re.findall(r"calls_matched:\s*(\d+)", out))


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def group_cpu(pgid):
    """User + system CPU seconds of each live process in a process group."""
    cpu = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        # fields[2] is the process group, fields[11:13] utime and stime.
        if int(fields[2]) == pgid:
            cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return cpu


def tree_cpu(root):
    """User + system CPU seconds of each live process descending from
    `root` (PostgreSQL's processes each start a session of their own, so
    its server is a tree, not a process group)."""
    stats = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        stats[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / CLK_TCK)
    cpu, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            cpu[pid] = stats[pid][1]
        todo.extend(p for p, (ppid, _) in stats.items() if ppid == pid)
    return cpu


def parent_pid(pid):
    """The parent of a live process, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2:].split()[1])


def process_names(ctl):
    """Kamailio's description of each of its processes, by pid."""
    out = subprocess.run([KAMCMD, "-s", f"unix:{ctl}", "core.psx"], capture_output=True, text=True).stdout
    pids = re.findall(r"PID:\s*(\d+)", out)
    descs = re.findall(r"DSC:\s*(.*)", out)
    return {int(p): d.strip() for p, d in zip(pids, descs)}


class HepCounter:
    """Counts the datagrams that reach a UDP port."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.count = 0
        self.bytes = 0
        self.running = True
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while self.running:
            try:
                data = self.sock.recv(70000)
            except socket.timeout:
                continue
            self.count += 1
            self.bytes += len(data)

    def stop(self):
        self.running = False
        self.thread.join()
        self.sock.close()


class MultiCounter:
    """Several collectors counted as one: what all of them received."""

    def __init__(self, counters):
        self.counters = counters

    @property
    def count(self):
        return sum(c.count for c in self.counters)

    @property
    def bytes(self):
        return sum(c.bytes for c in self.counters)

    def stop(self):
        for c in self.counters:
            c.stop()


class HepTcpCounter:
    """Counts the HEPv3 packets that arrive over TCP connections to a port."""

    def __init__(self):
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(16)
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.count = 0
        self.bytes = 0
        self.lock = threading.Lock()
        self.running = True
        self.thread = threading.Thread(target=self.accept, daemon=True)
        self.thread.start()

    def accept(self):
        while self.running:
            try:
                conn, _ = self.server.accept()
            except socket.timeout:
                continue
            threading.Thread(target=self.read, args=(conn,), daemon=True).start()

    def read(self, conn):
        conn.settimeout(0.2)
        pending = b""
        while self.running:
            try:
                data = conn.recv(1 << 20)
            except socket.timeout:
                continue
            if not data:
                break
            pending += data
            while len(pending) >= 6 and len(pending) >= int.from_bytes(pending[4:6], "big"):
                length = int.from_bytes(pending[4:6], "big")
                if pending[:4] != b"HEP3" or length < 6:
                    print("bench: not a HEPv3 stream", file=sys.stderr)
                    conn.close()
                    return
                with self.lock:
                    self.count += 1
                    self.bytes += length
                pending = pending[length:]
        conn.close()

    def stop(self):
        self.running = False
        self.thread.join()
        self.server.close()


class HepTlsCounter(HepTcpCounter):
    """Counts the HEPv3 packets that arrive over TLS connections to a port,
    with a certificate from a CA made for the run (tls_ca_file)."""

    def __init__(self, workdir):
        import ssl
        d = pathlib.Path(workdir)
        ossl = lambda *a: subprocess.run(["openssl", *a], cwd=d, check=True, capture_output=True)
        ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=bench CA",
             "-keyout", "ca.key", "-out", "ca.pem")
        ossl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
             "-out", "server.csr")
        (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
        ossl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "2", "-extfile", "san.ext", "-out", "server.pem")
        self.ca = str(d / "ca.pem")
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(d / "server.pem", d / "server.key")
        super().__init__()

    def read(self, conn):
        try:
            conn.settimeout(5)
            conn = self.context.wrap_socket(conn, server_side=True)
        except OSError:
            conn.close()
            return
        super().read(conn)


class Postgres:
    """A private PostgreSQL server in a temporary directory."""

    def __init__(self, workdir):
        bins = sorted(pathlib.Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        if not bins:
            raise SystemExit("PostgreSQL is not installed; run scripts/setup-debian.sh")
        self.bin = bins[-1].parent
        self.data = pathlib.Path(workdir) / "pgdata"
        self.data.mkdir()
        self.as_postgres = os.getuid() == 0
        if self.as_postgres:
            shutil.chown(self.data, "postgres", "postgres")
            os.chmod(workdir, 0o755)
        self.port = free_port()
        self.run("initdb", "-A", "trust", "-U", "postgres", "--no-sync", "-D", str(self.data))
        self.proc = subprocess.Popen(
            self.cmd("postgres", "-p", str(self.port), "-k", str(self.data), "-c", "listen_addresses=127.0.0.1",
                     "-D", str(self.data)),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        for _ in range(100):
            if self.psql("postgres", "SELECT 1", check=False) is not None:
                return
            time.sleep(0.2)
        raise SystemExit("PostgreSQL did not start")

    def cmd(self, program, *args):
        path = str(self.bin / program)
        return (["runuser", "-u", "postgres", "--", path] if self.as_postgres else [path]) + list(args)

    def run(self, program, *args):
        subprocess.run(self.cmd(program, *args), check=True, stdout=subprocess.DEVNULL)

    def psql(self, db, sql, check=True):
        r = subprocess.run([str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                            "-d", db, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql],
                           capture_output=True, text=True)
        if r.returncode != 0:
            if check:
                raise SystemExit(f"psql: {r.stderr}")
            return None
        return r.stdout.strip()

    def fresh_database(self, name):
        self.psql("postgres", f"DROP DATABASE IF EXISTS {name}")
        self.psql("postgres", f"CREATE DATABASE {name}")
        self.psql(name, (ROOT / "sql" / "postgres.sql").read_text())
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self):
        os.killpg(self.proc.pid, signal.SIGINT)
        self.proc.wait(timeout=30)


def kamailio_config(workdir, port, uas_port, module, params):
    lines = [
        "#!KAMAILIO",
        "debug=1",
        "log_stderror=yes",
        "children=2",
        "auto_aliases=no",
        "disable_tcp=yes",
        f"listen=udp:127.0.0.1:{port}",
        f'mpath="{MODULES}"',
        'loadmodule "tm.so"', 'loadmodule "sl.so"', 'loadmodule "rr.so"', 'loadmodule "pv.so"',
        'loadmodule "siputils.so"', 'loadmodule "ctl.so"', 'loadmodule "db_sqlite.so"',
        'loadmodule "db_postgres.so"',
        f'modparam("ctl", "binrpc", "unix:{workdir}/ctl.sock")',
    ]
    if module:
        lines.append(f'loadmodule "{module}"')
        for name, value in params.items():
            # A list is a parameter given several times (duplicate_uri).
            for one in value if isinstance(value, list) else [value]:
                v = one if isinstance(one, int) else f'"{one}"'
                lines.append(f'modparam("siptrace", "{name}", {v})')
    lines += ["request_route {"] + relay_route(uas_port)
    return "\n".join(lines) + "\n"


def relay_route(uas_port):
    """The body of the proxy's request route on both servers, which share
    the script syntax for it: relay to the UAS, in-dialog requests by their
    route set."""
    return [
        "    if (has_totag()) {",
        f'        if (!loose_route()) {{ $du = "sip:127.0.0.1:{uas_port}"; }}',
        "        t_relay();",
        "        exit;",
        "    }",
        "    record_route();",
        f'    $du = "sip:127.0.0.1:{uas_port}";',
        "    t_relay();",
        "}",
    ]


def opensips_release(tree):
    """The `major.minor` release of an OpenSIPS tree, from its Makefile.defs."""
    try:
        defs = (pathlib.Path(tree) / "Makefile.defs").read_text()
    except OSError as e:
        raise SystemExit(f"{tree} is not a built OpenSIPS tree: {e}")
    fields = dict(re.findall(r"^(VERSION_MAJOR|VERSION_MINOR)\s*=\s*(\S+)", defs, re.M))
    if len(fields) != 2:
        raise SystemExit(f"{tree}/Makefile.defs names no VERSION_MAJOR and VERSION_MINOR")
    return f"{fields['VERSION_MAJOR']}.{fields['VERSION_MINOR']}"


def opensips_config(tree, port, hep_port, uas_port, module, collector, transport="udp"):
    # OpenSIPS's tracer sends HEP over TCP through proto_hep's hep_tcp
    # socket, which starts OpenSIPS's TCP processes; ours connects from its
    # own sending process and needs none.
    ours = module and not module.endswith("/tracer.so")
    socket_transport = "udp" if ours else transport
    lines = [
        "log_level=1", "stderror_enabled=yes", "syslog_enabled=no", "udp_workers=2",
        f"socket=udp:127.0.0.1:{port}", f"socket=hep_{socket_transport}:127.0.0.1:{hep_port}",
        f'mpath="{tree}/modules/"',
        'loadmodule "proto_udp.so"', 'loadmodule "proto_hep.so"', 'loadmodule "tm.so"', 'loadmodule "sl.so"',
        'loadmodule "rr.so"', 'loadmodule "sipmsgops.so"',
        f'modparam("proto_hep", "hep_id", "[hid]127.0.0.1:{collector};transport={transport};version=3")',
    ]
    trace = ""
    if module:
        lines += [f'loadmodule "{module}"', 'modparam("tracer", "trace_id", "[tid]uri=hep:hid")']
        trace = 'trace("tid", "t");'
    lines += ["route {", f"    {trace}"] + relay_route(uas_port)
    return "\n".join(lines) + "\n"


def sipp_counts(output):
    """Successful and failed calls from sipp's final screen."""
    def cumulative(label):
        m = re.findall(rf"{label}\s*\|\s*\d+\s*\|\s*(\d+)", output)
        return int(m[-1]) if m else None
    return cumulative("Successful call"), cumulative("Failed call")


def port_taken(port):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
            return False
        except OSError:
            return True


def run_variant(name, module, params, rate, duration, workdir, output_kind, counter=None, pg=None, db=None,
                opensips=None, sessions=None):
    """One run; on OpenSIPS when `opensips` names its tree; with trace
    sessions of the `sessions` filters running."""
    port, uas_port, uac_port = free_port(), free_port(), free_port()
    vdir = pathlib.Path(workdir) / name
    vdir.mkdir()
    log = open(vdir / "server.log", "w")
    if opensips:
        cfg = vdir / "opensips.cfg"
        # A variant named ...-tcp sends HEP over TCP (run names end in -<rep>).
        transport = "tcp" if "-tcp-" in name else "udp"
        cfg.write_text(opensips_config(opensips, port, free_port(), uas_port, module, counter.port, transport))
        command = [f"{opensips}/opensips", "-f", str(cfg), "-F", "-m", "256", "-w", str(vdir)]
    else:
        cfg = vdir / "kamailio.cfg"
        cfg.write_text(kamailio_config(vdir, port, uas_port, module, params))
        command = [KAMAILIO, "-f", str(cfg), "-DD", "-E", "-Y", str(vdir), "-m", "256"]
    kam = subprocess.Popen(PIN_KAMAILIO + command, stdout=log, stderr=log, start_new_session=True)
    uas = None
    try:
        for _ in range(100):
            if opensips:
                ok = port_taken(port)
            else:
                ok = subprocess.run([KAMCMD, "-s", f"unix:{vdir}/ctl.sock", "core.uptime"],
                                    capture_output=True).returncode == 0
            if ok:
                break
            if kam.poll() is not None:
                raise SystemExit(f"{name}: the server exited; see {vdir}/server.log")
            time.sleep(0.1)
        if opensips:
            # Its processes start after the socket is taken.
            time.sleep(1)
        if sessions:
            start_sessions(vdir / "ctl.sock", sessions)
        uas = subprocess.Popen(PIN_OTHERS + ["sipp", "-sf", str(UAS_SCENARIO), "-i", "127.0.0.1", "-p", str(uas_port),
                                "-nostdin", "-nd"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               cwd=vdir, start_new_session=True)
        time.sleep(0.5)
        before_hep = counter.count if counter else 0
        before_bytes = counter.bytes if counter else 0
        pg_before = tree_cpu(pg.proc.pid) if output_kind == "postgres" else {}
        cpu_before = group_cpu(kam.pid)
        calls = rate * duration
        uac = subprocess.run(PIN_OTHERS + ["sipp", "-sn", "uac", f"127.0.0.1:{port}", "-i", "127.0.0.1", "-p", str(uac_port),
                              "-r", str(rate), "-m", str(calls), "-l", str(rate * 4), "-nostdin", "-nd",
                              "-timeout", f"{duration * 4 + 30}s"],
                             capture_output=True, text=True, cwd=vdir)
        # Let queued traces drain before the CPU is read.
        time.sleep(2)
        cpu_after = group_cpu(kam.pid)
        # The whole PostgreSQL server (postmaster, the backends of this
        # run's connections, its writers): a backend that ended during the
        # run is missing from both readings (none does: the connections
        # last as long as Kamailio).
        pg_cpu = None
        if output_kind == "postgres":
            pg_after = tree_cpu(pg.proc.pid)
            pg_cpu = sum(t - pg_before.get(pid, 0) for pid, t in pg_after.items())
        names = {} if opensips else process_names(vdir / "ctl.sock")
        if sessions and sessions_matched(vdir / "ctl.sock"):
            print(f"{name}: a benchmark session matched calls", file=sys.stderr)
        per_process = {}
        for pid, seconds in cpu_after.items():
            # A sender's sending process is a child of the one core.psx lists.
            kind = names.get(pid) or names.get(parent_pid(pid), "other")
            if opensips and parent_pid(pid) not in (None, kam.pid) and parent_pid(parent_pid(pid)) == kam.pid:
                # OpenSIPS lists no process names; its only grandchildren
                # are our sending processes.
                kind = "siptrace sender"
            kind = "workers" if kind.startswith("udp receiver") else "senders" if "siptrace sender" in kind else "other"
            per_process[kind] = per_process.get(kind, 0) + seconds - cpu_before.get(pid, 0)
        cpu = sum(per_process.values())
        ok_calls, failed = sipp_counts(uac.stdout + uac.stderr)
        if ok_calls is None:
            ok_calls, failed = (calls, 0) if uac.returncode == 0 else (0, calls)
        datagram_size = None
        if output_kind == "hep":
            delivered = counter.count - before_hep
            datagram_size = (counter.bytes - before_bytes) / delivered if delivered else None
        elif output_kind == "sqlite":
            delivered = sqlite3.connect(db).execute("SELECT COUNT(*) FROM sip_trace").fetchone()[0]
        elif output_kind == "postgres":
            delivered = int(pg.psql(db, "SELECT COUNT(*) FROM sip_trace"))
        else:
            delivered = None
        row_size = None
        if output_kind == "sqlite":
            row_size = sqlite3.connect(db).execute("SELECT avg(length(msg)) FROM sip_trace").fetchone()[0]
        elif output_kind == "postgres":
            row_size = float(pg.psql(db, "SELECT coalesce(avg(length(msg)), 0) FROM sip_trace"))
        return {"name": name, "cpu": cpu, "split": per_process, "calls": calls,
                "failed": calls - ok_calls if failed is None else failed,
                "per_call": None if delivered is None else delivered / calls, "datagram_size": datagram_size,
                "delivered": delivered, "pg_cpu": pg_cpu, "row_size": row_size}
    finally:
        if uas:
            os.killpg(uas.pid, signal.SIGKILL)
            uas.wait()
        os.killpg(kam.pid, signal.SIGTERM)
        try:
            kam.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(kam.pid, signal.SIGKILL)
            kam.wait()
        log.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=int, default=200, help="calls per second (default 200)")
    ap.add_argument("--duration", type=int, default=15, help="seconds of calls per variant (default 15)")
    ap.add_argument("--hep-rate", type=int, default=1000, help="rate of the extra HEP runs; 0 skips them")
    ap.add_argument("--module", default=str(ROOT / "target" / TARGET / "libsiptrace.so"))
    ap.add_argument("--repeat", type=int, default=5, help="runs of each variant; the median is reported")
    ap.add_argument("--only", default="", help="comma-separated variant names")
    ap.add_argument("--rust-param", action="append", default=[], metavar="NAME=VALUE",
                    help="an extra modparam for our module's variants, e.g. batch_size=256")
    ap.add_argument("--opensips", help="a built OpenSIPS 3.6 or 4.0 tree: adds the OpenSIPS variants")
    ap.add_argument("--opensips-module",
                    help="our module built for that tree (default: target/opensips-X.Y/release/libsiptrace.so, "
                         "X.Y the tree's release)")
    ap.add_argument("--pin", action="store_true",
                    help="pin Kamailio to the first CPU and the load generators to the others")
    args = ap.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    if args.pin and len(cpus) >= 2 and shutil.which("taskset"):
        global PIN_KAMAILIO, PIN_OTHERS
        PIN_KAMAILIO = ["taskset", "-c", str(cpus[0])]
        PIN_OTHERS = ["taskset", "-c", ",".join(map(str, cpus[1:]))]
        os.sched_setaffinity(0, cpus[1:])

    workdir = tempfile.mkdtemp(prefix="siptrace-bench-")
    os.chmod(workdir, 0o755)
    counter = HepCounter()
    tcp_counter = HepTcpCounter()
    tls_counter = HepTlsCounter(workdir)
    shard_counter = MultiCounter([HepCounter() for _ in range(3)])
    pg = Postgres(workdir)
    hep = {"trace_on": 1, "trace_mode": 1, "trace_to_database": 0, "hep_mode_on": 1, "hep_version": 3,
           "duplicate_uri": f"sip:127.0.0.1:{counter.port}"}

    def db_params(url):
        return {"trace_on": 1, "trace_mode": 2, "trace_to_database": 0, "db_url": url}

    def sqlite_db(tag):
        path = pathlib.Path(workdir) / f"{tag}.sqlite"
        con = sqlite3.connect(path)
        con.executescript((ROOT / "sql" / "sqlite.sql").read_text())
        con.close()
        return str(path)

    plan = [("untraced", None, {}, "none", args.rate)]
    for impl, module in (("c", C_MODULE), ("rust", args.module)):
        plan.append((f"{impl}-hep", module, hep, "hep", args.rate))
        if impl == "rust":
            # HEP over TCP: a whole burst goes out in one write. (The C
            # module would need Kamailio's own TCP, which this proxy has off.)
            tcp = {**hep, "duplicate_uri": f"sip:127.0.0.1:{tcp_counter.port};transport=tcp"}
            plan.append(("rust-hep-tcp", module, tcp, "hep", args.rate))
            tls = {**hep, "duplicate_uri": f"sip:127.0.0.1:{tls_counter.port};transport=tls",
                   "tls_ca_file": tls_counter.ca}
            plan.append(("rust-hep-tls", module, tls, "hep", args.rate))
            # Three collectors, each call to one of them; and a spool that
            # is configured and has nothing to do.
            shard = {**hep, "hep_distribution": "shard",
                     "duplicate_uri": [f"sip:127.0.0.1:{c.port}" for c in shard_counter.counters]}
            plan.append(("rust-hep-shard", module, shard, "hep", args.rate))
            spool = {**hep, "spool_dir": str(pathlib.Path(workdir) / "spool")}
            plan.append(("rust-hep-spool", module, spool, "hep", args.rate))
        plan.append((f"{impl}-sqlite", module, "sqlite", "sqlite", args.rate))
        plan.append((f"{impl}-postgres", module, "postgres", "postgres", args.rate))
        if impl == "rust":
            # The same rows through Kamailio's DB API (db_sqlite, db_postgres).
            plan.append(("rust-sqlite-dbapi", module, "sqlite", "sqlite", args.rate))
            plan.append(("rust-postgres-dbapi", module, "postgres", "postgres", args.rate))
    # Trace sessions: the module loaded with nothing to trace, without and
    # with 16 sessions that match none of the calls.
    idle = {"trace_on": 0, "trace_to_database": 0, "hep_mode_on": 1, "duplicate_uri": hep["duplicate_uri"]}
    plan.append(("rust-idle", args.module, idle, "none", args.rate))
    plan.append(("rust-sessions16", args.module, idle, "none", args.rate))
    if args.hep_rate:
        plan.append((f"untraced@{args.hep_rate}", None, {}, "none", args.hep_rate))
        for impl, module in (("c", C_MODULE), ("rust", args.module)):
            plan.append((f"{impl}-hep@{args.hep_rate}", module, hep, "hep", args.hep_rate))
    if args.opensips:
        release = opensips_release(args.opensips)
        if not args.opensips_module:
            args.opensips_module = str(ROOT / "target" / f"opensips-{release}" / "release" / "libsiptrace.so")
        print(f"OpenSIPS {release} tree {args.opensips}, our module {args.opensips_module}", file=sys.stderr)
        if not pathlib.Path(args.opensips_module).exists():
            raise SystemExit(f"{args.opensips_module} is missing; build the module for OpenSIPS (see --help)")
        tracer = f"{args.opensips}/modules/tracer/tracer.so"
        plan.append(("os-untraced", None, {}, "none", args.rate))
        plan.append(("os-c-hep", tracer, {}, "hep", args.rate))
        plan.append(("os-rust-hep", args.opensips_module, {}, "hep", args.rate))
        plan.append(("os-c-hep-tcp", tracer, {}, "hep", args.rate))
        plan.append(("os-rust-hep-tcp", args.opensips_module, {}, "hep", args.rate))
    only = set(filter(None, args.only.split(",")))
    wanted = [p for p in plan if not only or p[0] in only]
    if any(p[1] == args.module for p in wanted) and not pathlib.Path(args.module).exists():
        raise SystemExit(f"{args.module} is missing; run cargo build --release")

    extra = {}
    for item in args.rust_param:
        key, _, value = item.partition("=")
        extra[key] = int(value) if value.lstrip("-").isdigit() else value

    runs = {}
    floors = {}
    try:
        # Variants take turns, so that a slow patch of the machine does not
        # land on one variant only.
        for rep in range(args.repeat):
            for name, module, params, kind, rate in plan:
                if only and name not in only:
                    continue
                db = None
                if kind == "sqlite":
                    db = sqlite_db(f"{name}-{rep}")
                    params = db_params(f"sqlite:///{db}")
                elif kind == "postgres":
                    db = name.replace("-", "_")
                    params = db_params(pg.fresh_database(db))
                if name.endswith("-dbapi"):
                    params = {**params, "db_native": 0}
                if name.startswith("rust-"):
                    params = {**params, **extra}
                print(f"run {rep + 1}/{args.repeat}: {name} at {rate} calls/s for {args.duration} s",
                      file=sys.stderr, flush=True)
                on = args.opensips if name.startswith("os-") else None
                collector = {"tcp": tcp_counter, "tls": tls_counter}.get(name.split("-")[-1], counter)
                sessions = BENCH_SESSIONS if name.startswith("rust-sessions") else None
                if name.endswith("-shard"):
                    collector = shard_counter
                r = run_variant(f"{name}-{rep}", module, params, rate, args.duration, workdir, kind, collector, pg,
                                db, on, sessions)
                runs.setdefault(name, []).append(r)
        floors = row_floors(runs, args.rate, pg)
    finally:
        counter.stop()
        tcp_counter.stop()
        tls_counter.stop()
        shard_counter.stop()
        pg.stop()

    results = {name: summarize(rs) for name, rs in runs.items()}
    version = subprocess.run([KAMAILIO, "-v"], capture_output=True, text=True).stdout.splitlines()
    print(f"server: {KAMAILIO} ({version[0].strip() if version else 'version unknown'}), C module: {C_MODULE}")
    print_table(results)
    print_udp_floor(results)
    print_row_floors(results, floors)
    print(f"\nworking files: {workdir}", file=sys.stderr)


def summarize(runs):
    """The median run by CPU, with the spread and the worst delivery. A run
    whose server shows no CPU at all was not measured (its processes were
    not found when it ended); it is left out, and said so."""
    measured = [r for r in runs if r["cpu"] > 0]
    if len(measured) < len(runs):
        print(f"{runs[0]['name']}: {len(runs) - len(measured)} run(s) showed no server CPU and are left out",
              file=sys.stderr)
    ordered = sorted(measured or runs, key=lambda r: r["cpu"])
    median = dict(ordered[len(ordered) // 2])
    median["spread"] = (ordered[0]["cpu"], ordered[-1]["cpu"])
    per_call = [r["per_call"] for r in runs if r["per_call"] is not None]
    median["per_call"] = min(per_call) if per_call else None
    median["failed"] = max(r["failed"] for r in runs)
    # The sending processes' CPU per record delivered, median and range.
    per_record = sorted(r["split"].get("senders", 0) * 1e6 / r["delivered"] for r in measured or runs
                        if r.get("delivered") and r["split"].get("senders"))
    median["per_record"] = (per_record[len(per_record) // 2], per_record[0], per_record[-1]) if per_record else None
    pg = sorted(r["pg_cpu"] for r in measured or runs if r.get("pg_cpu") is not None)
    median["pg"] = (pg[len(pg) // 2], pg[0], pg[-1]) if pg else None
    pg_per_row = sorted(r["pg_cpu"] * 1e6 / r["delivered"] for r in measured or runs
                        if r.get("pg_cpu") is not None and r.get("delivered"))
    median["pg_per_row"] = pg_per_row[len(pg_per_row) // 2] if pg_per_row else None
    sizes = [r["row_size"] for r in runs if r.get("row_size")]
    median["row_size"] = sum(sizes) / len(sizes) if sizes else None
    return median


def print_table(results):
    def untraced_for(name):
        if name.startswith("os-"):
            return results.get("os-untraced")
        if name.startswith("rust-sessions"):
            return results.get("rust-idle") or results.get("untraced")
        rate = name.split("@")[1] if "@" in name else None
        return results.get(f"untraced@{rate}" if rate else "untraced")

    print("| variant | server CPU (s), median [min-max] | workers / senders / other | vs untraced | vs C module "
          "| delivered per call (worst) | failed calls (worst) | senders per record (us), median [min-max] "
          "| PostgreSQL server CPU (s), median [min-max] (us per row) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        base = untraced_for(name)
        vs_base = f"{r['cpu'] / base['cpu']:.2f}x" if base and base["cpu"] > 0 else "-"
        c_name = name.replace("rust-", "c-", 1).replace("-dbapi", "")
        c = results.get(c_name) if "rust-" in name else None
        vs_c = f"{r['cpu'] / c['cpu']:.2f}x" if c and c["cpu"] > 0 else "-"
        per_call = "-" if r["per_call"] is None else f"{r['per_call']:.2f}"
        lo, hi = r["spread"]
        split = " / ".join(f"{r['split'].get(k, 0):.2f}" for k in ("workers", "senders", "other"))
        rec = r.get("per_record")
        rec = f"{rec[0]:.2f} [{rec[1]:.2f}-{rec[2]:.2f}]" if rec else "-"
        pg = r.get("pg")
        pg = f"{pg[0]:.2f} [{pg[1]:.2f}-{pg[2]:.2f}] ({r['pg_per_row']:.1f})" if pg and r.get("pg_per_row") else "-"
        print(f"| {name} | {r['cpu']:.2f} [{lo:.2f}-{hi:.2f}] | {split} | {vs_base} | {vs_c} | {per_call} "
              f"| {r['failed']} of {r['calls']} | {rec} | {pg} |")


UDP_FLOOR = ROOT / "target" / TARGET / "examples" / "udp_floor"


def print_udp_floor(results):
    """What the kernel alone charges for the HEP datagrams a variant sent:
    bench/udp_floor.rs sends as many, of the same mean size, through the
    sender's own UDP path. Any UDP tracer pays at least this much."""
    hep = [(n, r) for n, r in results.items() if r.get("datagram_size") and n.split("-")[-1].startswith("hep")]
    if not hep:
        return
    if not UDP_FLOOR.exists():
        print(f"\n(no kernel floor: build it with cargo build --release --example udp_floor)", file=sys.stderr)
        return
    print("\n| variant | HEP datagrams | mean size (B) | kernel floor per datagram (us), median of 3 "
          "| floor (s) | untraced + floor |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in hep:
        count = round(r["calls"] * r["per_call"])
        size = round(r["datagram_size"])
        totals = []
        for _ in range(3):
            out = subprocess.run(PIN_KAMAILIO + [str(UDP_FLOOR), str(count), str(size)], capture_output=True,
                                 text=True, check=True).stdout
            totals.append(float(re.search(r"total=([0-9.]+)", out).group(1)))
        per = sorted(totals)[1]
        floor = per * count / 1e6
        base = results.get("os-untraced" if name.startswith("os-") else
                           (f"untraced@{name.split('@')[1]}" if "@" in name else "untraced"))
        ratio = f"{(base['cpu'] + floor) / base['cpu']:.2f}x" if base and base["cpu"] > 0 else "-"
        print(f"| {name} | {count} | {size} | {per:.2f} | {floor:.3f} | {ratio} |")


SQLITE_FLOOR = ROOT / "target" / "release" / "examples" / "sqlite_floor"
COPY_FLOOR = ROOT / "target" / "release" / "examples" / "copy_floor"


def floor_line(command):
    out = subprocess.run(PIN_KAMAILIO + command, capture_output=True, text=True, check=True).stdout
    return {k: float(v) for k, v in re.findall(r"(\w+)=([0-9.]+)", out)}


def row_floors(runs, rate, pg):
    """What SQLite and PostgreSQL alone charge for as many rows of the same
    size as the row variants stored, written the cheapest way each allows
    with none of the module's code, in batches as large as the sender's
    (rate x 13 rows per second, gathered for db_flush_interval, 200 ms).
    Run while the benchmark's PostgreSQL is still up; median of 3."""
    floors = {}
    batch = max(1, round(rate * MESSAGES_PER_CALL * 0.2))
    for kind, tool in (("sqlite", SQLITE_FLOOR), ("postgres", COPY_FLOOR)):
        rows = [r for name, rs in runs.items() if name.split("-")[1:2] == [kind] for r in rs
                if r.get("delivered") and r.get("row_size")]
        # Ours when it ran: the C module's runs may store fewer rows, or
        # more (a retransmission in a proxy that falls behind is a row too).
        rows = [r for r in rows if r["name"].startswith("rust-")] or rows
        if not rows:
            continue
        if not tool.exists():
            print(f"\n(no {kind} floor: build it with cargo build --release --example {tool.name})",
                  file=sys.stderr)
            continue
        count = max(r["delivered"] for r in rows)
        size = round(sum(r["row_size"] for r in rows) / len(rows))
        lines = []
        for i in range(3):
            if kind == "sqlite":
                target = str(pathlib.Path(tempfile.gettempdir()) / f"siptrace-floor-{os.getpid()}.sqlite")
                lines.append(floor_line([str(tool), target, str(count), str(size), str(batch), "200"]))
                os.unlink(target)
            else:
                url = pg.fresh_database("floor")
                conninfo = f"host=127.0.0.1 port={pg.port} user=postgres dbname=floor"
                lines.append(floor_line([str(tool), conninfo, str(count), str(size), str(batch), "200"]))
        lines.sort(key=lambda l: l["total"])
        floors[kind] = {"count": count, "size": size, "batch": batch, **lines[1]}
    return floors


def print_row_floors(results, floors):
    """Each row variant's sending-process CPU per row beside its floor."""
    if not floors:
        return
    print("\n| variant | rows | mean msg size (B) | senders per row (us) | floor per row (us), median of 3 "
          "| PostgreSQL server per row (us) | floor's server per row (us) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        kind = name.split("-")[1] if "-" in name else None
        if kind not in floors or not r.get("per_call"):
            continue
        f = floors[kind]
        rec = r.get("per_record")
        ours = f"{rec[0]:.2f}" if rec else "- (in the workers)"
        pg = f"{r['pg_per_row']:.1f}" if r.get("pg_per_row") else "-"
        server = f"{f['server']:.1f}" if "server" in f else "-"
        print(f"| {name} | {round(r['per_call'] * r['calls'])} | {round(r['row_size'] or 0)} | {ours} "
              f"| {f['total']:.2f} ({f['count']} rows of {f['size']} B, batches of {f['batch']}) | {pg} "
              f"| {server} |")


if __name__ == "__main__":
    main()
