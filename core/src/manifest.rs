//! Manifests: the small JSON document that publishes an entry, and where entries live.
//!
//! Every manifest shares one envelope (format version, kind, creation, expiry, data object)
//! so that retention can read any of them; each mode adds its own fields beside it.
//! Data is written first and the manifest last, with a conditional create: an entry exists
//! exactly when its manifest does. `docs/FORMAT.md` describes the layout.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The store format of entries whose data is one object (format-1 archives, artifacts).
pub const FORMAT_VERSION: u32 = 1;

/// The store format of chunked entries (an index and shared packs). A ferry that reads only
/// format 1 passes over them, saying to upgrade, rather than misread them.
pub const CHUNKED_FORMAT_VERSION: u32 = 2;

/// The newest store format this version reads; it reads every older one too.
pub const MAX_FORMAT_VERSION: u32 = CHUNKED_FORMAT_VERSION;

/// The first folder of every object ferry writes.
pub const ROOT: &str = "ferry-v1";

/// Which mode an entry belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Cache,
    Layer,
    Artifact,
}

/// The data object of an entry: where it is, how big, and its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataRef {
    /// Path of the data object below the store's prefix.
    pub path: String,
    /// Size in bytes of the data object as stored.
    pub size: u64,
    /// SHA-256 of the data object as stored, lowercase hex.
    pub sha256: String,
}

/// What every manifest carries, whatever its kind.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// Store format version; a reader refuses versions it does not know.
    pub format: u32,
    pub kind: Kind,
    pub created: DateTime<Utc>,
    /// When the entry may be pruned; `None` keeps it until removed.
    pub expires: Option<DateTime<Utc>>,
    pub data: DataRef,
    /// How the data of a tree entry (a cache, a layer) is encoded; absent in artifacts, whose
    /// data is the file itself, and in manifests written before ferry recorded it (tar).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<crate::entry::Encoding>,
    /// Present when the publishing job held a signing key (`trust::sign`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<crate::trust::sign::Signature>,
    #[serde(flatten)]
    pub body: T,
}

/// The envelope alone, for code (retention) that reads manifests of every kind.
#[derive(Debug, Clone, Deserialize)]
pub struct Head {
    pub format: u32,
    pub kind: Kind,
    pub created: DateTime<Utc>,
    pub expires: Option<DateTime<Utc>>,
    pub data: DataRef,
}

/// Why a manifest could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest {path} is not valid: {source}; remove the entry and save it again")]
    Invalid {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "manifest {path} has store format {found}, this ferry reads formats 1 to {MAX_FORMAT_VERSION}; upgrade ferry"
    )]
    Version { path: String, found: u32 },
}

/// Serialises a manifest.
pub fn encode<T: Serialize>(manifest: &Envelope<T>) -> Bytes {
    Bytes::from(serde_json::to_vec_pretty(manifest).expect("manifests always serialise"))
}

/// Reads a manifest, checking its format version first.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], path: &str) -> Result<Envelope<T>, ManifestError> {
    #[derive(Deserialize)]
    struct Version {
        format: u32,
    }
    let v: Version = serde_json::from_slice(bytes).map_err(|source| ManifestError::Invalid {
        path: path.to_string(),
        source,
    })?;
    if v.format == 0 || v.format > MAX_FORMAT_VERSION {
        return Err(ManifestError::Version {
            path: path.to_string(),
            found: v.format,
        });
    }
    serde_json::from_slice(bytes).map_err(|source| ManifestError::Invalid {
        path: path.to_string(),
        source,
    })
}

/// The folder of one project: `ferry-v1/<project>`.
pub fn project_dir(project: &str) -> String {
    format!("{ROOT}/{}", crate::paths::encode_part(project))
}

/// How long the readable part of an object name may be before it is cut.
pub const NAME_CHARS: usize = 160;

/// Every character an object name made by [`object_name`] can hold, in byte order: what
/// [`crate::paths::encode_part`] keeps, its `=XX` escapes, and the `.` before the digest.
pub const NAME_ALPHABET: &str =
    "-.0123456789=ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz";

/// The object name of a key or path: its encoding (cut at [`NAME_CHARS`] on an escape
/// boundary) then `.` and 16 hex digits of the key's SHA-256, so names stay short enough for
/// every store while prefix matches can still be found by listing.
pub fn object_name(key: &str) -> String {
    let enc = crate::paths::encode_part(key);
    let cut = readable_prefix(&enc);
    let digest = Sha256::digest(key.as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("{cut}.{hex}")
}

/// The readable part of an encoded name: at most [`NAME_CHARS`] chars, never splitting `=XX`.
pub fn readable_prefix(enc: &str) -> &str {
    if enc.len() <= NAME_CHARS {
        return enc;
    }
    let mut cut = NAME_CHARS;
    for back in 1..=2 {
        if enc.as_bytes().get(NAME_CHARS - back) == Some(&b'=') {
            cut = NAME_CHARS - back;
        }
    }
    &enc[..cut]
}

/// The start every object name of a key starting with `prefix` shares: its encoding, cut as
/// names are cut. A store lists or looks up names by it; the key in each manifest decides.
pub fn name_prefix(prefix: &str) -> String {
    readable_prefix(&crate::paths::encode_part(prefix)).to_string()
}

/// True when the readable part of `name` allows its key to start with `prefix`; a `true`
/// for a cut name must be confirmed against the key in the manifest.
pub fn name_may_start_with(name: &str, prefix: &str) -> bool {
    let readable = name.split('.').next().unwrap_or("");
    let enc = crate::paths::encode_part(prefix);
    readable.starts_with(&enc) || (readable.len() >= NAME_CHARS - 2 && enc.starts_with(readable))
}

/// A new unique id for a data object or layer.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_of_every_key_with_a_prefix_starts_with_the_prefixs_name() {
        for (key, prefix) in [
            ("v1-deps-abc", "v1-deps-"),
            ("ä b/c", "ä "),
            (&*"k".repeat(400), &*"k".repeat(300)),
            (
                &*format!("{}=tail", "x".repeat(158)),
                &*format!("{}=", "x".repeat(158)),
            ),
        ] {
            assert!(
                object_name(key).starts_with(&name_prefix(prefix)),
                "{key:?} / {prefix:?}"
            );
        }
    }

    #[test]
    fn long_keys_get_short_names_that_still_match_prefixes() {
        let key = "x".repeat(500);
        let name = object_name(&key);
        assert!(name.len() < 200);
        assert!(name_may_start_with(&name, "xxx"));
        assert!(name_may_start_with(&name, &"x".repeat(300)));
        assert!(!name_may_start_with(&object_name("abc"), "abd"));
        assert!(name_may_start_with(
            &object_name("v1-linux-abc"),
            "v1-linux-"
        ));
    }
}
