//! `s3://bucket[/prefix]`: Amazon S3 and S3-compatible stores (MinIO, R2, Ceph, SeaweedFS,
//! MiniStack, moto).
//!
//! Publishing relies on `If-None-Match: *` on PUT (conditional writes, which AWS, R2, MinIO
//! and Ceph honour with 412), so `object_store`'s `ETagMatch` mode is set explicitly: with
//! it `PutMode::Create` fails with `AlreadyExists` rather than overwriting.

use std::sync::Arc;

use object_store::aws::{AmazonS3Builder, S3ConditionalPut};

use super::StoreError;
use super::cloud;
use super::object::Parts;
use crate::env_vars::{
    AWS_ACCESS_KEY_ID, AWS_DEFAULT_REGION, AWS_ENDPOINT_URL, AWS_REGION, AWS_SECRET_ACCESS_KEY,
    AWS_SESSION_TOKEN, Environment,
};

const HINT: &str = "check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN, \
                    AWS_REGION (or AWS_DEFAULT_REGION), and AWS_ENDPOINT_URL for an \
                    S3-compatible server";
/// When no key is set the failure is usually the instance-metadata lookup; say so.
const HINT_NO_KEY: &str = "AWS_ACCESS_KEY_ID is not set, so credentials were asked of the \
                           EC2/ECS instance metadata service; set AWS_ACCESS_KEY_ID, \
                           AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), or run on an instance \
                           with a role; check AWS_REGION (or AWS_DEFAULT_REGION), and \
                           AWS_ENDPOINT_URL for an S3-compatible server";

/// Builds the S3 store of `url`.
///
/// Without `AWS_ACCESS_KEY_ID`, `object_store` asks the EC2/ECS instance metadata service,
/// which is how self-hosted runners on AWS get credentials.
///
/// With `AWS_ENDPOINT_URL`, requests are path-style (`endpoint/bucket/key`), which every
/// S3-compatible server accepts; without it, AWS is addressed virtual-host style
/// (`bucket.s3.region.amazonaws.com`), which AWS recommends, except for bucket names with
/// dots, whose virtual hosts the AWS certificate does not cover.
pub(crate) fn build(raw: &str, url: &url::Url, env: &Environment) -> Result<Parts, StoreError> {
    let (bucket, prefix) = cloud::bucket_and_prefix(raw, url, "s3://my-bucket/some/prefix")?;
    let hint = if env.get(AWS_ACCESS_KEY_ID).is_some() {
        HINT
    } else {
        HINT_NO_KEY
    };
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(&bucket)
        .with_conditional_put(S3ConditionalPut::ETagMatch)
        .with_retry(cloud::retry_config())
        .with_http_connector(cloud::Connector);

    if let Some(v) = env.get(AWS_ACCESS_KEY_ID) {
        builder = builder.with_access_key_id(v);
    }
    if let Some(v) = env.get(AWS_SECRET_ACCESS_KEY) {
        builder = builder.with_secret_access_key(v);
    }
    if let Some(v) = env.get(AWS_SESSION_TOKEN) {
        builder = builder.with_token(v);
    }
    if let Some(v) = env.get(AWS_REGION).or_else(|| env.get(AWS_DEFAULT_REGION)) {
        builder = builder.with_region(v);
    }

    let allow_http = match env.get(AWS_ENDPOINT_URL) {
        Some(endpoint) => {
            let (parsed, http) =
                cloud::check_endpoint(raw, AWS_ENDPOINT_URL, endpoint, false, hint)?;
            builder = builder
                .with_endpoint(parsed.as_str().trim_end_matches('/'))
                .with_virtual_hosted_style_request(false);
            http
        }
        None => {
            builder = builder.with_virtual_hosted_style_request(!bucket.contains('.'));
            false
        }
    };

    let s3 = Arc::new(
        builder
            .with_client_options(cloud::client_options(allow_http))
            .build()
            .map_err(|e| StoreError::Open {
                url: raw.to_string(),
                reason: e.to_string(),
                hint,
            })?,
    );
    Ok(Parts {
        objects: s3.clone(),
        signer: Some(s3.clone()),
        local_root: None,
        prefix,
        hint,
        paged: Some(s3),
    })
}
