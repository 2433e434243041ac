//! Signed entries. A job holding an ed25519 key (`FERRY_SIGNING_KEY`) signs every manifest it
//! publishes; a job given trusted public keys (`FERRY_TRUSTED_KEYS`) accepts only manifests
//! signed by one of them. The signature covers the whole manifest, so every field a restore
//! trusts (key, roots, links, the data's size and digest, expiry) is covered: the message is
//! the manifest's JSON without its `signature` field, in canonical form (object keys sorted,
//! no spaces). Trusted branches hold the private key; pull requests only the public one, so
//! nothing they write is restored by a trusted job.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How a secret key is written: this prefix, then 64 hex digits (the 32-byte seed).
pub const SECRET_PREFIX: &str = "ferry-ed25519-secret:";
/// How a public key is written: this prefix, then 64 hex digits.
pub const PUBLIC_PREFIX: &str = "ferry-ed25519:";

/// The `signature` field of a signed manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// The signer's public key, as [`PUBLIC_PREFIX`] text.
    pub key: String,
    /// The ed25519 signature, 128 hex digits.
    pub sig: String,
}

/// Why a key could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "{var} does not hold an ed25519 {what} key: expected `{prefix}` and 64 hex digits (`ferry keygen` prints a pair)"
    )]
    Malformed {
        var: &'static str,
        what: &'static str,
        prefix: &'static str,
    },
    #[error("failed to generate a key: the system's random source failed: {0}")]
    Random(String),
}

/// Why a manifest is not accepted under the trusted keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Untrusted {
    Unsigned,
    UntrustedKey { key: String },
    BadSignature { key: String },
    Unreadable,
}

impl fmt::Display for Untrusted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Untrusted::Unsigned => f.write_str("it is not signed, and FERRY_TRUSTED_KEYS is set"),
            Untrusted::UntrustedKey { key } => write!(
                f,
                "it is signed by {key}, which is not in FERRY_TRUSTED_KEYS"
            ),
            Untrusted::BadSignature { key } => write!(
                f,
                "its signature by {key} does not match its contents (it was changed after signing)"
            ),
            Untrusted::Unreadable => {
                f.write_str("it is not a JSON object, so it cannot be checked")
            }
        }
    }
}

/// A key that signs manifests.
pub struct Signer {
    key: SigningKey,
    public: String,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("public", &self.public)
            .finish()
    }
}

impl Signer {
    /// Reads a secret key as `ferry keygen` prints it.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let malformed = || KeyError::Malformed {
            var: "FERRY_SIGNING_KEY",
            what: "secret",
            prefix: SECRET_PREFIX,
        };
        let seed = text
            .trim()
            .strip_prefix(SECRET_PREFIX)
            .and_then(unhex32)
            .ok_or_else(malformed)?;
        let key = SigningKey::from_bytes(&seed);
        let public = public_text(&key.verifying_key());
        Ok(Self { key, public })
    }

    /// A new key pair: the secret and the public key, as text.
    pub fn generate() -> Result<(String, String), KeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
        let key = SigningKey::from_bytes(&seed);
        Ok((
            format!("{SECRET_PREFIX}{}", hex(&seed)),
            public_text(&key.verifying_key()),
        ))
    }

    /// The public key, as text.
    pub fn public_key(&self) -> &str {
        &self.public
    }

    /// Signs a manifest's JSON: returns it with a `signature` field added (any earlier
    /// signature replaced). A document that is not a JSON object is returned unchanged.
    pub fn sign(&self, manifest: &[u8]) -> Bytes {
        let Ok(Value::Object(mut map)) = serde_json::from_slice::<Value>(manifest) else {
            return Bytes::copy_from_slice(manifest);
        };
        map.remove("signature");
        let message = canonical(&Value::Object(map.clone()));
        let sig = self.key.sign(&message);
        let signature = Signature {
            key: self.public.clone(),
            sig: hex(&sig.to_bytes()),
        };
        map.insert(
            "signature".into(),
            serde_json::to_value(signature).expect("a signature serialises"),
        );
        Bytes::from(
            serde_json::to_vec_pretty(&Value::Object(map)).expect("a JSON value serialises"),
        )
    }
}

/// Public keys whose signatures a job accepts.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys {
    keys: Vec<(String, VerifyingKey)>,
}

impl TrustedKeys {
    /// Reads keys separated by commas, spaces or newlines.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let mut keys = Vec::new();
        for word in text.split(|c: char| c == ',' || c.is_whitespace()) {
            if word.is_empty() {
                continue;
            }
            let key = word
                .strip_prefix(PUBLIC_PREFIX)
                .and_then(unhex32)
                .and_then(|b| VerifyingKey::from_bytes(&b).ok())
                .ok_or(KeyError::Malformed {
                    var: "FERRY_TRUSTED_KEYS",
                    what: "public",
                    prefix: PUBLIC_PREFIX,
                })?;
            keys.push((public_text(&key), key));
        }
        Ok(Self { keys })
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Checks a manifest's signature against these keys.
    pub fn verify(&self, manifest: &[u8]) -> Result<String, Untrusted> {
        let Ok(Value::Object(mut map)) = serde_json::from_slice::<Value>(manifest) else {
            return Err(Untrusted::Unreadable);
        };
        let signature: Signature = match map.remove("signature") {
            Some(v) => serde_json::from_value(v).map_err(|_| Untrusted::Unsigned)?,
            None => return Err(Untrusted::Unsigned),
        };
        let Some((name, key)) = self.keys.iter().find(|(name, _)| *name == signature.key) else {
            return Err(Untrusted::UntrustedKey { key: signature.key });
        };
        let bad = || Untrusted::BadSignature { key: name.clone() };
        let bytes = unhex(&signature.sig).ok_or_else(bad)?;
        let sig = ed25519_dalek::Signature::from_slice(&bytes).map_err(|_| bad())?;
        key.verify_strict(&canonical(&Value::Object(map)), &sig)
            .map_err(|_| bad())?;
        Ok(name.clone())
    }
}

