//! The S3 store (AWS S3, or any S3-compatible server: MinIO, Garage, s3s-fs) through
//! `aws-sdk-s3`. Objects larger than one part go up as a multipart upload, so an upload never
//! holds more than `part_size_bytes` in memory.
use std::time::Duration;

use anyhow::Context;
use aws_sdk_s3::{
    Client,
    config::{Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation},
    error::DisplayErrorContext,
    presigning::PresigningConfig,
    primitives::ByteStream as S3Body,
    types::{CompletedMultipartUpload, CompletedPart},
};
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use secrecy::ExposeSecret;

use super::store::{ByteStream, GetError, PutError};
use crate::config::S3Settings;

/// A bucket, with an optional key prefix.
#[derive(Debug, Clone)]
pub struct S3MediaStore {
    client: Client,
    bucket: String,
    prefix: String,
    part_size: usize,
}

/// S3's smallest part (all but the last).
const MIN_PART: usize = 5 * 1024 * 1024;

fn sdk_error(e: impl std::error::Error) -> anyhow::Error {
    anyhow::anyhow!("{}", DisplayErrorContext(e))
}

impl S3MediaStore {
    /// Builds the client from settings (static keys when given, else the SDK's default chain:
    /// environment, profile, web identity, container or instance role) and checks the bucket.
    pub async fn connect(settings: &S3Settings) -> anyhow::Result<Self> {
        anyhow::ensure!(
            !settings.bucket.is_empty(),
            "media.store = \"s3\" needs media.s3.bucket"
        );
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(Region::new(settings.region.clone()));
        if let Some(endpoint) = &settings.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        match (&settings.access_key_id, &settings.secret_access_key) {
            (Some(id), Some(secret)) => {
                loader = loader.credentials_provider(Credentials::new(
                    id,
                    secret.expose_secret(),
                    None,
                    None,
                    "pregonero-settings",
                ));
            }
            (None, None) => {}
            _ => anyhow::bail!(
                "set both media.s3.access_key_id and media.s3.secret_access_key, or neither"
            ),
        }
        let sdk = loader.load().await;
        let mut config =
            aws_sdk_s3::config::Builder::from(&sdk).force_path_style(settings.force_path_style);
        if settings.endpoint.is_some() {
            // S3-compatible servers vary in their support of the SDK's default checksums.
            config = config
                .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
                .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        }
        let store = Self {
            client: Client::from_conf(config.build()),
            bucket: settings.bucket.clone(),
            prefix: settings.prefix.clone(),
            part_size: settings.part_size_bytes.max(MIN_PART),
        };
        if settings.create_bucket && store.check().await.is_err() {
            store
                .client
                .create_bucket()
                .bucket(&store.bucket)
                .send()
                .await
                .map_err(sdk_error)
                .with_context(|| format!("creating bucket {}", store.bucket))?;
        }
        store.check().await?;
        Ok(store)
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// One PutObject for a small body; a multipart upload (aborted on any failure) otherwise.
    pub async fn put(
        &self,
        key: &str,
        content_type: &str,
        mut body: impl Stream<Item = Result<Bytes, PutError>> + Unpin,
    ) -> Result<(), PutError> {
        let object = self.key(key);
        let mut buf = BytesMut::new();
        while buf.len() < self.part_size {
            match body.next().await {
                Some(chunk) => buf.extend_from_slice(&chunk?),
                None => {
                    self.client
                        .put_object()
                        .bucket(&self.bucket)
                        .key(&object)
                        .content_type(content_type)
                        .body(S3Body::from(buf.freeze()))
                        .send()
                        .await
                        .map_err(sdk_error)
                        .context("storing media in S3")?;
                    return Ok(());
                }
            }
        }
        let upload = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&object)
            .content_type(content_type)
            .send()
            .await
            .map_err(sdk_error)
            .context("starting a multipart upload")?;
        let upload_id = upload
            .upload_id()
            .context("S3 answered a multipart upload without an id")?
            .to_owned();
        match self.put_parts(&object, &upload_id, buf, body).await {
            Ok(()) => Ok(()),
            Err(e) => {
                if let Err(abort) = self
                    .client
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(&object)
                    .upload_id(&upload_id)
                    .send()
                    .await
                {
                    tracing::warn!(error = %DisplayErrorContext(abort), "could not abort a multipart upload; the bucket's lifecycle rule must clean it up");
                }
                Err(e)
            }
        }
    }

