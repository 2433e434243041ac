//! What kind of preview a stored file gets, from its name and its first bytes.

/// How a file is shown inline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// An `<img>` of the raw file.
    Image,
    /// An HTML report, in a sandboxed frame.
    Html,
    /// A JUnit XML report: its summary, then its text.
    JUnit,
    Text,
    /// No preview: download it.
    Binary,
}

/// Bytes read for a text preview.
pub(crate) const TEXT_PREVIEW: usize = 64 * 1024;

fn extension(path: &str) -> String {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default()
}

/// The content type a raw file is served with. Only names ending `.html`/`.htm` are served as
/// HTML, and always with a sandboxing policy; anything unknown is an octet stream.
pub(crate) fn content_type(path: &str, head: &[u8]) -> &'static str {
    match extension(path).as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "ico" => "image/x-icon",
        "bmp" => "image/bmp",
        "xml" => "text/xml; charset=utf-8",
        "json" => "application/json",
        _ if is_text(head) => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Text: valid UTF-8 (a character cut at the end of the sample allowed) without NUL bytes.
pub(crate) fn is_text(head: &[u8]) -> bool {
    if head.contains(&0) {
        return false;
    }
    match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none() && head.len() - e.valid_up_to() < 4,
    }
}

/// The preview for `path`, given its first bytes.
pub(crate) fn kind(path: &str, head: &[u8]) -> Kind {
    match extension(path).as_str() {
        "png" | "jpg" | "jpeg" | "gif" | "webp" | "svg" | "ico" | "bmp" => Kind::Image,
        "html" | "htm" => Kind::Html,
        "xml" if looks_like_junit(head) => Kind::JUnit,
        _ if is_text(head) => Kind::Text,
        _ => Kind::Binary,
    }
}

fn looks_like_junit(head: &[u8]) -> bool {
    let text = String::from_utf8_lossy(&head[..head.len().min(4096)]);
    text.contains("<testsuite")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_follow_the_name_then_the_bytes() {
        assert_eq!(kind("r/index.HTML", b"<html>"), Kind::Html);
        assert_eq!(kind("junit.xml", b"<?xml?><testsuites>"), Kind::JUnit);
        assert_eq!(kind("pom.xml", b"<project>"), Kind::Text);
        assert_eq!(kind("logo.png", b"\x89PNG"), Kind::Image);
        assert_eq!(kind("notes", b"hello"), Kind::Text);
        assert_eq!(kind("blob.bin", b"\x00\x01"), Kind::Binary);
        // A sample cut inside a character is still text.
        assert_eq!(kind("a.txt", &"é".as_bytes()[..1]), Kind::Text);
    }

    #[test]
    fn only_html_names_are_served_as_html() {
        assert_eq!(
            content_type("x.txt", b"<script>"),
            "text/plain; charset=utf-8"
        );
        assert_eq!(content_type("x", b"<html>"), "text/plain; charset=utf-8");
        assert_eq!(content_type("x.exe", b"MZ\x00"), "application/octet-stream");
        assert!(content_type("r.htm", b"").starts_with("text/html"));
    }
}
