//! The embedded database: SQLite (bundled), one file. Profiles are written with a version
//! check inside an immediate transaction (the same optimistic concurrency as DynamoDB's
//! conditional writes), in WAL mode so that concurrent `spotfit run`s wait instead of failing.

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use spotfit_core::ids::Pool;
use spotfit_core::ports::{CapacityMark, CapacityStore, ProfileStore, RunStore, StoreError};
use spotfit_core::profile::JobProfile;
use spotfit_core::run::RunRecord;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// Bumped when the schema changes; an older binary refuses a newer store instead of damaging it.
pub const SCHEMA_VERSION: i64 = 2;

/// The tables of each schema version (version 2 added `exposure`: the pools' interruption
/// history).
fn tables_of(version: i64) -> &'static [&'static str] {
    match version {
        1 => &["capacity", "profiles", "runs"],
        _ => &["capacity", "exposure", "profiles", "runs"],
    }
}

/// What takes a store from the version before to this one, inside one transaction.
const MIGRATE_TO_2: &str = "
CREATE TABLE IF NOT EXISTS exposure (
    attempt_key   TEXT PRIMARY KEY,
    instance_type TEXT NOT NULL,
    az            TEXT NOT NULL,
    market        TEXT NOT NULL,
    ended_at_ms   INTEGER NOT NULL,
    hours         REAL NOT NULL,
    interrupted   INTEGER NOT NULL
);
";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS profiles (
    job           TEXT PRIMARY KEY,
    version       INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    body          TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    run_id        TEXT NOT NULL,
    attempt       INTEGER NOT NULL,
    job           TEXT NOT NULL,
    started_at_ms INTEGER NOT NULL,
    status        TEXT NOT NULL,
    cost_usd      REAL NOT NULL,
    body          TEXT NOT NULL,
    PRIMARY KEY (run_id, attempt)
);
CREATE INDEX IF NOT EXISTS runs_by_job ON runs (job, started_at_ms DESC);
CREATE TABLE IF NOT EXISTS capacity (
    pool          TEXT PRIMARY KEY,
    instance_type TEXT NOT NULL,
    az            TEXT NOT NULL,
    market        TEXT NOT NULL,
    why           TEXT NOT NULL,
    expires_at_ms INTEGER NOT NULL
);
";

#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
    conn: Mutex<Connection>,
}

/// `PRAGMA application_id` of a spotfit store ("SPFT"): a foreign SQLite file is told apart
/// even when its tables happen to share our names.
pub const APPLICATION_ID: i64 = 0x5350_4654;

/// How a store is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read-only commands (`runs`, `profile`): the file is opened read-only and never changed,
    /// not even its journal mode; a missing or empty store is an error.
    ReadOnly,
    /// `run`: created when absent, schema created or checked.
    ReadWrite,
}