/// The trust a job runs with: the key it signs with, and the keys it accepts.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    pub signer: Option<Arc<Signer>>,
    /// `None` accepts every entry, signed or not (the default).
    pub trusted: Option<TrustedKeys>,
}

impl Trust {
    /// Signs a manifest about to be published, when this job holds a key.
    pub fn seal(&self, manifest: Bytes) -> Bytes {
        match &self.signer {
            Some(s) => s.sign(&manifest),
            None => manifest,
        }
    }

    /// Accepts a manifest when no keys are trusted, or when one of them signed it.
    pub fn check(&self, manifest: &[u8]) -> Result<(), Untrusted> {
        match &self.trusted {
            Some(keys) => keys.verify(manifest).map(|_| ()),
            None => Ok(()),
        }
    }
}

fn public_text(key: &VerifyingKey) -> String {
    format!("{PUBLIC_PREFIX}{}", hex(key.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

fn unhex32(text: &str) -> Option<[u8; 32]> {
    unhex(text).and_then(|v| v.try_into().ok())
}

/// The canonical bytes of a JSON value: object keys sorted, no whitespace. Numbers and
/// strings are written as serde_json writes them, which reads back to the same value.
fn canonical(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend(serde_json::to_vec(k).expect("a string serialises"));
                out.push(b':');
                write_canonical(&map[k], out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(v, out);
            }
            out.push(b']');
        }
        other => out.extend(serde_json::to_vec(other).expect("a JSON value serialises")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Signer, TrustedKeys) {
        let (secret, public) = Signer::generate().expect("a key pair");
        (
            Signer::parse(&secret).expect("the secret reads back"),
            TrustedKeys::parse(&public).expect("the public key reads back"),
        )
    }

    const MANIFEST: &str = r#"{"format":1,"kind":"cache","key":"v1-deps","paths":["node_modules"],"data":{"path":"d","size":3,"sha256":"ab"}}"#;

    #[test]
    fn a_signed_manifest_verifies_under_its_key_and_survives_reformatting() {
        let (signer, trusted) = pair();
        let signed = signer.sign(MANIFEST.as_bytes());
        assert_eq!(trusted.verify(&signed).as_deref(), Ok(signer.public_key()));
        // Key order and whitespace are not part of what is signed.
        let v: Value = serde_json::from_slice(&signed).expect("json");
        let compact = serde_json::to_vec(&v).expect("json");
        assert!(trusted.verify(&compact).is_ok());
    }

    #[test]
    fn edits_unsigned_and_foreign_signatures_are_each_named() {
        let (signer, trusted) = pair();
        let (other, _) = pair();
        let signed = String::from_utf8(signer.sign(MANIFEST.as_bytes()).to_vec()).expect("utf8");
        let edited = signed.replace("node_modules", "../../.ssh");
        assert_eq!(
            trusted.verify(edited.as_bytes()),
            Err(Untrusted::BadSignature {
                key: signer.public_key().to_string()
            })
        );
        assert_eq!(
            trusted.verify(MANIFEST.as_bytes()),
            Err(Untrusted::Unsigned)
        );
        let foreign = other.sign(MANIFEST.as_bytes());
        assert_eq!(
            trusted.verify(&foreign),
            Err(Untrusted::UntrustedKey {
                key: other.public_key().to_string()
            })
        );
        assert_eq!(trusted.verify(b"[1]"), Err(Untrusted::Unreadable));
    }

    #[test]
    fn keys_must_be_written_as_keygen_prints_them() {
        assert!(Signer::parse("ferry-ed25519-secret:abcd").is_err());
        assert!(TrustedKeys::parse("ssh-ed25519 AAAA").is_err());
        let (_, public) = Signer::generate().expect("pair");
        let (_, public2) = Signer::generate().expect("pair");
        let keys = TrustedKeys::parse(&format!("{public},\n {public2}")).expect("two keys");
        assert_eq!(keys.keys.len(), 2);
    }

    /// Found by fuzzing (`fuzz/`, target `manifest`): a number past `u64` is read as a float,
    /// and serde_json's default float parsing is not exact, so the canonical form written at
    /// signing read back as another number and a manifest's own signature did not verify.
    #[test]
    fn a_signed_manifest_holding_a_number_past_u64_verifies() {
        let (signer, trusted) = pair();
        let signed = signer.sign(br#"{"":18446744077509551611}"#);
        assert_eq!(trusted.verify(&signed).as_deref(), Ok(signer.public_key()));
    }
}
