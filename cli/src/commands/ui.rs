//! `ferry ui`: binds the page server, prints its URL (alone on stdout, so scripts can read
//! it), and serves until interrupted.

use ferry_ui::UiRequest;

use crate::errors::CliError;
use crate::settings::Globals;

pub async fn run(globals: &Globals, request: UiRequest, open: bool) -> Result<(), CliError> {
    let store = globals.open_store()?;
    let allow_delete = request.allow_delete;
    let server = ferry_ui::bind(store, request).await?;
    let url = server.url();
    let out = &globals.output;
    out.info(format!(
        "ferry ui: serving store {} (project {}) at {url}{}; Ctrl-C stops it",
        globals.store_url,
        globals.project,
        if allow_delete {
            "; deletes allowed"
        } else {
            "; read-only"
        }
    ));
    if server.needs_token() {
        out.warn(format!(
            "listening on {} beyond loopback: every request needs the token in this URL; keep it private",
            server.addr()
        ));
    }
    println!("{url}");
    if open {
        // The usual openers; a machine without one still serves the page.
        let opener = if cfg!(target_os = "macos") {
            "open"
        } else {
            "xdg-open"
        };
        if let Err(e) = std::process::Command::new(opener)
            .arg(&url)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
        {
            out.warn(format!(
                "could not open a browser with {opener}: {e}; open {url} yourself"
            ));
        }
    }
    server.run().await?;
    Ok(())
}
