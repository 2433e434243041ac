//! `gs://bucket[/prefix]`: Google Cloud Storage, or an emulator named by `STORAGE_EMULATOR_HOST`.
//!
//! `object_store` speaks GCS's XML API: a PUT with `x-goog-if-generation-match: 0`
//! publishes (412 when the object exists, reported as `AlreadyExists`), and large objects
//! go up as XML multipart uploads. docs/stores.md lists what fake-gcs-server lacks of it.

use std::sync::Arc;

use object_store::StaticCredentialProvider;
use object_store::gcp::{
    GcpCredential, GcpSigningCredential, GoogleCloudStorageBuilder, ServiceAccountKey,
};

use super::StoreError;
use super::cloud;
use super::object::Parts;
use crate::env_vars::{Environment, GOOGLE_APPLICATION_CREDENTIALS, HOME, STORAGE_EMULATOR_HOST};

const HINT: &str = "check GOOGLE_APPLICATION_CREDENTIALS (a service-account key or \
                    `gcloud auth application-default login` file), or STORAGE_EMULATOR_HOST \
                    for an emulator";

/// When no credentials file is found the failure is usually the metadata lookup; say so.
const HINT_NO_FILE: &str = "GOOGLE_APPLICATION_CREDENTIALS is not set and there is no gcloud \
                            application-default file, so credentials were asked of the GCE \
                            metadata server; set GOOGLE_APPLICATION_CREDENTIALS to a \
                            service-account key file, or STORAGE_EMULATOR_HOST for an emulator";

/// Where `gcloud auth application-default login` leaves its credentials, below `HOME`.
const GCLOUD_ADC: &str = ".config/gcloud/application_default_credentials.json";

/// Builds the GCS store of `url`.
///
/// Credentials, in order: the file in `GOOGLE_APPLICATION_CREDENTIALS` (service account or
/// authorized user), gcloud's application-default file under `HOME`, else the GCE metadata
/// server (runners on Google Cloud). The file path is passed explicitly so the choice
/// follows ferry's environment snapshot rather than the process's.
pub(crate) fn build(raw: &str, url: &url::Url, env: &Environment) -> Result<Parts, StoreError> {
    let (bucket, prefix) = cloud::bucket_and_prefix(raw, url, "gs://my-bucket/some/prefix")?;
    let mut builder = GoogleCloudStorageBuilder::new()
        .with_bucket_name(&bucket)
        .with_retry(cloud::retry_config())
        .with_http_connector(cloud::Connector);

    let mut hint = HINT;
    let allow_http = if let Some(host) = env.get(STORAGE_EMULATOR_HOST) {
        // Clients accept both `host:port` and a URL here.
        let endpoint = if host.contains("://") {
            host.to_string()
        } else {
            format!("http://{host}")
        };
        let (parsed, http) =
            cloud::check_endpoint(raw, STORAGE_EMULATOR_HOST, &endpoint, true, HINT)?;
        builder = builder
            .with_base_url(parsed.as_str().trim_end_matches('/'))
            .with_credentials(Arc::new(StaticCredentialProvider::new(GcpCredential {
                bearer: String::new(),
            })))
            .with_signing_credentials(Arc::new(StaticCredentialProvider::new(
                GcpSigningCredential {
                    email: "ferry@emulator.invalid".into(),
                    private_key: Some(ServiceAccountKey::new(Box::new(EmulatorKey))),
                },
            )));
        http
    } else {
        let adc = env
            .get(GOOGLE_APPLICATION_CREDENTIALS)
            .map(str::to_string)
            .or_else(|| {
                let path = std::path::Path::new(env.get(HOME)?).join(GCLOUD_ADC);
                path.is_file().then(|| path.to_string_lossy().into_owned())
            });
        match adc {
            Some(path) => builder = builder.with_application_credentials(path),
            None => hint = HINT_NO_FILE,
        }
        false
    };

    let gcs = Arc::new(
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
        objects: gcs.clone(),
        signer: Some(gcs.clone()),
        local_root: None,
        prefix,
        hint,
        paged: Some(gcs),
    })
}

/// Signs links for an emulator, which serves them without checking the signature; without
/// a key `object_store` would ask Google's IAM `signBlob` service, which an emulator lacks.
struct EmulatorKey;

impl object_store::client::Signer for EmulatorKey {
    fn sign(&self, _string_to_sign: &[u8]) -> object_store::Result<Vec<u8>> {
        Ok(b"emulator".to_vec())
    }
}
