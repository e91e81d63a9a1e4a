//! `--upload file:///dir`: objects as files under a directory, keys as relative paths (the
//! layout `spotfit-local` reads), so the agent can be tried without S3.

use spotfit_core::ports::{ObjectStore, StoreError};
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct DirStore(pub PathBuf);

fn err(key: &str, e: std::io::Error) -> StoreError {
    StoreError::Unavailable {
        service: "dir".into(),
        message: format!("{key}: {e}"),
    }
}

impl DirStore {
    /// The file for `key`; keys are the monitor's own (`samples/…`, `runs/…`), but one that
    /// would leave the directory is refused all the same.
    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        if key.starts_with('/') || key.split('/').any(|c| c == ".." || c.is_empty()) {
            return Err(StoreError::Other {
                service: "dir".into(),
                code: "InvalidKey".into(),
                message: format!("{key:?} is not a relative key"),
            });
        }
        Ok(self.0.join(key))
    }
}

#[async_trait::async_trait]
impl ObjectStore for DirStore {
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        let p = self.path(key)?;
        std::fs::create_dir_all(p.parent().unwrap_or(&self.0)).map_err(|e| err(key, e))?;
        // Write then rename: a reader never sees half an object.
        let tmp = p.with_extension("spotfit-tmp");
        std::fs::write(&tmp, bytes).map_err(|e| err(key, e))?;
        std::fs::rename(&tmp, &p).map_err(|e| err(key, e))
    }
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match std::fs::read(self.path(key)?) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(err(key, e)),
        }
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
            for e in std::fs::read_dir(dir)? {
                let e = e?;
                if e.file_type()?.is_dir() {
                    walk(root, &e.path(), out)?;
                } else if let Ok(rel) = e.path().strip_prefix(root) {
                    out.push(rel.to_string_lossy().into_owned());
                }
            }
            Ok(())
        }
        let mut keys = Vec::new();
        match walk(&self.0, &self.0, &mut keys) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(err(prefix, e)),
        }
        keys.retain(|k| k.starts_with(prefix) && !k.ends_with(".spotfit-tmp"));
        keys.sort();
        Ok(keys)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_lists_and_refuses_escaping_keys() {
        let d = tempfile::tempdir().unwrap();
        let s = DirStore(d.path().to_path_buf());
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
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
}
