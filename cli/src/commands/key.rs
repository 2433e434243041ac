//! `ferry key`: print what a template renders to here, alone on stdout; `ferry keygen`.

use serde_json::json;

use crate::errors::CliError;
use crate::settings::Globals;

pub fn run(globals: &Globals, key: &str) -> Result<(), CliError> {
    println!("{key}");
    // The key stays alone on stdout so scripts can capture it; the context it was rendered
    // with goes to stderr.
    if globals.output.json {
        let obj = json!({ "key": key, "project": globals.project, "context": globals.ci });
        eprintln!("{obj}");
    } else {
        globals.output.detail(format!(
            "provider: {:?}, project: {}, branch: {}, revision: {}",
            globals.ci.provider,
            globals.project,
            globals.ci.branch.as_deref().unwrap_or("-"),
            globals.ci.revision.as_deref().unwrap_or("-"),
        ));
    }
    Ok(())
}

/// `ferry keygen`: a new ed25519 key pair, as the two variables that use it.
pub fn keygen(globals: &Globals) -> Result<(), CliError> {
    let (secret, public) = ferry_core::trust::sign::Signer::generate()?;
    if globals.output.json {
        globals
            .output
            .result(&json!({ "signing_key": secret, "trusted_key": public }));
    } else {
        println!("FERRY_SIGNING_KEY={secret}");
        println!("FERRY_TRUSTED_KEYS={public}");
        globals.output.info(
            "keep FERRY_SIGNING_KEY secret (trusted branches only); give FERRY_TRUSTED_KEYS to every job that restores",
        );
    }
    Ok(())
}
