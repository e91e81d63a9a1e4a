//! S3 object store: the bucket that holds samples, run summaries and exit markers.

use crate::errors::store_error;
use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use spotfit_core::ports::{ObjectStore, StoreError};

/// [`ObjectStore`] on one S3 bucket.
#[derive(Debug, Clone)]
pub struct S3ObjectStore {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3ObjectStore {
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }

    /// A client from the shared config; path-style addressing when an endpoint override is set
    /// (emulators serve buckets under the path, not as virtual hosts).
    pub fn client_from(sdk: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
        let path_style = sdk.endpoint_url().is_some();
        let conf = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(path_style)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }
}

#[async_trait]
impl ObjectStore for S3ObjectStore {
    #[tracing::instrument(skip(self, bytes), err, fields(bucket = %self.bucket, len = bytes.len()))]
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| store_error("s3", e))?;
        Ok(())
    }

    #[tracing::instrument(skip(self), err, fields(bucket = %self.bucket))]
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self.client.get_object().bucket(&self.bucket).key(key).send().await {
            Ok(out) => {
                let body = out.body.collect().await.map_err(|e| StoreError::Unavailable {
                    service: "s3".into(),
                    message: format!("reading body of {key}: {e}"),
                })?;
                Ok(Some(body.into_bytes().to_vec()))
            }
            Err(e) => {
                if e.as_service_error().is_some_and(|se| se.is_no_such_key()) {
                    return Ok(None);
                }
                Err(store_error("s3", e))
            }
        }
    }

    #[tracing::instrument(skip(self), err, fields(bucket = %self.bucket))]
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut keys = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| store_error("s3", e))?;
            keys.extend(page.contents().iter().filter_map(|o| o.key().map(str::to_string)));
        }
        keys.sort();
        Ok(keys)
    }
}