impl SqliteStore {
    /// Opens (creating if absent) the database at `path` for writing; see [`SqliteStore::open_with`].
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with(path, Access::ReadWrite)
    }

    /// The one safe open: refuses a symbolic link, anything but a regular file, a file marked
    /// read-only when writing, a foreign SQLite file and a newer schema, each with a clear
    /// error and without writing a byte. Only a spotfit store (or a new, empty file) is
    /// given the schema, in one transaction.
    pub fn open_with(path: &Path, access: Access) -> Result<SqliteStore, StoreError> {
        use rusqlite::OpenFlags;
        use std::os::unix::fs::PermissionsExt;
        let key = path.display().to_string();
        let corrupt = |reason: String| StoreError::Corrupt {
            key: key.clone(),
            reason: format!("{reason}; the file was left untouched"),
        };
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(corrupt(
                    "is a symbolic link; spotfit opens only a regular file in the store directory \
                     (replace the link by the file itself)"
                        .into(),
                ))
            }
            Ok(m) if !m.file_type().is_file() => return Err(corrupt("is not a regular file".into())),
            Ok(m) if access == Access::ReadWrite && m.permissions().mode() & 0o222 == 0 => {
                return Err(StoreError::Other {
                    service: "sqlite".into(),
                    code: "ReadOnly".into(),
                    message: format!(
                        "{key}: the database file is read-only (mode {:o}); `spotfit run` needs to write it",
                        m.permissions().mode() & 0o777
                    ),
                })
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && access == Access::ReadWrite => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::Missing(format!("no spotfit database at {key}")))
            }
            Err(e) => {
                return Err(StoreError::Other {
                    service: "sqlite".into(),
                    code: "CannotOpen".into(),
                    message: format!("{key}: {e}"),
                })
            }
        }
        // NOFOLLOW closes the window between the check above and the open.
        let flags = OpenFlags::SQLITE_OPEN_NOFOLLOW
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | match access {
                Access::ReadOnly => OpenFlags::SQLITE_OPEN_READ_ONLY,
                Access::ReadWrite => OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
            };
        let conn = Connection::open_with_flags(path, flags).map_err(|e| sql_err(&key, e))?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(|e| sql_err(&key, e))?;
        if access == Access::ReadWrite && conn.is_readonly(rusqlite::DatabaseName::Main).unwrap_or(true) {
            return Err(StoreError::Other {
                service: "sqlite".into(),
                code: "ReadOnly".into(),
                message: format!("{key}: the database can only be opened read-only; `spotfit run` needs to write it"),
            });
        }
        // The first statement that reads the file is where a corrupt one shows; nothing has
        // been written at this point, so a bad file stays exactly as it was.
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| sql_err(&key, e))?;
        let app_id: i64 = conn
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .map_err(|e| sql_err(&key, e))?;
        let tables: Vec<String> = {
            let mut st = conn
                .prepare("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name")
                .map_err(|e| sql_err(&key, e))?;
            let rows = st.query_map([], |r| r.get(0)).map_err(|e| sql_err(&key, e))?;
            rows.collect::<Result<_, _>>().map_err(|e| sql_err(&key, e))?
        };
        if app_id != 0 && app_id != APPLICATION_ID {
            return Err(corrupt(format!(
                "is not a spotfit store (SQLite application id {app_id:#x})"
            )));
        }
        if version > SCHEMA_VERSION {
            return Err(StoreError::Corrupt {
                key,
                reason: format!(
                    "store schema version {version} is newer than this spotfit understands ({SCHEMA_VERSION})"
                ),
            });
        }
        let ours = tables_of(version);
        if version == 0 && !tables.is_empty() {
            // A spotfit store gets its version in the transaction that creates its tables, so
            // tables without a version are someone else's, whatever they are called.
            return Err(corrupt(format!(
                "is not a spotfit store: an SQLite file with tables {} and no spotfit schema version",
                tables
                    .iter()
                    .take(8)
                    .map(|t| format!("{t:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        if version > 0 && (tables.iter().any(|t| !ours.contains(&t.as_str())) || tables.len() != ours.len()) {
            return Err(corrupt(format!(
                "is not a spotfit store of schema {version}: its tables are {tables:?}"
            )));
        }
        if access == Access::ReadOnly {
            if version == 0 {
                return Err(StoreError::Missing(format!(
                    "{key} is an empty database: no spotfit store there yet (run `spotfit run` first)"
                )));
            }
        } else {
            conn.pragma_update(None, "journal_mode", "WAL")
                .map_err(|e| sql_err(&key, e))?;
            if version == 0 {
                conn.execute_batch(&format!(
                    "BEGIN IMMEDIATE; {SCHEMA} {MIGRATE_TO_2} PRAGMA application_id = {APPLICATION_ID}; \
                     PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
                ))
                .map_err(|e| sql_err(&key, e))?;
            } else if version == 1 {
                // A store of the previous version gets the new table, its data untouched; a
                // read-only open leaves it as it is (nothing read-only needs the history).
                conn.execute_batch(&format!(
                    "BEGIN IMMEDIATE; {MIGRATE_TO_2} PRAGMA user_version = 2; COMMIT;"
                ))
                .map_err(|e| sql_err(&key, e))?;
            }
        }
        Ok(SqliteStore {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    /// Every stored profile's job name, sorted.
    pub fn jobs(&self) -> Result<Vec<String>, StoreError> {
        self.with(|c| {
            let mut st = c
                .prepare("SELECT job FROM profiles ORDER BY job")
                .map_err(|e| sql_err("profiles", e))?;
            let rows = st
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(|e| sql_err("profiles", e))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(|e| sql_err("profiles", e))
        })
    }
}

fn sql_err(key: &str, e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode::*;
    match e.sqlite_error_code() {
        Some(NotADatabase) | Some(DatabaseCorrupt) => StoreError::Corrupt {
            key: key.to_string(),
            reason: format!("{e} — the file was left untouched; move it aside to start a new store"),
        },
        Some(DatabaseBusy) | Some(DatabaseLocked) => StoreError::Unavailable {
            service: "sqlite".into(),
            message: format!("{key}: {e}"),
        },
        Some(CannotOpen) | Some(PermissionDenied) | Some(ReadOnly) => StoreError::Other {
            service: "sqlite".into(),
            code: "CannotOpen".into(),
            message: format!("{key}: {e}"),
        },
        _ => StoreError::Other {
            service: "sqlite".into(),
            code: "Sqlite".into(),
            message: format!("{key}: {e}"),
        },
    }
}

fn decode<T: serde::de::DeserializeOwned>(key: &str, body: &str) -> Result<T, StoreError> {
    serde_json::from_str(body).map_err(|e| StoreError::Corrupt {
        key: key.to_string(),
        reason: e.to_string(),
    })
}

fn encode<T: serde::Serialize>(key: &str, v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Other {
        service: "sqlite".into(),
        code: "Encode".into(),
        message: format!("{key}: {e}"),
    })
}

#[async_trait]
impl ProfileStore for SqliteStore {
    async fn get(&self, job: &str) -> Result<Option<JobProfile>, StoreError> {
        let key = format!("profiles/{job}");
        let body: Option<String> = self.with(|c| {
            c.query_row("SELECT body FROM profiles WHERE job = ?1", [job], |r| r.get(0))
                .optional()
                .map_err(|e| sql_err(&key, e))
        })?;
        body.map(|b| decode(&key, &b)).transpose()
    }

    async fn put_if_version(&self, profile: &JobProfile, expected: Option<u64>) -> Result<(), StoreError> {
        let key = format!("profiles/{}", profile.job);
        let body = encode(&key, profile)?;
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| sql_err(&key, e))?;
            let found: Option<i64> = tx
                .query_row("SELECT version FROM profiles WHERE job = ?1", [&profile.job], |r| r.get(0))
                .optional()
                .map_err(|e| sql_err(&key, e))?;
            let found = found.map(|v| v as u64);
            if found != expected {
                return Err(StoreError::Conflict { key: key.clone(), expected, found });
            }
            let now = chrono_now_ms();
            tx.execute(
                "INSERT INTO profiles (job, version, updated_at_ms, body) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(job) DO UPDATE SET version = excluded.version, updated_at_ms = excluded.updated_at_ms, body = excluded.body",
                params![profile.job, profile.version as i64, now, body],
            )
            .map_err(|e| sql_err(&key, e))?;
            tx.commit().map_err(|e| sql_err(&key, e))
        })
    }

    /// Read, apply and write inside one immediate transaction: concurrent `spotfit run`s of a
    /// job (other processes included) serialise on SQLite's write lock instead of retrying.
    async fn update_atomically(
        &self,
        job: &str,
        apply: &(dyn Fn(Option<JobProfile>) -> Option<JobProfile> + Send + Sync),
    ) -> Result<Option<JobProfile>, StoreError> {
        let key = format!("profiles/{job}");
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| sql_err(&key, e))?;
            let body: Option<String> = tx
                .query_row("SELECT body FROM profiles WHERE job = ?1", [job], |r| r.get(0))
                .optional()
                .map_err(|e| sql_err(&key, e))?;
            let current: Option<JobProfile> = body.map(|b| decode(&key, &b)).transpose()?;
            let Some(next) = apply(current.clone()) else {
                return Ok(current); // nothing to write (e.g. the run was already recorded)
            };
            let body = encode(&key, &next)?;
            tx.execute(
                "INSERT INTO profiles (job, version, updated_at_ms, body) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(job) DO UPDATE SET version = excluded.version, updated_at_ms = excluded.updated_at_ms, body = excluded.body",
                params![job, next.version as i64, chrono_now_ms(), body],
            )
            .map_err(|e| sql_err(&key, e))?;
            tx.commit().map_err(|e| sql_err(&key, e))?;
            Ok(Some(next))
        })
    }
}

fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[async_trait]
impl RunStore for SqliteStore {
    async fn put(&self, run: &RunRecord) -> Result<(), StoreError> {
        let key = format!("runs/{}/{}", run.run_id, run.attempt);
        let body = encode(&key, run)?;
        let started = run
            .summary
            .as_ref()
            .map(|s| s.started_at_ms)
            .unwrap_or_else(chrono_now_ms);
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO runs (run_id, attempt, job, started_at_ms, status, cost_usd, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    run.run_id,
                    run.attempt,
                    run.job,
                    started,
                    run.status.as_str(),
                    run.cost_usd,
                    body
                ],
            )
            .map_err(|e| sql_err(&key, e))?;
            Ok(())
        })
    }

    async fn get(&self, run_id: &str, attempt: u32) -> Result<Option<RunRecord>, StoreError> {
        let key = format!("runs/{run_id}/{attempt}");
        let body: Option<String> = self.with(|c| {
            c.query_row(
                "SELECT body FROM runs WHERE run_id = ?1 AND attempt = ?2",
                params![run_id, attempt],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| sql_err(&key, e))
        })?;
        body.map(|b| decode(&key, &b)).transpose()
    }

    async fn list(&self, job: Option<&str>, limit: usize) -> Result<Vec<RunRecord>, StoreError> {
        let limit = if limit == 0 { i64::MAX } else { limit as i64 };
        let rows: Vec<(String, u32, String)> = self.with(|c| {
            let mut st = c
                .prepare(
                    "SELECT run_id, attempt, body FROM runs WHERE (?1 IS NULL OR job = ?1)
                     ORDER BY started_at_ms DESC, run_id DESC, attempt DESC LIMIT ?2",
                )
                .map_err(|e| sql_err("runs", e))?;
            let it = st
                .query_map(params![job, limit], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .map_err(|e| sql_err("runs", e))?;
            it.collect::<Result<Vec<_>, _>>().map_err(|e| sql_err("runs", e))
        })?;
        rows.into_iter()
            .map(|(id, attempt, body)| decode(&format!("runs/{id}/{attempt}"), &body))
            .collect()
    }
}

