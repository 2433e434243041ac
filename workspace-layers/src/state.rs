//! The state of one job outside the user's tree: which layers it attached and persisted, so a
//! later `persist` in the same job can name them as its parents.
//!
//! It lives in a folder the caller settles (on GitHub Actions the runner's per-job temporary
//! folder, elsewhere `$XDG_STATE_HOME/ferry/workspaces`), one file per project, run and job.

use std::io::Write;
use std::path::{Path, PathBuf};

use ferry_core::paths::encode_part;
use serde::{Deserialize, Serialize};

use crate::WorkspaceError;

const VERSION: u32 = 1;

/// What one job has learned about its run's layers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct JobState {
    version: u32,
    /// Layers applied by this job's attaches, in the order they were applied.
    pub attached: Vec<String>,
    /// Layers this job persisted, oldest first.
    pub persisted: Vec<String>,
}

impl Default for JobState {
    fn default() -> Self {
        Self {
            version: VERSION,
            attached: Vec::new(),
            persisted: Vec::new(),
        }
    }
}

impl JobState {
    /// The parents of a layer persisted now: everything the job attached or persisted before.
    pub(crate) fn parents(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for id in self.attached.iter().chain(&self.persisted) {
            if !out.contains(id) {
                out.push(id.clone());
            }
        }
        out.sort();
        out
    }

    pub(crate) fn add_attached(&mut self, ids: impl IntoIterator<Item = String>) {
        for id in ids {
            if !self.attached.contains(&id) {
                self.attached.push(id);
            }
        }
    }
}

/// The state file of `job` in `workflow` of `project` below `dir`.
pub(crate) fn path(dir: &Path, project: &str, workflow: &str, job: &str) -> PathBuf {
    dir.join(encode_part(project))
        .join(encode_part(workflow))
        .join(format!("{}.json", encode_part(job)))
}

const HINT_READ: &str = "delete the file if it is damaged; a persist after that records no parents";
const HINT_WRITE: &str = "check that the folder is writable, or point XDG_STATE_HOME elsewhere";

/// Reads the state; a job that has not attached or persisted yet has an empty one.
pub(crate) fn load(file: &Path) -> Result<JobState, WorkspaceError> {
    let err = |op, source| WorkspaceError::State {
        op,
        path: file.display().to_string(),
        hint: HINT_READ,
        source,
    };
    match std::fs::read(file) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).map_err(|e| err("read", std::io::Error::other(e)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(JobState::default()),
        Err(e) => Err(err("read", e)),
    }
}

/// Writes the state whole: to a temporary file beside it, then renamed over it.
pub(crate) fn save(file: &Path, state: &JobState) -> Result<(), WorkspaceError> {
    let err = |source| WorkspaceError::State {
        op: "write",
        path: file.display().to_string(),
        hint: HINT_WRITE,
        source,
    };
    let dir = file.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(err)?;
    let mut tmp = tempfile_in(dir).map_err(err)?;
    let bytes = serde_json::to_vec_pretty(state).map_err(|e| err(std::io::Error::other(e)))?;
    tmp.1.write_all(&bytes).map_err(err)?;
    tmp.1.sync_all().map_err(err)?;
    std::fs::rename(&tmp.0, file).map_err(|e| {
        let _ = std::fs::remove_file(&tmp.0);
        err(e)
    })
}

fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    let p = dir.join(format!(".ferry-state-{}", ferry_core::manifest::new_id()));
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&p)?;
    Ok((p, f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_are_what_the_job_attached_and_persisted_and_survive_a_round_trip()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let file = path(dir.path(), "acme/app", "run 1", "build");
        assert!(file.starts_with(dir.path()));
        assert!(
            load(&file)?.parents().is_empty(),
            "a job with no state has no parents"
        );
        let mut st = JobState::default();
        st.add_attached(["2-b".to_string(), "1-a".to_string()]);
        st.add_attached(["1-a".to_string()]);
        st.persisted.push("3-own".into());
        save(&file, &st)?;
        let back = load(&file)?;
        assert_eq!(back.attached, ["2-b", "1-a"]);
        assert_eq!(back.parents(), ["1-a", "2-b", "3-own"]);
        Ok(())
    }
}
