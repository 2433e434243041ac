//! Output: one JSON object on stdout with `--json`, human lines on stderr, progress bars only
//! on a terminal, and step outputs for GitHub Actions.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

pub struct Output {
    /// The store URL, named in summaries and in every JSON result.
    pub store: String,
    /// Running as a step of GitHub Actions (`GITHUB_ACTIONS=true`): workflow commands work.
    pub github_actions: bool,
    pub json: bool,
    pub quiet: bool,
    pub verbose: bool,
    pub progress: bool,
    /// `$GITHUB_OUTPUT`, when running on GitHub Actions.
    pub github_output: Option<PathBuf>,
    /// `$GITHUB_STEP_SUMMARY`, when running on GitHub Actions.
    pub step_summary: Option<PathBuf>,
}

/// A byte-count progress bar (on a terminal only) that a store's transfers advance: a bar
/// with rate and time left once a size is known, else the bytes moved and the rate. Off a
/// terminal with `-v`, one line when the first bytes move instead.
pub struct TransferBar {
    bar: Option<ProgressBar>,
    msg: String,
    total: std::sync::atomic::AtomicU64,
    moved: std::sync::atomic::AtomicBool,
}

impl TransferBar {
    fn new(msg: String) -> Self {
        let bar = ProgressBar::new(0);
        if let Ok(style) =
            ProgressStyle::with_template("{spinner} {msg}: {bytes} at {bytes_per_sec} ({elapsed})")
        {
            bar.set_style(style);
        }
        bar.set_message(msg.clone());
        bar.enable_steady_tick(Duration::from_millis(120));
        Self {
            bar: Some(bar),
            ..Self::line(msg)
        }
    }

    fn line(msg: String) -> Self {
        Self {
            bar: None,
            msg,
            total: std::sync::atomic::AtomicU64::new(0),
            moved: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Clears the bar; the summary line follows.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl ferry_core::store::Progress for TransferBar {
    fn expect(&self, bytes: u64) {
        let total = self
            .total
            .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed)
            + bytes;
        let Some(bar) = &self.bar else { return };
        if total == bytes {
            if let Ok(style) = ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} at {bytes_per_sec}, {eta} left",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
        }
        bar.set_length(total);
    }

    fn advance(&self, bytes: u64) {
        match &self.bar {
            Some(bar) => bar.inc(bytes),
            None => {
                if !self.moved.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    eprintln!("{}: data is moving", self.msg);
                }
            }
        }
    }
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

    /// The result object, printed on stdout with `--json`; an object result also names the
    /// store it came from (`"store"`).
    pub fn result<T: Serialize>(&self, value: &T) {
        if self.json {
            let value = match serde_json::to_value(value) {
                Ok(serde_json::Value::Object(mut map)) => {
                    map.entry("store")
                        .or_insert_with(|| serde_json::Value::String(self.store.clone()));
                    serde_json::Value::Object(map)
                }
                Ok(other) => other,
                Err(e) => {
                    eprintln!("error: failed to print the result as JSON: {e}");
                    return;
                }
            };
            println!("{value}");
        }
    }

    /// Where the store's secrets go on GitHub Actions: `::add-mask::` lines, which the runner
    /// reads on both streams. They go to stdout, where masks belong, except with `--json`,
    /// whose stdout is one object: there they go to stderr.
    pub fn mask_sink(&self) -> Option<ferry_core::store::SecretSink> {
        if !self.github_actions {
            return None;
        }
        let to_stderr = self.json;
        Some(std::sync::Arc::new(move |secret: &str| {
            let line = mask_command(secret);
            if to_stderr {
                let mut err = std::io::stderr().lock();
                let _ = err.write_all(line.as_bytes());
            } else {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(line.as_bytes());
                let _ = out.flush();
            }
        }))
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

    /// A byte-count bar for the transfers of one command, on a terminal; off one, with `-v`,
    /// a line when the first bytes move.
    pub fn transfer_bar(&self, msg: impl Into<String>) -> Option<std::sync::Arc<TransferBar>> {
        if self.progress {
            Some(std::sync::Arc::new(TransferBar::new(msg.into())))
        } else if self.verbose {
            Some(std::sync::Arc::new(TransferBar::line(msg.into())))
        } else {
            None
        }
    }

    /// Appends a short Markdown table to `$GITHUB_STEP_SUMMARY` on GitHub Actions: a
    /// heading, then one row under `headers`. Values are escaped so that a key holding `|`,
    /// HTML or line breaks cannot change the table. Best effort: a summary that cannot be
    /// written is a warning, never a failed step.
    pub fn step_summary(&self, title: &str, headers: &[&str], row: &[String]) {
        let Some(path) = &self.step_summary else {
            return;
        };
        let cell = |v: &str| {
            v.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('|', "\\|")
                .replace(['\r', '\n'], " ")
        };
        let mut text = format!("### {}\n\n| {} |\n|", cell(title), headers.join(" | "));
        for _ in headers {
            text.push_str("---|");
        }
        text.push_str("\n|");
        for v in row {
            text.push_str(&format!(" {} |", cell(v)));
        }
        text.push_str("\n\n");
        let written = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .and_then(|mut f| f.write_all(text.as_bytes()));
        if let Err(e) = written {
            self.warn(format!(
                "failed to write the step summary to {}: {e}",
                path.display()
            ));
        }
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

    /// Appends outputs to `$GITHUB_OUTPUT`, when on GitHub Actions.
    ///
    /// Every value is written as `name<<DELIMITER`, the value, `DELIMITER`, with a random
    /// delimiter per value that the value must not contain (as GitHub's own toolkit does), so
    /// no key, from a user or from a manifest in the store, can add or change an output.
    pub fn github_outputs(&self, pairs: &[(&str, &str)]) -> std::io::Result<()> {
        let Some(path) = &self.github_output else {
            return Ok(());
        };
        let mut text = String::new();
        for (name, value) in pairs {
            text.push_str(&github_output_record(name, value)?);
        }
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)?;
        f.write_all(text.as_bytes())
    }
}

/// The workflow command that masks `secret` in the job's log, escaped as the runner reads
/// command data (`%`, CR and LF).
fn mask_command(secret: &str) -> String {
    let escaped = secret
        .replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A");
    format!("::add-mask::{escaped}\n")
}

/// One `$GITHUB_OUTPUT` record with a fresh random delimiter; a value holding the delimiter
/// (which only a value made to forge outputs could) is refused.
fn github_output_record(name: &str, value: &str) -> std::io::Result<String> {
    let delimiter = format!("ghadelimiter_{}", ferry_core::manifest::new_id());
    if name.contains(&delimiter) || value.contains(&delimiter) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("the value of output {name} contains the delimiter {delimiter}"),
        ));
    }
    Ok(format!("{name}<<{delimiter}\n{value}\n{delimiter}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_are_workflow_commands_with_escaped_data() {
        assert_eq!(mask_command("a%b\nc"), "::add-mask::a%25b%0Ac\n");
    }

    #[test]
    fn output_records_use_a_new_delimiter_that_the_value_does_not_hold() {
        let a = github_output_record("cache-primary-key", "x\ncache-hit=true").expect("record");
        let b = github_output_record("cache-primary-key", "x").expect("record");
        let delim = a
            .lines()
            .next()
            .and_then(|l| l.split_once("<<"))
            .map(|(_, d)| d.to_string())
            .expect("a heredoc record");
        assert!(a.ends_with(&format!("\n{delim}\n")), "{a}");
        assert!(!b.contains(&delim), "each record has its own delimiter");
    }
}
