#![no_main]
//! Fuzz target `manifest`: any bytes read as a manifest of each mode (cache, layer, artifact,
//! and a plain JSON body), as retention reads every manifest (`Head`), and checked against a
//! fixed trusted key. Beyond "no panic":
//! - what a signature covers is what a restore uses: the signature is checked on the JSON value
//!   (`trust::sign` reads it as a `serde_json::Value`) and the restore decodes the same bytes
//!   into its own types, so both readings must agree (duplicate keys, odd numbers, escapes);
//! - a decoded manifest has this version's format, and encodes and decodes back to itself;
//! - retention's reading (`Head`) agrees with the restore's on format, kind, times and data;
//! - signing any JSON object with the key gives a manifest the key verifies, which decodes to
//!   what the unsigned one decoded to.

use std::sync::OnceLock;

use ferry_core::manifest::{self, Envelope, FORMAT_VERSION, Head};
use ferry_core::trust::sign::{Signer, TrustedKeys, Untrusted};
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The fixed key of the seeds in `corpus/manifest` (signed with `FERRY_SIGNING_KEY` set to it).
pub const SECRET: &str =
    "ferry-ed25519-secret:0f0e0d0c0b0a09080706050403020100f0e0d0c0b0a09080706050403020100f";

fn keys() -> &'static (Signer, TrustedKeys) {
    static KEYS: OnceLock<(Signer, TrustedKeys)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let signer = Signer::parse(SECRET).expect("the fixed key reads");
        let trusted = TrustedKeys::parse(signer.public_key()).expect("its public key reads");
        (signer, trusted)
    })
}

fn value<T: Serialize>(m: &Envelope<T>) -> Value {
    serde_json::to_value(m).expect("a decoded manifest serialises")
}

/// `m` without its signature, as a value.
fn unsigned<T: Serialize>(m: &Envelope<T>) -> Value {
    let mut v = value(m);
    if let Value::Object(map) = &mut v {
        map.remove("signature");
    }
    v
}

/// Checks one mode's reading of `bytes`; `canonical` is the bytes as the signature reads them
/// (the JSON value written back), `signed` the bytes signed with the fixed key.
fn check<T: DeserializeOwned + Serialize>(
    what: &str,
    bytes: &[u8],
    canonical: Option<&[u8]>,
    signed: Option<&[u8]>,
) {
    let Ok(m) = manifest::decode::<T>(bytes, "fuzz") else {
        return;
    };
    assert_eq!(m.format, FORMAT_VERSION, "{what}");
    let again = manifest::decode::<T>(&manifest::encode(&m), "fuzz")
        .unwrap_or_else(|e| panic!("{what}: a decoded manifest does not decode once encoded: {e}"));
    assert_eq!(value(&m), value(&again), "{what}: encode and decode changed it");
    // The types skip unknown fields without reading them (invalid UTF-8 in one passes), while
    // the signature check then calls the manifest unreadable and refuses it: no disagreement
    // about what is restored.
    let Some(canonical) = canonical else {
        return;
    };
    match manifest::decode::<T>(canonical, "fuzz") {
        Ok(c) => assert_eq!(
            value(&m),
            value(&c),
            "{what}: the restore reads other fields than the signature covers"
        ),
        Err(e) => panic!("{what}: decodes, but not as the signature reads it: {e}"),
    }
    if let Some(signed) = signed {
        match manifest::decode::<T>(signed, "fuzz") {
            Ok(s) => assert_eq!(unsigned(&m), unsigned(&s), "{what}: signing changed it"),
            Err(e) => panic!("{what}: decodes, but not once signed: {e}"),
        }
    }
}

fn run(bytes: &[u8]) {
    let (signer, trusted) = keys();
    let parsed = serde_json::from_slice::<Value>(bytes).ok();
    let canonical = parsed
        .as_ref()
        .map(|v| serde_json::to_vec(v).expect("a value serialises"));
    let signed = match &parsed {
        Some(Value::Object(_)) => {
            let signed = signer.sign(bytes);
            assert_eq!(
                trusted.verify(&signed).as_deref(),
                Ok(signer.public_key()),
                "a manifest just signed does not verify"
            );
            Some(signed)
        }
        _ => None,
    };
    match trusted.verify(bytes) {
        Ok(key) => assert_eq!(key, signer.public_key()),
        Err(Untrusted::Unreadable) => assert!(
            !matches!(parsed, Some(Value::Object(_))),
            "a JSON object called unreadable"
        ),
        Err(_) => {}
    }
    let canonical = canonical.as_deref();
    let signed = signed.as_deref();
    check::<Value>("plain", bytes, canonical, signed);
    check::<ferry_caches::CacheBody>("cache", bytes, canonical, signed);
    check::<ferry_workspace_layers::LayerBody>("layer", bytes, canonical, signed);
    check::<ferry_artifacts::ArtifactBody>("artifact", bytes, canonical, signed);

    // Retention reads every manifest through the envelope alone.
    if let Ok(m) = manifest::decode::<Value>(bytes, "fuzz") {
        let head: Head = serde_json::from_slice(bytes)
            .unwrap_or_else(|e| panic!("a manifest restores but retention cannot read it: {e}"));
        assert_eq!(head.format, m.format);
        assert_eq!(head.kind, m.kind);
        assert_eq!(head.created, m.created);
        assert_eq!(head.expires, m.expires);
        assert_eq!(head.data, m.data);
    }
}

fuzz_target!(|bytes: &[u8]| run(bytes));
