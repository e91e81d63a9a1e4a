//! spotfit-local: the embedded default. Everything `spotfit run` stores lives in one directory:
//! `spotfit.db` (SQLite: profiles, runs, capacity marks) and `objects/` (the S3 bucket's key
//! layout on disk, so the same Athena/DuckDB queries read both).

pub mod launcher;
pub mod sqlite;

pub use launcher::{LocalLauncher, LocalRunSettings};
pub use spotfit_monitor::fs_store::FsObjectStore;
pub use sqlite::{Access, SqliteStore};

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
    /// Opens the store in `dir`: [`Access::ReadWrite`] creates a missing store;
    /// [`Access::ReadOnly`] refuses a missing one (read-only commands must not litter empty
    /// stores around) and never writes. Besides what [`SqliteStore::open_with`] refuses, a
    /// zero-length database beside stored objects is refused: the database was truncated or
    /// replaced, and starting a new one would orphan every object.
    pub fn open(dir: &Path, access: Access) -> Result<LocalStore, StoreError> {
        let db_path = dir.join(DB_FILE);
        let objects = dir.join(OBJECTS_DIR);
        let meta = std::fs::symlink_metadata(&db_path).ok();
        if access == Access::ReadOnly && meta.is_none() {
            return Err(StoreError::Missing(format!(
                "no spotfit store at {} (run `spotfit run` first, or pass --store DIR / set {STORE_ENV})",
                dir.display()
            )));
        }
        let empty_db = meta.as_ref().is_some_and(|m| m.file_type().is_file() && m.len() == 0);
        let has_objects = std::fs::read_dir(&objects).is_ok_and(|mut d| d.next().is_some());
        if empty_db && has_objects {
            return Err(StoreError::Corrupt {
                key: db_path.display().to_string(),
                reason: format!(
                    "the database is empty (0 bytes) but {} holds objects: it was truncated or replaced; \
                     restore it, or move the store directory aside to start a new one (nothing was changed)",
                    objects.display()
                ),
            });
        }
        let create_dir = |path: &Path| {
            std::fs::create_dir_all(path).map_err(|e| StoreError::Other {
                service: "local".into(),
                code: "CreateDir".into(),
                message: format!("cannot create store directory {}: {e}", path.display()),
            })
        };
        // The database is opened (and a bad one refused) before objects/ is made, so that a
        // refused open leaves the directory as it was. The directory itself has to exist for
        // SQLite to create a new file in it; refusing a bad database needs the file, hence the
        // directory, to be there already.
        if access == Access::ReadWrite {
            create_dir(dir)?;
        }
        let db = SqliteStore::open_with(&db_path, access)?;
        if access == Access::ReadWrite {
            create_dir(&objects)?;
        }
        Ok(LocalStore {
            dir: dir.to_path_buf(),
            db,
            objects: FsObjectStore::new(objects),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use futures_executor::block_on;
    use spotfit_core::ports::{ObjectStore, ProfileStore};
    use spotfit_core::profile::JobProfile;
    use std::os::unix::fs::PermissionsExt;

    /// Every entry under `dir` (recursively), following nothing: a file with its bytes, a link
    /// with its target, a directory as itself (so that one left behind, empty, shows).
    fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                let m = std::fs::symlink_metadata(&p).unwrap();
                if m.is_dir() {
                    out.push((p.clone(), b"(directory)".to_vec()));
                    stack.push(p);
                } else if m.file_type().is_symlink() {
                    out.push((
                        p.clone(),
                        std::fs::read_link(&p).unwrap().into_os_string().into_encoded_bytes(),
                    ));
                } else {
                    out.push((p.clone(), std::fs::read(&p).unwrap()));
                }
            }
        }
        out.sort();
        out
    }

    fn new_store(dir: &Path) {
        let s = LocalStore::open(dir, Access::ReadWrite).unwrap();
        let mut p = JobProfile::new("j");
        p.version = 1;
        block_on(s.db.put_if_version(&p, None)).unwrap();
        block_on(s.objects.put("runs/j/r1/summary.json", b"{}".to_vec())).unwrap();
    }

    #[test]
    fn a_symlinked_database_is_refused_and_its_target_left_byte_identical() {
        // GIVEN spotfit.db is a link to another file (a store elsewhere, or a victim file)
        let dir = tempfile::tempdir().unwrap();
        let victim_dir = tempfile::tempdir().unwrap();
        new_store(victim_dir.path());
        let victim = victim_dir.path().join(DB_FILE);
        std::os::unix::fs::symlink(&victim, dir.path().join(DB_FILE)).unwrap();
        let before = snapshot(victim_dir.path());
        for access in [Access::ReadOnly, Access::ReadWrite] {
            // WHEN opened
            let err = LocalStore::open(dir.path(), access).unwrap_err();
            // THEN a clear error, and the target is untouched
            assert!(err.to_string().contains("symbolic link"), "{err}");
            assert_eq!(snapshot(victim_dir.path()), before);
        }
    }

    #[test]
    fn a_zero_length_database_beside_objects_is_refused_and_stays_empty() {
        let dir = tempfile::tempdir().unwrap();
        new_store(dir.path());
        for f in ["spotfit.db-wal", "spotfit.db-shm"] {
            let _ = std::fs::remove_file(dir.path().join(f));
        }
        std::fs::write(dir.path().join(DB_FILE), b"").unwrap();
        let before = snapshot(dir.path());
        for access in [Access::ReadOnly, Access::ReadWrite] {
            let err = LocalStore::open(dir.path(), access).unwrap_err();
            assert!(err.to_string().contains("empty (0 bytes)"), "{err}");
            assert_eq!(snapshot(dir.path()), before);
        }
    }

    #[test]
    fn a_foreign_sqlite_file_with_a_profiles_table_is_refused_and_left_byte_identical() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DB_FILE);
        {
            let c = rusqlite::Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE profiles (id INTEGER PRIMARY KEY, email TEXT); INSERT INTO profiles VALUES (1, 'a@b');",
            )
            .unwrap();
        }
        let before = snapshot(dir.path());
        for access in [Access::ReadOnly, Access::ReadWrite] {
            let err = LocalStore::open(dir.path(), access).unwrap_err();
            assert!(err.to_string().contains("not a spotfit store"), "{err}");
            assert_eq!(snapshot(dir.path()), before);
        }
        // AND one that carries another application's id, even with our table names
        let other = dir.path().join("other");
        std::fs::create_dir(&other).unwrap();
        new_store(&other);
        {
            let c = rusqlite::Connection::open(other.join(DB_FILE)).unwrap();
            c.execute_batch("PRAGMA application_id = 42;").unwrap();
        }
        let err = LocalStore::open(&other, Access::ReadWrite).unwrap_err();
        assert!(err.to_string().contains("application id"), "{err}");
    }

    #[test]
    fn a_failed_read_write_open_leaves_the_store_directory_as_it_was() {
        // GIVEN a store directory holding a file that is not a database (and no objects/)
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(DB_FILE), b"not a database, but someone's notes\n").unwrap();
        let before = snapshot(dir.path());
        // WHEN opened for writing THEN refused
        let err = LocalStore::open(dir.path(), Access::ReadWrite).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        // AND nothing was created, changed or removed, no objects/ directory included
        assert_eq!(snapshot(dir.path()), before);
        assert!(!dir.path().join(OBJECTS_DIR).exists());
    }

    #[test]
    fn a_new_store_directory_is_created_with_its_objects_directory() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("a").join("b");
        LocalStore::open(&store, Access::ReadWrite).unwrap();
        assert!(store.join(DB_FILE).is_file() && store.join(OBJECTS_DIR).is_dir());
    }

    #[test]
    fn a_read_only_database_is_refused_for_writing_and_left_byte_identical() {
        let dir = tempfile::tempdir().unwrap();
        new_store(dir.path());
        let path = dir.path().join(DB_FILE);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
        let before = snapshot(dir.path());
        let err = LocalStore::open(dir.path(), Access::ReadWrite).unwrap_err();
        assert!(err.to_string().contains("read-only"), "{err}");
        assert_eq!(snapshot(dir.path()), before);
        // AND read-only commands still read it
        let s = LocalStore::open(dir.path(), Access::ReadOnly).unwrap();
        assert_eq!(block_on(ProfileStore::get(&s.db, "j")).unwrap().unwrap().version, 1);
    }

    #[test]
    fn read_only_commands_never_open_for_writing() {
        // GIVEN a store that was closed cleanly
        let dir = tempfile::tempdir().unwrap();
        new_store(dir.path());
        let db = std::fs::read(dir.path().join(DB_FILE)).unwrap();
        // WHEN a read-only command opens it and tries to write through it
        let s = LocalStore::open(dir.path(), Access::ReadOnly).unwrap();
        let mut p = JobProfile::new("k");
        p.version = 1;
        let err = block_on(s.db.put_if_version(&p, None)).unwrap_err();
        // THEN the write is refused by SQLite itself and the database file is unchanged
        assert!(err.to_string().to_lowercase().contains("readonly"), "{err}");
        drop(s);
        assert_eq!(std::fs::read(dir.path().join(DB_FILE)).unwrap(), db);
        // AND a missing store is an error that creates nothing
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            LocalStore::open(empty.path(), Access::ReadOnly),
            Err(StoreError::Missing(_))
        ));
        assert!(snapshot(empty.path()).is_empty());
        assert!(std::fs::read_dir(empty.path()).unwrap().next().is_none());
    }
}
