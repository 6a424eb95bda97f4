//! Where media bytes live: a local folder (the embedded default) or an S3 bucket, behind one
//! [`MediaStore`] that meters and hashes uploads, keeps recently sent files in memory, and hands
//! out links.
use std::{collections::VecDeque, io, sync::Mutex, time::Duration};

use bytes::Bytes;
use futures::{Stream, StreamExt, stream::BoxStream};
use sha2::{Digest, Sha256};

use super::{local::LocalMediaStore, s3::S3MediaStore};
use crate::config::{MediaSettings, MediaStoreKind};

/// A stream of file contents, for downloads.
pub type ByteStream = BoxStream<'static, io::Result<Bytes>>;

/// Why an upload was not stored. Nothing is left behind in the store in any case.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    /// The body passed the limit (checked while it streams, so nothing larger is buffered).
    #[error("the file is larger than {0} bytes")]
    TooLarge(u64),
    /// The client's body broke off or was malformed.
    #[error("the upload broke off: {0}")]
    Body(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

/// Why a stored object could not be read.
#[derive(Debug, thiserror::Error)]
pub enum GetError {
    /// No object under that key.
    #[error("no stored object {0}")]
    NotFound(String),
    /// The store failed (unreachable, denied): worth retrying later.
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

/// What an upload stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Bytes written.
    pub size: u64,
    /// Hex SHA-256 of the contents.
    pub sha256: String,
}

/// The two stores.
#[derive(Debug)]
pub(super) enum Backend {
    Local(LocalMediaStore),
    S3(S3MediaStore),
}

/// Media bytes by key, in the configured store.
#[derive(Debug)]
pub struct MediaStore {
    backend: Backend,
    cache: Mutex<Cache>,
}

impl MediaStore {
    /// The store `settings` choose; for S3, checks that the bucket answers.
    pub async fn from_settings(
        settings: &MediaSettings,
        data_dir: &std::path::Path,
    ) -> anyhow::Result<Self> {
        let backend = match settings.store {
            MediaStoreKind::Local => {
                let root = settings
                    .local_dir
                    .clone()
                    .unwrap_or_else(|| data_dir.join("media"));
                Backend::Local(LocalMediaStore::new(root)?)
            }
            MediaStoreKind::S3 => Backend::S3(S3MediaStore::connect(&settings.s3).await?),
        };
        Ok(Self {
            backend,
            cache: Mutex::new(Cache::new(settings.cache_bytes)),
        })
    }

    /// `local` or `s3`, for logs and `/readyz`.
    pub fn kind(&self) -> &'static str {
        match self.backend {
            Backend::Local(_) => "local",
            Backend::S3(_) => "s3",
        }
    }

    /// Streams `body` into the store under `key`, refusing it as soon as it passes `limit` bytes.
    pub async fn put<S, E>(
        &self,
        key: &str,
        content_type: &str,
        limit: u64,
        body: S,
    ) -> Result<Stored, PutError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let metered = body.map(|chunk| {
            let chunk = chunk.map_err(|e| PutError::Body(e.to_string()))?;
            size += chunk.len() as u64;
            if size > limit {
                return Err(PutError::TooLarge(limit));
            }
            hasher.update(&chunk);
            Ok(chunk)
        });
        match &self.backend {
            Backend::Local(store) => store.put(key, metered).await?,
            Backend::S3(store) => store.put(key, content_type, metered).await?,
        }
        Ok(Stored {
            size,
            sha256: hex::encode(hasher.finalize()),
        })
    }

    /// The whole object (for sending it to a provider); recently read files come from memory.
    pub async fn get(&self, key: &str) -> Result<Bytes, GetError> {
        if let Some(bytes) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
        {
            return Ok(bytes);
        }
        let bytes = match &self.backend {
            Backend::Local(store) => store.get(key).await?,
            Backend::S3(store) => store.get(key).await?,
        };
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, bytes.clone());
        Ok(bytes)
    }

    /// The object as a stream, for downloads.
    pub async fn open(&self, key: &str) -> Result<ByteStream, GetError> {
        match &self.backend {
            Backend::Local(store) => store.open(key).await,
            Backend::S3(store) => store.open(key).await,
        }
    }

    /// Removes the object (absent is fine).
    pub async fn delete(&self, key: &str) -> anyhow::Result<()> {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        match &self.backend {
            Backend::Local(store) => store.delete(key).await,
            Backend::S3(store) => store.delete(key).await,
        }
    }

    /// A URL anyone holding it can fetch the object from for `ttl`, straight from the store
    /// (S3 presigned GET); `None` when the store has no URLs of its own (the local folder: the
    /// server then signs a link to itself).
    pub async fn presigned_get(
        &self,
        key: &str,
        ttl: Duration,
        content_type: &str,
    ) -> anyhow::Result<Option<String>> {
        match &self.backend {
            Backend::Local(_) => Ok(None),
            Backend::S3(store) => store.presigned_get(key, ttl, content_type).await.map(Some),
        }
    }

    /// Whether the store answers (readiness).
    pub async fn check(&self) -> anyhow::Result<()> {
        match &self.backend {
            Backend::Local(store) => store.check().await,
            Backend::S3(store) => store.check().await,
        }
    }
}

/// Recently read objects, oldest evicted first, up to a total size. Objects never change
/// (keys are fresh ids), so nothing goes stale.
#[derive(Debug)]
struct Cache {
    capacity: usize,
    used: usize,
    entries: VecDeque<(String, Bytes)>,
}

impl Cache {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            used: 0,
            entries: VecDeque::new(),
        }
    }

    fn get(&self, key: &str) -> Option<Bytes> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, b)| b.clone())
    }

    fn insert(&mut self, key: &str, bytes: Bytes) {
        if bytes.len() > self.capacity / 4 || self.get(key).is_some() {
            return;
        }
        self.used += bytes.len();
        self.entries.push_back((key.to_owned(), bytes));
        while self.used > self.capacity {
            let Some((_, evicted)) = self.entries.pop_front() else {
                break;
            };
            self.used -= evicted.len();
        }
    }

    fn remove(&mut self, key: &str) {
        if let Some(at) = self.entries.iter().position(|(k, _)| k == key) {
            let (_, bytes) = self.entries.remove(at).expect("position is in range");
            self.used -= bytes.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_keeps_the_newest_files_within_its_size() {
        let mut cache = Cache::new(100);
        cache.insert("a", Bytes::from(vec![0; 20]));
        cache.insert("b", Bytes::from(vec![1; 20]));
        cache.insert("huge", Bytes::from(vec![2; 26]));
        assert!(cache.get("huge").is_none(), "over a quarter of the cache");
        for key in ["c", "d", "e"] {
            cache.insert(key, Bytes::from(vec![3; 20]));
        }
        cache.insert("f", Bytes::from(vec![4; 20]));
        assert!(cache.get("a").is_none(), "oldest evicted");
        assert_eq!(cache.get("f").map(|b| b.len()), Some(20));
        assert_eq!(cache.used, 100);
        cache.remove("f");
        assert_eq!(cache.used, 80);
        assert!(cache.get("f").is_none());
    }
}
