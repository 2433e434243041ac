//! The embedded local store: a folder on this machine.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use object_store::local::LocalFileSystem;
use url::Url;

use super::StoreError;
use super::object::Parts;
use crate::env_vars::Environment;

const HINT: &str = "check that the folder exists or can be created and is writable";

/// A `file:///abs/path` URL.
pub(crate) fn build_from_url(raw: &str, url: &Url) -> Result<Parts, StoreError> {
    let path = url.to_file_path().map_err(|()| StoreError::InvalidUrl {
        url: raw.to_string(),
        reason: "a file:// store needs an absolute path, as in file:///var/cache/ferry".into(),
    })?;
    build(raw, &path)
}

/// A bare path; relative paths are taken from the current folder, `~/` from the home folder.
pub(crate) fn build_from_path(raw: &str, env: &Environment) -> Result<Parts, StoreError> {
    let path = crate::paths::expand_home(raw, env).map_err(|reason| StoreError::InvalidUrl {
        url: raw.to_string(),
        reason,
    })?;
    let path = if path.is_absolute() {
        path
    } else {
        std::env::current_dir()
            .map_err(|e| StoreError::Open {
                url: raw.to_string(),
                reason: format!("cannot read the current folder: {e}"),
                hint: HINT,
            })?
            .join(path)
    };
    build(raw, &path)
}

fn build(raw: &str, path: &FsPath) -> Result<Parts, StoreError> {
    std::fs::create_dir_all(path).map_err(|e| StoreError::Open {
        url: raw.to_string(),
        reason: format!("cannot create {}: {e}", path.display()),
        hint: HINT,
    })?;
    let root: PathBuf = std::fs::canonicalize(path).map_err(|e| StoreError::Open {
        url: raw.to_string(),
        reason: format!("cannot resolve {}: {e}", path.display()),
        hint: HINT,
    })?;
    let fs = LocalFileSystem::new_with_prefix(&root).map_err(|e| StoreError::Open {
        url: raw.to_string(),
        reason: e.to_string(),
        hint: HINT,
    })?;
    Ok(Parts {
        objects: Arc::new(fs),
        signer: None,
        local_root: Some(root),
        prefix: String::new(),
        hint: HINT,
        paged: None,
    })
}
