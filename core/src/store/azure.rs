//! `az://container[/prefix]`: Azure Blob Storage, or the Azurite emulator.
//!
//! Publishing is a PUT with `If-None-Match: *`; Azure answers 409 `BlobAlreadyExists` when
//! the blob exists, which `object_store` reports as `AlreadyExists`.

use std::sync::Arc;

use object_store::azure::MicrosoftAzureBuilder;

use super::StoreError;
use super::cloud;
use super::object::Parts;
use crate::env_vars::{
    AZURE_STORAGE_ACCOUNT_KEY, AZURE_STORAGE_ACCOUNT_NAME, AZURE_STORAGE_CONNECTION_STRING,
    AZURE_STORAGE_USE_EMULATOR, AZURITE_BLOB_STORAGE_URL, Environment,
};

const HINT: &str = "check AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT_NAME and \
                    AZURE_STORAGE_ACCOUNT_KEY, or AZURE_STORAGE_USE_EMULATOR for Azurite";

/// Azurite's account and its published key (documented by Microsoft, not a secret).
const EMULATOR_ACCOUNT: &str = "devstoreaccount1";
const EMULATOR_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const EMULATOR_URL: &str = "http://127.0.0.1:10000";

/// Where and as whom to connect, from one of the three ways Azure tools are configured.
#[derive(Debug, Default, PartialEq)]
struct Account {
    name: Option<String>,
    key: Option<String>,
    sas: Option<String>,
    /// The blob service URL; for Azurite it ends in the account (`http://host:port/account`).
    endpoint: Option<String>,
    /// An explicit emulator setting: plain http is allowed to any host.
    emulator: bool,
}

/// Builds the Azure store of `url`.
///
/// Settings, first found wins: `AZURE_STORAGE_CONNECTION_STRING`; then
/// `AZURE_STORAGE_USE_EMULATOR` (Azurite at `AZURITE_BLOB_STORAGE_URL`, default
/// 127.0.0.1:10000); then `AZURE_STORAGE_ACCOUNT_NAME` with `AZURE_STORAGE_ACCOUNT_KEY`.
/// With a name and no key, `object_store` looks for a managed identity.
///
/// Azurite is reached as an ordinary account whose endpoint includes the account name,
/// rather than through `object_store`'s emulator switch, which reads its URL from the
/// process environment instead of ferry's snapshot.
pub(crate) fn build(raw: &str, url: &url::Url, env: &Environment) -> Result<Parts, StoreError> {
    let (container, prefix) = cloud::bucket_and_prefix(raw, url, "az://my-container/some/prefix")?;
    let account = account(env).map_err(|reason| StoreError::Open {
        url: raw.to_string(),
        reason,
        hint: HINT,
    })?;
    let Some(name) = account.name else {
        return Err(StoreError::Open {
            url: raw.to_string(),
            reason: "no storage account is configured".into(),
            hint: HINT,
        });
    };
    let mut builder = MicrosoftAzureBuilder::new()
        .with_container_name(&container)
        .with_account(&name)
        .with_retry(cloud::retry_config())
        .with_http_connector(cloud::Connector);
    if let Some(key) = account.key {
        builder = builder.with_access_key(key);
    }
    if let Some(sas) = account.sas {
        builder = builder.with_config(object_store::azure::AzureConfigKey::SasKey, sas);
    }
    let mut allow_http = false;
    if let Some(endpoint) = account.endpoint {
        let var = if account.emulator && env.get(AZURE_STORAGE_CONNECTION_STRING).is_none() {
            AZURITE_BLOB_STORAGE_URL
        } else {
            AZURE_STORAGE_CONNECTION_STRING
        };
        let (parsed, http) = cloud::check_endpoint(raw, var, &endpoint, account.emulator, HINT)?;
        allow_http = http;
        builder = builder.with_endpoint(parsed.as_str().trim_end_matches('/').to_string());
    }

    let azure = Arc::new(
        builder
            .with_client_options(cloud::client_options(allow_http))
            .build()
            .map_err(|e| StoreError::Open {
                url: raw.to_string(),
                reason: e.to_string(),
                hint: HINT,
            })?,
    );
    Ok(Parts {
        objects: azure.clone(),
        signer: Some(azure.clone()),
        local_root: None,
        prefix,
        hint: HINT,
        paged: Some(azure),
    })
}

fn account(env: &Environment) -> Result<Account, String> {
    if let Some(cs) = env.get(AZURE_STORAGE_CONNECTION_STRING) {
        return from_connection_string(cs);
    }
    if env.is_true(AZURE_STORAGE_USE_EMULATOR) {
        let name = env
            .get(AZURE_STORAGE_ACCOUNT_NAME)
            .unwrap_or(EMULATOR_ACCOUNT)
            .to_string();
        let base = env.get(AZURITE_BLOB_STORAGE_URL).unwrap_or(EMULATOR_URL);
        return Ok(Account {
            endpoint: Some(format!("{}/{name}", base.trim_end_matches('/'))),
            key: Some(
                env.get(AZURE_STORAGE_ACCOUNT_KEY)
                    .unwrap_or(EMULATOR_KEY)
                    .to_string(),
            ),
            name: Some(name),
            sas: None,
            emulator: true,
        });
    }
    Ok(Account {
        name: env.get(AZURE_STORAGE_ACCOUNT_NAME).map(str::to_string),
        key: env.get(AZURE_STORAGE_ACCOUNT_KEY).map(str::to_string),
        ..Account::default()
    })
}