#[async_trait]
impl CapacityStore for SqliteStore {
    async fn mark(&self, pool: &Pool, why: CapacityMark, until_ms: i64) -> Result<(), StoreError> {
        let why = match why {
            CapacityMark::InsufficientCapacity => "insufficient_capacity",
            CapacityMark::Interrupted => "interrupted",
        };
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO capacity (pool, instance_type, az, market, why, expires_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![pool.to_string(), pool.instance_type, pool.az, pool.market.as_str(), why, until_ms],
            )
            .map_err(|e| sql_err("capacity", e))?;
            Ok(())
        })
    }

    async fn unavailable(&self, now_ms: i64) -> Result<Vec<Pool>, StoreError> {
        let rows: Vec<(String, String, String)> = self.with(|c| {
            let mut st = c
                .prepare("SELECT instance_type, az, market FROM capacity WHERE expires_at_ms > ?1 ORDER BY pool")
                .map_err(|e| sql_err("capacity", e))?;
            let it = st
                .query_map([now_ms], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .map_err(|e| sql_err("capacity", e))?;
            it.collect::<Result<Vec<_>, _>>().map_err(|e| sql_err("capacity", e))
        })?;
        rows.into_iter()
            .map(|(instance_type, az, market)| {
                let market = serde_json::from_value(serde_json::Value::String(market.clone())).map_err(|_| {
                    StoreError::Corrupt {
                        key: "capacity".into(),
                        reason: format!("unknown market {market:?}"),
                    }
                })?;
                Ok(Pool {
                    instance_type,
                    az,
                    market,
                })
            })
            .collect()
    }

    async fn add_exposure(&self, e: &spotfit_core::ports::Exposure) -> Result<bool, StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT OR IGNORE INTO exposure (attempt_key, instance_type, az, market, ended_at_ms, hours, interrupted)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    e.attempt_key,
                    e.pool.instance_type,
                    e.pool.az,
                    e.pool.market.as_str(),
                    e.ended_at_ms,
                    e.hours,
                    e.interrupted
                ],
            )
            .map(|n| n == 1)
            .map_err(|er| sql_err("exposure", er))
        })
    }

    async fn exposures(&self, now_ms: i64) -> Result<Vec<spotfit_core::ports::PoolExposure>, StoreError> {
        self.with(|c| {
            let mut st = c
                .prepare(
                    "SELECT instance_type, az, SUM(hours), SUM(interrupted) FROM exposure WHERE ended_at_ms > ?1
                     GROUP BY instance_type, az ORDER BY instance_type, az",
                )
                .map_err(|e| sql_err("exposure", e))?;
            let it = st
                .query_map([now_ms - spotfit_core::ports::EXPOSURE_WINDOW_MS], |r| {
                    Ok(spotfit_core::ports::PoolExposure {
                        instance_type: r.get(0)?,
                        az: r.get(1)?,
                        hours: r.get(2)?,
                        interruptions: r.get::<_, i64>(3)? as u32,
                    })
                })
                .map_err(|e| sql_err("exposure", e))?;
            it.collect::<Result<Vec<_>, _>>().map_err(|e| sql_err("exposure", e))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_executor::block_on;

    #[test]
    fn a_schema_1_store_is_migrated_with_its_data_kept() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("spotfit.db");
        {
            let c = Connection::open(&db).unwrap();
            c.execute_batch(&format!(
                "BEGIN; {SCHEMA} PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = 1; COMMIT;"
            ))
            .unwrap();
            c.execute(
                "INSERT INTO capacity (pool, instance_type, az, market, why, expires_at_ms) VALUES ('p', 't', 'a', 'spot', 'interrupted', 9)",
                [],
            )
            .unwrap();
        }
        // read-only: accepted as it is
        SqliteStore::open_with(&db, Access::ReadOnly).unwrap();
        let st = SqliteStore::open(&db).unwrap();
        assert_eq!(block_on(st.unavailable(0)).unwrap().len(), 1, "the old marks are kept");
        assert!(block_on(st.exposures(0)).unwrap().is_empty());
        let v: i64 = st
            .with(|c| Ok(c.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap()))
            .unwrap();
        assert_eq!(v, 2);
    }

    #[test]
    fn exposure_is_counted_once_per_attempt_and_summed_per_pool_within_the_window() {
        use spotfit_core::ports::{Exposure, EXPOSURE_WINDOW_MS};
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("spotfit.db");
        let st = SqliteStore::open(&db).unwrap();
        let pool = |az: &str| Pool {
            instance_type: "m7i.large".into(),
            az: az.into(),
            market: spotfit_core::Market::Spot,
        };
        let e = |key: &str, az: &str, at: i64, hours: f64, interrupted: bool| Exposure {
            pool: pool(az),
            attempt_key: key.into(),
            ended_at_ms: at,
            hours,
            interrupted,
        };
        let now = 200 * 86_400_000;
        assert!(block_on(st.add_exposure(&e("r1#1", "use1-az1", now - 1000, 1.5, true))).unwrap());
        // the same attempt recorded again changes nothing
        assert!(!block_on(st.add_exposure(&e("r1#1", "use1-az1", now - 1000, 1.5, true))).unwrap());
        assert!(block_on(st.add_exposure(&e("r1#2", "use1-az1", now - 500, 2.0, false))).unwrap());
        assert!(block_on(st.add_exposure(&e("r2#1", "use1-az2", now - 500, 4.0, false))).unwrap());
        assert!(block_on(st.add_exposure(&e("old#1", "use1-az2", now - EXPOSURE_WINDOW_MS - 1, 100.0, true))).unwrap());
        let got = block_on(st.exposures(now)).unwrap();
        let rows: Vec<_> = got.iter().map(|p| (p.az.as_str(), p.hours, p.interruptions)).collect();
        assert_eq!(rows, [("use1-az1", 3.5, 1), ("use1-az2", 4.0, 0)]);
        // AND a reopened store still has them
        drop(st);
        let st = SqliteStore::open(&db).unwrap();
        assert_eq!(block_on(st.exposures(now)).unwrap(), got);
    }
    use spotfit_core::pipeline::update_profile;
    use spotfit_core::summary::{RunStatus, RunSummary};

    fn summary(job: &str, id: &str) -> RunSummary {
        RunSummary {
            job: job.into(),
            run_id: id.into(),
            status: RunStatus::Succeeded,
            duration_s: 1.0,
            ..Default::default()
        }
    }

    #[test]
    fn conditional_profile_writes() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("db")).unwrap();
        let mut p = JobProfile::new("j");
        p.version = 1;
        block_on(s.put_if_version(&p, None)).unwrap();
        // a second writer that also expected "absent" loses
        assert!(matches!(
            block_on(s.put_if_version(&p, None)),
            Err(StoreError::Conflict { .. })
        ));
        p.version = 2;
        block_on(s.put_if_version(&p, Some(1))).unwrap();
        assert_eq!(block_on(ProfileStore::get(&s, "j")).unwrap().unwrap().version, 2);
    }

    #[test]
    fn concurrent_runs_lose_no_update() {
        // GIVEN two stores on one file (two processes), WHEN 20 runs each are recorded at once
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        SqliteStore::open(&path).unwrap();
        let handles: Vec<_> = (0..2)
            .map(|w| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let s = SqliteStore::open(&path).unwrap();
                    for i in 0..20 {
                        block_on(update_profile(&s, &summary("j", &format!("w{w}-{i}")))).unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        // THEN every run is counted
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(block_on(ProfileStore::get(&s, "j")).unwrap().unwrap().runs, 40);
    }

    #[test]
    fn corrupt_file_is_reported_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let junk = b"this is not a database, it is somebody's notes\n".repeat(200);
        std::fs::write(&path, &junk).unwrap();
        let err = SqliteStore::open(&path).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), junk);
    }

    #[test]
    fn corrupt_row_names_its_key_and_spares_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("db")).unwrap();
        block_on(update_profile(&s, &summary("good", "r1"))).unwrap();
        s.with(|c| {
            c.execute("INSERT INTO profiles VALUES ('bad', 1, 0, '{not json')", [])
                .unwrap();
            Ok(())
        })
        .unwrap();
        let err = block_on(ProfileStore::get(&s, "bad")).unwrap_err();
        assert!(err.to_string().contains("profiles/bad"), "{err}");
        assert_eq!(block_on(ProfileStore::get(&s, "good")).unwrap().unwrap().runs, 1);
    }

    #[test]
    fn capacity_marks_expire() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("db")).unwrap();
        let pool = Pool {
            instance_type: "m7i.large".into(),
            az: "use1-az1".into(),
            market: spotfit_core::Market::Spot,
        };
        block_on(s.mark(&pool, CapacityMark::InsufficientCapacity, 1000)).unwrap();
        assert_eq!(block_on(s.unavailable(999)).unwrap(), vec![pool]);
        assert!(block_on(s.unavailable(1000)).unwrap().is_empty());
    }
}
