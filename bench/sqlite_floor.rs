//! SQLite's own cost for trace rows on this machine: a bare rusqlite
//! insert loop, with none of the module's code, into the same schema
//! (sql/sqlite.sql, its four indexes included), through the same system
//! libsqlite3, one transaction per batch, paced like the module's sender.
//! What any writer of these rows into SQLite pays at least.
//!
//! Usage: sqlite_floor DB_FILE ROWS MSG_SIZE [BATCH] [INTERVAL_MS] [wal]
//! DB_FILE is created anew. Prints one line:
//! `floor_us_per_row user=U sys=S total=T`.

#[path = "rows.rs"]
mod rows;

use rusqlite::Connection;
use std::time::Duration;

const USAGE: &str = "sqlite_floor DB_FILE ROWS MSG_SIZE [BATCH] [INTERVAL_MS] [wal]";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).expect(USAGE);
    let count = rows::arg(&args, 2, None, USAGE);
    let size = rows::arg(&args, 3, None, USAGE);
    let batch = rows::arg(&args, 4, Some(780), USAGE).max(1);
    let interval = Duration::from_millis(rows::arg(&args, 5, Some(200), USAGE) as u64);
    let wal = args.get(6).is_some_and(|a| a == "wal");

    let _ = std::fs::remove_file(path);
    let conn = Connection::open(path).expect("open the file");
    conn.execute_batch(include_str!("../sql/sqlite.sql")).expect("the schema");
    if wal {
        conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(())).expect("WAL");
    }
    conn.busy_timeout(Duration::from_secs(1)).expect("busy timeout");
    let data = rows::rows(count, size);

    let (user0, sys0) = rows::thread_cpu();
    for chunk in data.chunks(batch) {
        conn.execute_batch("BEGIN IMMEDIATE").expect("begin");
        let mut stmt = conn
            .prepare_cached(
                "INSERT INTO sip_trace (msg, callid, method, status, fromip, toip, time_stamp, direction, \
                 fromtag, traced_user, time_us, totag) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )
            .expect("prepare");
        for r in chunk {
            let julian = ((r.secs as f64) - 0.5) / 86400.0 + 2440587.5;
            stmt.execute(rusqlite::params![
                r.msg,
                r.callid,
                r.method,
                r.status,
                r.fromip,
                r.toip,
                julian,
                r.direction,
                r.fromtag,
                r.traced_user,
                r.time_us,
                r.totag
            ])
            .expect("insert");
        }
        drop(stmt);
        conn.execute_batch("COMMIT").expect("commit");
        std::thread::sleep(interval);
    }
    let (user1, sys1) = rows::thread_cpu();

    let stored: i64 = conn.query_row("SELECT count(*) FROM sip_trace", [], |r| r.get(0)).expect("count");
    let per = |seconds: f64| seconds * 1e6 / count as f64;
    let (user, sys) = (per(user1 - user0), per(sys1 - sys0));
    eprintln!(
        "sqlite_floor: {count} rows of {size} bytes in batches of {batch}{}, {stored} stored",
        if wal { ", WAL" } else { "" }
    );
    println!("floor_us_per_row user={user:.2} sys={sys:.2} total={:.2}", user + sys);
}
