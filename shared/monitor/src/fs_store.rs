//! Filesystem object store: S3 keys as relative paths under a root directory. Writes go to a
//! temporary file and are renamed into place, so a reader never sees half an object and a
//! crash never leaves one. The one implementation of `--upload file:///DIR` (the agent, the
//! monitor example) and of the embedded local store (`spotfit-local` re-exports it): it lives
//! here, the lowest crate that all of them link, since the agent must not link SQLite.

use async_trait::async_trait;
use spotfit_core::ports::{ObjectStore, StoreError};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct FsObjectStore {
    root: PathBuf,
}

fn io_err(key: &str, e: std::io::Error) -> StoreError {
    StoreError::Other {
        service: "local-objects".into(),
        code: format!("{:?}", e.kind()),
        message: format!("{key}: {e}"),
    }
}

impl FsObjectStore {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Maps a key to a path, refusing keys that would escape the root.
    pub fn path_of(&self, key: &str) -> Result<PathBuf, StoreError> {
        let bad = key.is_empty()
            || key.starts_with('/')
            || key.contains('\0')
            || key.contains('\\')
            || key.split('/').any(|seg| seg == ".." || seg == ".");
        if bad {
            return Err(StoreError::Other {
                service: "local-objects".into(),
                code: "InvalidKey".into(),
                message: format!("object key {key:?} is not a relative S3-style key"),
            });
        }
        Ok(self.root.join(key))
    }

    fn put_sync(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.path_of(key)?;
        let dir = path.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(dir).map_err(|e| io_err(key, e))?;
        let tmp = dir.join(format!(
            ".{}.tmp-{}",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("obj"),
            std::process::id()
        ));
        let mut f = std::fs::File::create(&tmp).map_err(|e| io_err(key, e))?;
        f.write_all(bytes)
            .and_then(|_| f.sync_all())
            .map_err(|e| io_err(key, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io_err(key, e))
    }

    fn list_sync(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(prefix, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| io_err(prefix, e))?;
                let path = entry.path();
                let Ok(rel) = path.strip_prefix(&self.root) else {
                    continue;
                };
                let rel = rel.to_string_lossy().replace('\\', "/");
                if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    // Descend only into directories that can hold keys with this prefix.
                    let as_dir = format!("{rel}/");
                    if prefix.starts_with(&as_dir) || as_dir.starts_with(prefix) {
                        stack.push(path);
                    }
                } else if rel.starts_with(prefix) && !entry.file_name().to_string_lossy().starts_with('.') {
                    out.push(rel);
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

#[async_trait]
impl ObjectStore for FsObjectStore {
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.put_sync(key, &bytes)
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match std::fs::read(self.path_of(key)?) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(key, e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.list_sync(prefix)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use futures_executor::block_on;

    #[test]
    fn round_trips_lists_and_refuses_escaping_keys() {
        let d = tempfile::tempdir().unwrap();
        let s = FsObjectStore::new(d.path().to_path_buf());
        block_on(async {
            s.put("runs/a/x.json", b"1".to_vec()).await.unwrap();
            s.put("samples/b.gz", b"2".to_vec()).await.unwrap();
            assert_eq!(s.get("runs/a/x.json").await.unwrap().unwrap(), b"1");
            assert_eq!(s.get("runs/none").await.unwrap(), None);
            assert_eq!(s.list("runs/").await.unwrap(), vec!["runs/a/x.json".to_string()]);
            assert_eq!(s.list("").await.unwrap().len(), 2);
            assert!(s.put("../x", vec![]).await.is_err());
            assert!(s.put("/etc/x", vec![]).await.is_err());
        });
    }

    #[test]
    fn put_get_list_and_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsObjectStore::new(dir.path().to_path_buf());
        block_on(s.put("samples/job=a/dt=2026-01-01/run=r/part-00000.ndjson.gz", b"x".to_vec())).unwrap();
        block_on(s.put("samples/job=a/dt=2026-01-01/run=r/part-00000.ndjson.gz", b"y".to_vec())).unwrap();
        block_on(s.put("runs/job=a/dt=2026-01-01/r.json", b"{}".to_vec())).unwrap();
        assert_eq!(
            block_on(s.get("runs/job=a/dt=2026-01-01/r.json")).unwrap(),
            Some(b"{}".to_vec())
        );
        assert_eq!(block_on(s.get("runs/none")).unwrap(), None);
        let keys = block_on(s.list("samples/job=a/")).unwrap();
        assert_eq!(keys, vec!["samples/job=a/dt=2026-01-01/run=r/part-00000.ndjson.gz"]);
        assert_eq!(block_on(s.get(&keys[0])).unwrap(), Some(b"y".to_vec()));
    }

    #[test]
    fn refuses_keys_that_escape() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsObjectStore::new(dir.path().to_path_buf());
        for k in ["../x", "/etc/passwd", "a/../../b", ""] {
            assert!(block_on(s.put(k, vec![])).is_err(), "{k}");
        }
    }
}