/// Reads an Azure connection string (`Key=Value;...`, values may contain `=`).
///
/// Understood: `AccountName`, `AccountKey`, `SharedAccessSignature`, `BlobEndpoint`,
/// `DefaultEndpointsProtocol` with `EndpointSuffix` (to make the endpoint when
/// `BlobEndpoint` is absent) and `UseDevelopmentStorage=true` (Azurite's defaults).
fn from_connection_string(cs: &str) -> Result<Account, String> {
    let mut fields = std::collections::BTreeMap::new();
    for part in cs.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').ok_or_else(|| {
            format!("AZURE_STORAGE_CONNECTION_STRING has {part:?}, which is not Key=Value")
        })?;
        fields.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    let get = |k: &str| fields.get(k).cloned();
    if get("usedevelopmentstorage").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Ok(Account {
            name: Some(EMULATOR_ACCOUNT.into()),
            key: Some(EMULATOR_KEY.into()),
            endpoint: Some(format!("{EMULATOR_URL}/{EMULATOR_ACCOUNT}")),
            sas: None,
            emulator: true,
        });
    }
    let name = get("accountname");
    let endpoint = match get("blobendpoint") {
        Some(e) => Some(e),
        None => match (&name, get("endpointsuffix")) {
            (Some(n), Some(suffix)) => {
                let proto = get("defaultendpointsprotocol").unwrap_or_else(|| "https".into());
                Some(format!("{proto}://{n}.blob.{suffix}"))
            }
            _ => None,
        },
    };
    let name = match (name, &endpoint) {
        (Some(n), _) => Some(n),
        // An account-less string (SAS with a BlobEndpoint): the account is the host's first label.
        (None, Some(e)) => url::Url::parse(e).ok().and_then(|u| {
            u.host_str()
                .and_then(|h| h.split('.').next())
                .map(str::to_string)
        }),
        (None, None) => None,
    };
    if name.is_none() {
        return Err("AZURE_STORAGE_CONNECTION_STRING names no AccountName or BlobEndpoint".into());
    }
    Ok(Account {
        name,
        key: get("accountkey"),
        sas: get("sharedaccesssignature"),
        endpoint,
        emulator: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_string_with_blob_endpoint() {
        let a = from_connection_string(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=abc==;\
             BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;",
        )
        .expect("valid");
        assert_eq!(a.name.as_deref(), Some("devstoreaccount1"));
        assert_eq!(a.key.as_deref(), Some("abc=="));
        assert_eq!(
            a.endpoint.as_deref(),
            Some("http://127.0.0.1:10000/devstoreaccount1")
        );
    }

    #[test]
    fn connection_string_of_a_cloud_account() {
        let a = from_connection_string(
            "DefaultEndpointsProtocol=https;AccountName=acme;AccountKey=k/y+z==;EndpointSuffix=core.windows.net",
        )
        .expect("valid");
        assert_eq!(
            a.endpoint.as_deref(),
            Some("https://acme.blob.core.windows.net")
        );
        assert_eq!(a.key.as_deref(), Some("k/y+z=="));
        assert!(!a.emulator);
    }

    #[test]
    fn connection_string_for_development_storage() {
        let a = from_connection_string("UseDevelopmentStorage=true").expect("valid");
        assert_eq!(a.name.as_deref(), Some(EMULATOR_ACCOUNT));
        assert!(a.emulator);
    }

    #[test]
    fn connection_string_with_sas_only() {
        let a = from_connection_string("BlobEndpoint=https://acme.blob.core.windows.net;SharedAccessSignature=sv=2022&sig=x%3D")
            .expect("valid");
        assert_eq!(a.name.as_deref(), Some("acme"));
        assert_eq!(a.sas.as_deref(), Some("sv=2022&sig=x%3D"));
    }

    #[test]
    fn bad_connection_strings() {
        assert!(from_connection_string("nonsense").is_err());
        assert!(from_connection_string("AccountKey=abc").is_err());
    }

    #[test]
    fn emulator_from_variables() {
        let env = Environment::from_pairs([
            (AZURE_STORAGE_USE_EMULATOR, "true"),
            (AZURITE_BLOB_STORAGE_URL, "http://azurite:10000/"),
        ]);
        let a = account(&env).expect("valid");
        assert_eq!(
            a.endpoint.as_deref(),
            Some("http://azurite:10000/devstoreaccount1")
        );
        assert_eq!(a.key.as_deref(), Some(EMULATOR_KEY));
        assert!(a.emulator);
    }
}
