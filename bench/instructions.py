#!/usr/bin/env python3
"""The worker side of tracing, counted in instructions.

A worker-side cost of a few microseconds per message is too small for the
whole-server CPU ratios of bench/run.py to show (the untraced workers alone
vary by +-0.3 s per 3000 calls), and this VM exposes no hardware counters
(`perf stat -e instructions` cannot work). So this script counts
instructions instead: it runs Kamailio under valgrind's callgrind
(`--trace-children=yes`; every process Kamailio forks is counted apart),
places calls at a low rate, and reads each process's instruction count
(Ir) over the calls alone: the counters are zeroed once the proxy is up
(`callgrind_control -z`) and read when the calls and the queued traces are
done (`callgrind_control -e Ir`).

It prints, for each variant, the instructions per call in the SIP workers
(Kamailio's "udp receiver" processes), what tracing adds to them over the
untraced proxy, and the instructions of our sending processes per call and
per record. Variants: untraced; C and ours with HEPv3 over UDP, with rows
in SQLite and in PostgreSQL (ours natively and, -dbapi, through the DB API);
and for trace sessions, ours loaded with nothing to trace (rust-idle) and
the same with 16 running sessions that match none of the calls
(rust-sessions16, bench/run.py's BENCH_SESSIONS): what matching costs the
calls it does not trace, beside rust-idle.

Usage (after cargo build --release):
    python3 bench/instructions.py                   # every variant, 5 calls/s for 20 s
    python3 bench/instructions.py --only untraced,c-hep,rust-hep --calls 60
    python3 bench/instructions.py --only rust-idle,rust-sessions16 --calls 200 --rate 10
"""

import argparse
import os
import pathlib
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import run  # noqa: E402  (bench/run.py: the proxy's config, the collector, PostgreSQL)


def callgrind(*args):
    return subprocess.run(["callgrind_control", *args], capture_output=True, text=True).stdout


def instructions(pids):
    """Ir of each process since the counters were last zeroed."""
    out = {}
    for pid in pids:
        text = callgrind("-e", "Ir", str(pid))
        # "  Totals:  Ir" and then one line per thread: "   Th 1  270,171,639".
        threads = re.findall(r"^\s*Th\s+\d+\s+([\d,]+)\s*$", text, re.M)
        if threads:
            out[pid] = sum(int(t.replace(",", "")) for t in threads)
    return out


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def roles(ctl):
    """Each counted process's role: workers, the siptrace sender that
    supervises, the sending process it forked, or other."""
    out = {}
    for pid, desc in run.process_names(ctl).items():
        if desc.startswith("udp receiver"):
            out[pid] = "workers"
        elif "siptrace sender" in desc:
            out[pid] = "supervisor"
            for child in children(pid):
                out[child] = "senders"
        else:
            out[pid] = "other"
    return out


