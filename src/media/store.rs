//! A media store on the local filesystem, one file per key.
use std::path::PathBuf;

use anyhow::Context;
use bytes::Bytes;

/// Files under `<data_dir>/media/<key>`.
#[derive(Debug, Clone)]
pub struct LocalMediaStore {
    root: PathBuf,
}

impl LocalMediaStore {
    /// A store rooted at `root` (created if missing).
    pub fn new(root: PathBuf) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&root)
            .with_context(|| format!("could not create {}", root.display()))?;
        Ok(Self { root })
    }

    fn path(&self, key: &str) -> anyhow::Result<PathBuf> {
        anyhow::ensure!(
            !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
            "invalid media key"
        );
        Ok(self.root.join(key))
    }

    /// Writes the object atomically (temp file, then rename).
    pub async fn put(&self, key: &str, bytes: Bytes) -> anyhow::Result<()> {
        let path = self.path(key)?;
        let tmp = path.with_extension("part");
        tokio::fs::write(&tmp, &bytes)
            .await
            .context("writing media")?;
        tokio::fs::rename(&tmp, &path)
            .await
            .context("storing media")?;
        Ok(())
    }

    /// Reads the object.
    pub async fn get(&self, key: &str) -> anyhow::Result<Bytes> {
        let path = self.path(key)?;
        Ok(Bytes::from(
            tokio::fs::read(&path)
                .await
                .with_context(|| format!("reading media {key}"))?,
        ))
    }
}
