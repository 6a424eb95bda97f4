//! The local folder store: one file per key under `<data_dir>/media` (the embedded default).
use std::{io, path::PathBuf};

use anyhow::Context;
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use tokio::io::AsyncWriteExt;

use super::store::{ByteStream, GetError, PutError};

/// Files under one folder; writes go to `<key>.part` and are renamed when complete.
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

    /// Writes the stream to a temporary file, then renames it into place; a failed or refused
    /// upload leaves nothing behind.
    pub async fn put(
        &self,
        key: &str,
        mut body: impl Stream<Item = Result<Bytes, PutError>> + Unpin,
    ) -> Result<(), PutError> {
        let path = self.path(key)?;
        let tmp = path.with_extension("part");
        let written = async {
            let mut file = tokio::fs::File::create(&tmp)
                .await
                .context("creating media file")?;
            while let Some(chunk) = body.next().await {
                file.write_all(&chunk?)
                    .await
                    .context("writing media file")?;
            }
            file.sync_all().await.context("syncing media file")?;
            Ok::<_, PutError>(())
        }
        .await;
        if let Err(e) = written {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
        tokio::fs::rename(&tmp, &path)
            .await
            .context("storing media file")?;
        Ok(())
    }

    /// Reads the whole file.
    pub async fn get(&self, key: &str) -> Result<Bytes, GetError> {
        let path = self.path(key)?;
        match tokio::fs::read(&path).await {
            Ok(bytes) => Ok(Bytes::from(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(GetError::NotFound(key.into())),
            Err(e) => Err(anyhow::Error::new(e)
                .context(format!("reading media {key}"))
                .into()),
        }
    }

    /// The file as a stream of 64 KiB chunks.
    pub async fn open(&self, key: &str) -> Result<ByteStream, GetError> {
        let path = self.path(key)?;
        let file = match tokio::fs::File::open(&path).await {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(GetError::NotFound(key.into()));
            }
            Err(e) => return Err(anyhow::Error::new(e).into()),
        };
        Ok(tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024)
            .map_ok(Bytes::from)
            .boxed())
    }

    /// Removes the file (absent is fine).
    pub async fn delete(&self, key: &str) -> anyhow::Result<()> {
        match tokio::fs::remove_file(self.path(key)?).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(anyhow::Error::new(e).context(format!("deleting media {key}"))),
        }
    }

    /// The folder exists and is writable.
    pub async fn check(&self) -> anyhow::Result<()> {
        let meta = tokio::fs::metadata(&self.root)
            .await
            .with_context(|| format!("media folder {}", self.root.display()))?;
        anyhow::ensure!(
            meta.is_dir() && !meta.permissions().readonly(),
            "media folder {} is not a writable folder",
            self.root.display()
        );
        Ok(())
    }
}