def run_variant(name, module, params, calls, rate, workdir, kind, counter, pg, db, sessions=None):
    vdir = pathlib.Path(workdir) / name
    vdir.mkdir()
    port, uas_port, uac_port = run.free_port(), run.free_port(), run.free_port()
    cfg = vdir / "kamailio.cfg"
    cfg.write_text(run.kamailio_config(vdir, port, uas_port, module, params))
    log = open(vdir / "server.log", "w")
    command = ["valgrind", "--tool=callgrind", "--trace-children=yes", f"--callgrind-out-file={vdir}/callgrind.%p",
               run.KAMAILIO, "-f", str(cfg), "-DD", "-E", "-Y", str(vdir), "-m", "256"]
    kam = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
    uas = None
    try:
        for _ in range(600):
            if subprocess.run([run.KAMCMD, "-s", f"unix:{vdir}/ctl.sock", "core.uptime"],
                              capture_output=True).returncode == 0:
                break
            if kam.poll() is not None:
                raise SystemExit(f"{name}: Kamailio exited; see {vdir}/server.log")
            time.sleep(0.2)
        time.sleep(3)  # the sending processes start after the socket answers
        if sessions:
            run.start_sessions(vdir / "ctl.sock", sessions)
        uas = subprocess.Popen(["sipp", "-sf", str(run.UAS_SCENARIO), "-i", "127.0.0.1", "-p", str(uas_port),
                                "-nostdin", "-nd"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               cwd=vdir, start_new_session=True)
        time.sleep(1)
        who = roles(vdir / "ctl.sock")
        # This run's processes only: another callgrind run on the machine
        # keeps its counters.
        for pid in who:
            callgrind("-z", str(pid))
        before = counter.count if counter else 0
        uac = subprocess.run(["sipp", "-sn", "uac", f"127.0.0.1:{port}", "-i", "127.0.0.1", "-p", str(uac_port),
                              "-r", str(rate), "-m", str(calls), "-l", str(rate * 10), "-nostdin", "-nd",
                              "-timeout", f"{calls // rate * 4 + 60}s"],
                             capture_output=True, text=True, cwd=vdir)
        # Under callgrind every process is ~50 times slower: let the
        # sending processes take what is queued and write their batches.
        time.sleep(8)
        who = {**who, **roles(vdir / "ctl.sock")}
        counts = instructions(list(who))
        ok_calls, failed = run.sipp_counts(uac.stdout + uac.stderr)
        matched = run.sessions_matched(vdir / "ctl.sock") if sessions else None
        if kind == "hep":
            delivered = counter.count - before
        elif kind == "sqlite":
            delivered = sqlite3.connect(db).execute("SELECT COUNT(*) FROM sip_trace").fetchone()[0]
        elif kind == "postgres":
            delivered = int(pg.psql(db, "SELECT COUNT(*) FROM sip_trace"))
        else:
            delivered = None
        by_role = {}
        for pid, n in counts.items():
            by_role[who[pid]] = by_role.get(who[pid], 0) + n
        return {"name": name, "calls": calls, "ok": ok_calls, "failed": failed, "delivered": delivered,
                "by_role": by_role, "workers_n": sum(1 for p in counts if who[p] == "workers"),
                "matched": matched}
    finally:
        if uas:
            os.killpg(uas.pid, signal.SIGKILL)
            uas.wait()
        os.killpg(kam.pid, signal.SIGTERM)
        try:
            kam.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(kam.pid, signal.SIGKILL)
            kam.wait()
        log.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=int, default=5, help="calls per second (default 5)")
    ap.add_argument("--calls", type=int, default=100, help="calls per variant (default 100)")
    ap.add_argument("--module", default=str(run.ROOT / "target" / "release" / "libsiptrace.so"))
    ap.add_argument("--only", default="", help="comma-separated variant names")
    args = ap.parse_args()

    workdir = tempfile.mkdtemp(prefix="siptrace-instructions-")
    os.chmod(workdir, 0o755)
    counter = run.HepCounter()
    pg = run.Postgres(workdir)
    hep = {"trace_on": 1, "trace_mode": 1, "trace_to_database": 0, "hep_mode_on": 1, "hep_version": 3,
           "duplicate_uri": f"sip:127.0.0.1:{counter.port}"}
    plan = [("untraced", None, {}, "none")]
    for impl, module in (("c", run.C_MODULE), ("rust", args.module)):
        plan += [(f"{impl}-hep", module, hep, "hep"), (f"{impl}-sqlite", module, None, "sqlite"),
                 (f"{impl}-postgres", module, None, "postgres")]
    plan += [("rust-sqlite-dbapi", args.module, None, "sqlite"), ("rust-postgres-dbapi", args.module, None, "postgres")]
    # Trace sessions: nothing traced, without and with 16 sessions that
    # match none of the calls.
    idle = {"trace_on": 0, "trace_to_database": 0, "hep_mode_on": 1, "duplicate_uri": hep["duplicate_uri"]}
    plan += [("rust-idle", args.module, idle, "none"), ("rust-sessions16", args.module, idle, "none")]
    only = set(filter(None, args.only.split(",")))
    results = []
    try:
        for name, module, params, kind in plan:
            if only and name not in only:
                continue
            db = None
            if kind == "sqlite":
                db = str(pathlib.Path(workdir) / f"{name}.sqlite")
                con = sqlite3.connect(db)
                con.executescript((run.ROOT / "sql" / "sqlite.sql").read_text())
                con.close()
                params = {"trace_on": 1, "trace_mode": 2, "trace_to_database": 0, "db_url": f"sqlite:///{db}"}
            elif kind == "postgres":
                db = name.replace("-", "_")
                params = {"trace_on": 1, "trace_mode": 2, "trace_to_database": 0, "db_url": pg.fresh_database(db)}
            if name.endswith("-dbapi"):
                params = {**params, "db_native": 0}
            print(f"{name}: {args.calls} calls at {args.rate}/s under callgrind", file=sys.stderr, flush=True)
            sessions = run.BENCH_SESSIONS if name == "rust-sessions16" else None
            results.append(run_variant(name, module, params, args.calls, args.rate, workdir, kind,
                                       counter if kind == "hep" else None, pg, db, sessions))
    finally:
        counter.stop()
        pg.stop()

    base = next((r for r in results if r["name"] == "untraced"), None)
    idle_base = next((r for r in results if r["name"] == "rust-idle"), None)
    print("| variant | calls ok (failed) | delivered per call | workers: instructions per call "
          "| over untraced, per call | per message | sending process: instructions per call | per record "
          "| workers vs rust-idle | sessions' matches |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        per_call = r["by_role"].get("workers", 0) / r["calls"]
        over = per_call - base["by_role"].get("workers", 0) / base["calls"] if base and r is not base else None
        senders = r["by_role"].get("senders")
        delivered = r["delivered"]
        cells = [
            f"{r['ok']} ({r['failed']})",
            "-" if delivered is None else f"{delivered / r['calls']:.2f}",
            f"{per_call:,.0f}",
            "-" if over is None else f"{over:+,.0f}",
            "-" if over is None else f"{over / run.MESSAGES_PER_CALL:+,.0f}",
            f"{senders / r['calls']:,.0f}" if senders else "-",
            f"{senders / delivered:,.0f}" if senders and delivered else "-",
            f"{per_call / (idle_base['by_role']['workers'] / idle_base['calls']):.4f}x"
            if idle_base and r["name"].startswith("rust-") and idle_base["by_role"].get("workers") else "-",
            "-" if r["matched"] is None else str(r["matched"]),
        ]
        print(f"| {r['name']} | " + " | ".join(cells) + " |")
    print("\n(More than 13 delivered per call: messages sipp retransmitted to the slowed proxy, traced too.)")
    print(f"\nworking files: {workdir}", file=sys.stderr)


if __name__ == "__main__":
    main()
