//! Which writer stores the rows: the module's own (`core::store`) for
//! `sqlite://` and `postgres://` URLs, unless `db_native=0`; Kamailio's DB
//! API (`db`) for every other driver. Chosen once in mod_init; each
//! sending process then opens its own connection.

use crate::core::sql::redact_url;
use crate::core::store::{self, Backend, StoreSettings};
use crate::kamailio::config::Config;
use crate::kamailio::db;
use crate::kamailio::host::db::Db;

/// The writer mod_init chose: the DB API's driver, or the native writer's
/// settings.
pub enum Chosen {
    DbApi(Db),
    Native(Box<StoreSettings>),
}

/// In mod_init, in the main process: chooses the writer and checks that
/// rows can go where `db_url` says. An SQLite file that cannot be opened,
/// or a table missing or of another version, refuses the start on either
/// path; a database server that does not answer does not. Nothing stays
/// open across Kamailio's fork.
pub fn mod_init(config: &Config) -> Result<Chosen, String> {
    let url = db::url(config);
    let settings = StoreSettings::native(&url, &config.table, &config.columns, &Db::version_table());
    match settings {
        Some(s) if config.db_native => {
            if let Some(why) = store::check_at_startup(&s)? {
                crate::log_warn!(
                    "the database does not answer now ({why}); rows are dropped and counted until it does"
                );
            }
            crate::log_info!(
                "rows go to {} through the module's own {} writer (db_native=1)",
                redact_url(&url),
                match s.backend {
                    Backend::Sqlite => "SQLite",
                    Backend::Postgres => "PostgreSQL",
                }
            );
            Ok(Chosen::Native(Box::new(s)))
        }
        s => {
            // The file itself, as the native writer sees it: db_sqlite would
            // create a missing one, or fail on each row, and Kamailio would
            // start anyway.
            if let Some(s) = s.filter(|s| s.backend == Backend::Sqlite) {
                store::check_at_startup(&s)?;
            }
            let db = db::bind(config)?;
            db::check_at_startup(&db::DbSetup::new(config, db))?;
            Ok(Chosen::DbApi(db))
        }
    }
}
