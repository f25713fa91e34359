//! PostgreSQL's own cost for trace rows on this machine: a bare binary
//! COPY of the same rows, with none of the module's code (the `postgres`
//! crate's own BinaryCopyInWriter), into the same schema
//! (sql/postgres.sql, its indexes included), one COPY per batch, paced
//! like the module's sender. It prints the client's CPU per row and the
//! CPU of the server process that took the rows (its backend).
//!
//! Usage: copy_floor POSTGRES_URL ROWS MSG_SIZE [BATCH] [INTERVAL_MS]
//! The URL is a `host=... port=... user=... dbname=...` string or a
//! postgresql:// URL; the table sip_trace is emptied first. Prints:
//! `floor_us_per_row user=U sys=S total=T server=S`.

#[path = "rows.rs"]
mod rows;

use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};
use postgres::{Client, NoTls};
use std::time::Duration;

const USAGE: &str = "copy_floor POSTGRES_URL ROWS MSG_SIZE [BATCH] [INTERVAL_MS]";

/// CPU seconds (user + system) of a process, from /proc.
fn process_cpu(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the backend's /proc stat");
    let fields: Vec<&str> = stat[stat.rfind(')').expect("stat") + 2..].split_whitespace().collect();
    // SAFETY: sysconf has no preconditions.
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime")) / tck
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args.get(1).expect(USAGE);
    let count = rows::arg(&args, 2, None, USAGE);
    let size = rows::arg(&args, 3, None, USAGE);
    let batch = rows::arg(&args, 4, Some(780), USAGE).max(1);
    let interval = Duration::from_millis(rows::arg(&args, 5, Some(200), USAGE) as u64);

    let mut client = Client::connect(url, NoTls).expect("connect");
    client.batch_execute("TRUNCATE sip_trace").expect("empty the table");
    let backend: i32 = client.query_one("SELECT pg_backend_pid()", &[]).expect("backend pid").get(0);
    let data = rows::rows(count, size);
    let types = [
        Type::TEXT,
        Type::VARCHAR,
        Type::VARCHAR,
        Type::VARCHAR,
        Type::VARCHAR,
        Type::VARCHAR,
        Type::TIMESTAMP,
        Type::VARCHAR,
        Type::VARCHAR,
        Type::VARCHAR,
        Type::INT4,
        Type::VARCHAR,
    ];
    let epoch = std::time::SystemTime::UNIX_EPOCH;

    let server0 = process_cpu(backend);
    let (user0, sys0) = rows::thread_cpu();
    for chunk in data.chunks(batch) {
        let sink = client
            .copy_in(
                "COPY sip_trace (msg, callid, method, status, fromip, toip, time_stamp, direction, fromtag, \
                 traced_user, time_us, totag) FROM STDIN (FORMAT binary)",
            )
            .expect("copy");
        let mut writer = BinaryCopyInWriter::new(sink, &types);
        for r in chunk {
            let at = epoch + Duration::from_secs(r.secs as u64);
            let values: [&(dyn ToSql + Sync); 12] = [
                &r.msg,
                &r.callid,
                &r.method,
                &r.status,
                &r.fromip,
                &r.toip,
                &at,
                &r.direction,
                &r.fromtag,
                &r.traced_user,
                &r.time_us,
                &r.totag,
            ];
            writer.write(&values).expect("row");
        }
        writer.finish().expect("finish");
        std::thread::sleep(interval);
    }
    let (user1, sys1) = rows::thread_cpu();
    let server1 = process_cpu(backend);

    let stored: i64 = client.query_one("SELECT count(*) FROM sip_trace", &[]).expect("count").get(0);
    let per = |seconds: f64| seconds * 1e6 / count as f64;
    let (user, sys) = (per(user1 - user0), per(sys1 - sys0));
    eprintln!("copy_floor: {count} rows of {size} bytes in batches of {batch}, {stored} stored");
    println!(
        "floor_us_per_row user={user:.2} sys={sys:.2} total={:.2} server={:.2}",
        user + sys,
        per(server1 - server0)
    );
}
