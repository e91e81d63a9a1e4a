//! spotfit-local: the embedded default. Everything `spotfit run` stores lives in one directory:
//! `spotfit.db` (SQLite: profiles, runs, capacity marks) and `objects/` (the S3 bucket's key
//! layout on disk, so the same Athena/DuckDB queries read both).

pub mod fs_store;
pub mod launcher;
pub mod sqlite;

pub use fs_store::FsObjectStore;
pub use launcher::{LocalLauncher, LocalRunSettings};
pub use sqlite::SqliteStore;

use spotfit_core::ports::StoreError;
use std::path::{Path, PathBuf};

/// Environment variable that overrides the store directory (the `--store` flag wins over it).
pub const STORE_ENV: &str = "SPOTFIT_STORE";
pub const DB_FILE: &str = "spotfit.db";
pub const OBJECTS_DIR: &str = "objects";

/// The per-user default store directory (`~/.local/share/spotfit` on Linux).
pub fn default_store_dir() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "spotfit").map(|d| d.data_dir().to_path_buf())
}

/// Resolves the store directory: flag, else `SPOTFIT_STORE`, else the per-user default.
pub fn resolve_store_dir(flag: Option<&Path>) -> Result<PathBuf, StoreError> {
    if let Some(p) = flag {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os(STORE_ENV).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    default_store_dir()
        .ok_or_else(|| StoreError::Missing(format!("no home directory to put the store in; set {STORE_ENV}")))
}

/// The local store: database and objects, opened together.
#[derive(Debug)]
pub struct LocalStore {
    pub dir: PathBuf,
    pub db: SqliteStore,
    pub objects: FsObjectStore,
}

impl LocalStore {
    /// Opens the store in `dir`. With `create`, a missing store is created; without it, a
    /// missing store is an error (read-only commands must not litter empty stores around).
    /// A corrupt database is reported and left untouched.
    pub fn open(dir: &Path, create: bool) -> Result<LocalStore, StoreError> {
        let db_path = dir.join(DB_FILE);
        if !create && !db_path.exists() {
            return Err(StoreError::Missing(format!(
                "no spotfit store at {} (run `spotfit run` first, or pass --store DIR / set {STORE_ENV})",
                dir.display()
            )));
        }
        if create {
            std::fs::create_dir_all(dir.join(OBJECTS_DIR)).map_err(|e| StoreError::Other {
                service: "local".into(),
                code: "CreateDir".into(),
                message: format!("cannot create store directory {}: {e}", dir.display()),
            })?;
        }
        let db = SqliteStore::open(&db_path)?;
        let objects = FsObjectStore::new(dir.join(OBJECTS_DIR));
        Ok(LocalStore {
            dir: dir.to_path_buf(),
            db,
            objects,
        })
    }
}