    async fn put_parts(
        &self,
        object: &str,
        upload_id: &str,
        mut buf: BytesMut,
        mut body: impl Stream<Item = Result<Bytes, PutError>> + Unpin,
    ) -> Result<(), PutError> {
        let mut parts = Vec::new();
        let mut ended = false;
        loop {
            while !ended && buf.len() < self.part_size {
                match body.next().await {
                    Some(chunk) => buf.extend_from_slice(&chunk?),
                    None => ended = true,
                }
            }
            if buf.is_empty() {
                break;
            }
            let number = i32::try_from(parts.len() + 1).context("too many parts")?;
            // A chunk may overshoot the part size; the rest goes in the next part.
            let part = buf.split_to(buf.len().min(self.part_size)).freeze();
            let sent = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(object)
                .upload_id(upload_id)
                .part_number(number)
                .body(S3Body::from(part))
                .send()
                .await
                .map_err(sdk_error)
                .with_context(|| format!("uploading part {number}"))?;
            parts.push(
                CompletedPart::builder()
                    .set_e_tag(sent.e_tag().map(str::to_owned))
                    .part_number(number)
                    .build(),
            );
        }
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(object)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(sdk_error)
            .context("completing a multipart upload")?;
        Ok(())
    }

    async fn get_object(
        &self,
        key: &str,
    ) -> Result<aws_sdk_s3::operation::get_object::GetObjectOutput, GetError> {
        self.client
            .get_object()
            .bucket(&self.bucket)
            .key(self.key(key))
            .send()
            .await
            .map_err(|e| {
                if e.as_service_error().is_some_and(|s| s.is_no_such_key()) {
                    GetError::NotFound(key.to_owned())
                } else {
                    GetError::Store(sdk_error(e).context(format!("reading media {key} from S3")))
                }
            })
    }

    /// The whole object.
    pub async fn get(&self, key: &str) -> Result<Bytes, GetError> {
        let out = self.get_object(key).await?;
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("reading media {key} from S3: {e}"))?;
        Ok(bytes.into_bytes())
    }

    /// The object as it arrives.
    pub async fn open(&self, key: &str) -> Result<ByteStream, GetError> {
        let body = self.get_object(key).await?.body;
        Ok(futures::stream::unfold(body, |mut body| async move {
            body.next()
                .await
                .map(|chunk| (chunk.map_err(std::io::Error::other), body))
        })
        .boxed())
    }

    /// Deletes the object (S3 answers success for an absent key).
    pub async fn delete(&self, key: &str) -> anyhow::Result<()> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.key(key))
            .send()
            .await
            .map_err(sdk_error)
            .with_context(|| format!("deleting media {key} from S3"))?;
        Ok(())
    }

    /// A presigned GET, served with the file's content type.
    pub async fn presigned_get(
        &self,
        key: &str,
        ttl: Duration,
        content_type: &str,
    ) -> anyhow::Result<String> {
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.key(key))
            .response_content_type(content_type)
            .presigned(PresigningConfig::expires_in(ttl)?)
            .await
            .map_err(sdk_error)?;
        Ok(request.uri().to_owned())
    }

    /// The bucket exists and the credentials may use it.
    pub async fn check(&self) -> anyhow::Result<()> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(sdk_error)
            .with_context(|| format!("S3 bucket {} is not reachable", self.bucket))?;
        Ok(())
    }
}
