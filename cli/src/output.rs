//! Output: one JSON object on stdout with `--json`, human lines on stderr, progress bars only
//! on a terminal, and step outputs for GitHub Actions.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

pub struct Output {
    pub json: bool,
    pub quiet: bool,
    pub verbose: bool,
    pub progress: bool,
    /// `$GITHUB_OUTPUT`, when running on GitHub Actions.
    pub github_output: Option<PathBuf>,
}

impl Output {
    /// A one-line summary or message for people (stderr).
    pub fn info(&self, msg: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("{}", msg.as_ref());
        }
    }

    /// Detail shown with `-v`.
    pub fn detail(&self, msg: impl AsRef<str>) {
        if self.verbose {
            eprintln!("{}", msg.as_ref());
        }
    }

    pub fn warn(&self, msg: impl AsRef<str>) {
        eprintln!("warning: {}", msg.as_ref());
    }

    /// The result object, printed on stdout with `--json`.
    pub fn result<T: Serialize>(&self, value: &T) {
        if self.json {
            match serde_json::to_string(value) {
                Ok(s) => println!("{s}"),
                Err(e) => eprintln!("error: failed to print the result as JSON: {e}"),
            }
        }
    }

    /// A spinner while a long step runs, on a terminal only.
    pub fn spinner(&self, msg: impl Into<String>) -> Option<ProgressBar> {
        if !self.progress {
            return None;
        }
        let pb = ProgressBar::new_spinner();
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
            pb.set_style(style);
        }
        pb.set_message(msg.into());
        pb.enable_steady_tick(Duration::from_millis(120));
        Some(pb)
    }

    /// Awaits `work` behind a spinner showing `msg` (on a terminal only), cleared at the end.
    pub async fn spin<T>(
        &self,
        msg: impl Into<String>,
        work: impl std::future::Future<Output = T>,
    ) -> T {
        let spinner = self.spinner(msg);
        let result = work.await;
        if let Some(pb) = spinner {
            pb.finish_and_clear();
        }
        result
    }

    /// Appends `name=value` lines to `$GITHUB_OUTPUT`, when on GitHub Actions.
    pub fn github_outputs(&self, pairs: &[(&str, &str)]) -> std::io::Result<()> {
        let Some(path) = &self.github_output else {
            return Ok(());
        };
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)?;
        for (name, value) in pairs {
            if value.contains('\n') {
                writeln!(f, "{name}<<FERRY_EOF\n{value}\nFERRY_EOF")?;
            } else {
                writeln!(f, "{name}={value}")?;
            }
        }
        Ok(())
    }
}
