//! A summary of a JUnit XML report: totals and the failing cases. The XML is written by
//! whoever ran the job, so the parser is bounded: `quick-xml` expands no entities beyond the
//! five predefined ones (a DOCTYPE is skipped, never fetched or expanded), the input is size
//! limited by the caller, and only so many cases and characters are kept.

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

/// The largest report summarised.
pub(crate) const MAX_BYTES: u64 = 16 * 1024 * 1024;
/// Failing cases kept.
const MAX_FAILURES: usize = 500;
/// Characters kept of a failure's message and text.
const MAX_TEXT: usize = 4000;
/// Elements deep before the report is refused.
const MAX_DEPTH: usize = 64;

/// One case that failed or errored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Failure {
    pub suite: String,
    pub classname: String,
    pub name: String,
    /// `failure` or `error`.
    pub kind: String,
    pub message: String,
    pub text: String,
}

/// A report's totals, counted from its test cases.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Summary {
    pub suites: usize,
    pub tests: usize,
    pub failures: usize,
    pub errors: usize,
    pub skipped: usize,
    /// Failing cases, at most [`MAX_FAILURES`].
    pub failed: Vec<Failure>,
    /// Failing cases left out past the limit.
    pub more_failed: usize,
}

fn push_limited(out: &mut String, s: &str) {
    let room = MAX_TEXT.saturating_sub(out.chars().count());
    if room > 0 {
        out.extend(s.chars().take(room));
    }
}

fn attr(e: &BytesStart<'_>, name: &[u8]) -> String {
    e.attributes()
        .flatten()
        .find(|a| a.key.as_ref() == name)
        .map(|a| {
            a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map(|v| v.into_owned())
                .unwrap_or_else(|_| String::from_utf8_lossy(&a.value).into_owned())
        })
        .unwrap_or_default()
}

/// Summarises `xml`, or says why it is not a JUnit report this page can read.
pub(crate) fn parse(xml: &[u8]) -> Result<Summary, String> {
    let mut reader = Reader::from_reader(xml);
    reader.config_mut().trim_text(false);
    let mut summary = Summary::default();
    let mut suites: Vec<String> = Vec::new();
    let mut case: Option<(String, String)> = None;
    let mut current: Option<Failure> = None;
    let mut depth = 0usize;
    let mut seen_root = false;
    let mut buf = Vec::new();
    loop {
        let event = reader.read_event_into(&mut buf).map_err(|e| {
            format!(
                "not well-formed XML at byte {}: {e}",
                reader.error_position()
            )
        })?;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(event, Event::Empty(_));
                if !empty {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(format!("nested more than {MAX_DEPTH} elements deep"));
                    }
                }
                match e.name().as_ref() {
                    b"testsuites" => seen_root = true,
                    b"testsuite" => {
                        seen_root = true;
                        summary.suites += 1;
                        if !empty {
                            suites.push(attr(e, b"name"));
                        }
                    }
                    b"testcase" => {
                        summary.tests += 1;
                        if !empty {
                            case = Some((attr(e, b"classname"), attr(e, b"name")));
                        }
                    }
                    kind @ (b"failure" | b"error") if case.is_some() => {
                        let (classname, name) = case.clone().unwrap_or_default();
                        if kind == b"failure" {
                            summary.failures += 1;
                        } else {
                            summary.errors += 1;
                        }
                        let mut message = String::new();
                        push_limited(&mut message, &attr(e, b"message"));
                        let f = Failure {
                            suite: suites.last().cloned().unwrap_or_default(),
                            classname,
                            name,
                            kind: String::from_utf8_lossy(kind).into_owned(),
                            message,
                            text: String::new(),
                        };
                        if empty {
                            keep(&mut summary, f);
                        } else {
                            current = Some(f);
                        }
                    }
                    b"skipped" if case.is_some() => summary.skipped += 1,
                    _ => {}
                }
            }
            Event::Text(t) => {
                if let Some(f) = current.as_mut() {
                    let s = t
                        .decode()
                        .map(|c| c.into_owned())
                        .unwrap_or_else(|_| String::from_utf8_lossy(&t).into_owned());
                    push_limited(&mut f.text, &s);
                }
            }
            Event::GeneralRef(r) => {
                // `&amp;` and the other predefined entities, and character references; any
                // other entity is shown as written, never expanded.
                if let Some(f) = current.as_mut() {
                    let name = String::from_utf8_lossy(&r).into_owned();
                    let s = match r.resolve_char_ref() {
                        Ok(Some(c)) => c.to_string(),
                        _ => match quick_xml::escape::resolve_predefined_entity(&name) {
                            Some(v) => v.to_string(),
                            None => format!("&{name};"),
                        },
                    };
                    push_limited(&mut f.text, &s);
                }
            }
            Event::CData(t) => {
                if let Some(f) = current.as_mut() {
                    push_limited(&mut f.text, &String::from_utf8_lossy(&t));
                }
            }
            Event::End(e) => {
                depth = depth.saturating_sub(1);
                match e.name().as_ref() {
                    b"testsuite" => {
                        suites.pop();
                    }
                    b"testcase" => case = None,
                    b"failure" | b"error" => {
                        if let Some(f) = current.take() {
                            keep(&mut summary, f);
                        }
                    }
                    _ => {}
                }
            }
            Event::Eof => break,
            // DOCTYPE (with any entity declarations), comments, processing instructions.
            _ => {}
        }
        buf.clear();
    }
    if !seen_root {
        return Err("no <testsuite> or <testsuites> element".into());
    }
    Ok(summary)
}

fn keep(summary: &mut Summary, f: Failure) {
    if summary.failed.len() < MAX_FAILURES {
        summary.failed.push(f);
    } else {
        summary.more_failed += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites>
  <testsuite name="unit" tests="4">
    <testcase classname="app.Math" name="adds"/>
    <testcase classname="app.Math" name="divides">
      <failure message="expected 2 &lt; 3" type="AssertionError">at divides (math.js:10)
&amp; more</failure>
    </testcase>
    <testcase classname="app.Io" name="reads"><error message="ENOENT"><![CDATA[<missing file>]]></error></testcase>
    <testcase classname="app.Io" name="later"><skipped/></testcase>
  </testsuite>
</testsuites>"#;

    #[test]
    fn totals_and_failing_cases_are_read() -> Result<(), String> {
        let s = parse(REPORT.as_bytes())?;
        assert_eq!(
            (s.suites, s.tests, s.failures, s.errors, s.skipped),
            (1, 4, 1, 1, 1)
        );
        assert_eq!(s.failed.len(), 2);
        assert_eq!(s.failed[0].name, "divides");
        assert_eq!(s.failed[0].suite, "unit");
        assert_eq!(s.failed[0].message, "expected 2 < 3");
        assert!(
            s.failed[0].text.contains("math.js:10)\n& more"),
            "{:?}",
            s.failed[0].text
        );
        assert_eq!(s.failed[1].kind, "error");
        assert_eq!(s.failed[1].text, "<missing file>");
        Ok(())
    }

    #[test]
    fn entities_are_never_expanded() -> Result<(), String> {
        // A billion-laughs DOCTYPE and an external entity: both are left as written.
        let xml = r#"<?xml version="1.0"?>
<!DOCTYPE t [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY x SYSTEM "file:///etc/passwd">]>
<testsuite name="s"><testcase name="c"><failure message="m">&b; &x;</failure></testcase></testsuite>"#;
        let s = parse(xml.as_bytes())?;
        assert_eq!(s.failed.len(), 1);
        assert_eq!(s.failed[0].text, "&b; &x;");
        Ok(())
    }

    #[test]
    fn hostile_reports_are_bounded_or_refused() {
        let deep = format!(
            "{}{}",
            "<testsuite>".repeat(200),
            "</testsuite>".repeat(200)
        );
        assert!(parse(deep.as_bytes()).is_err());
        assert!(parse(b"<html><body>not junit</body></html>").is_err());
        assert!(parse(b"<testsuite><testcase").is_err());
        let long = format!(
            "<testsuite><testcase name='x'><failure message='{}'>{}</failure></testcase></testsuite>",
            "m".repeat(10_000),
            "t".repeat(10_000)
        );
        let s = parse(long.as_bytes()).expect("a long report parses");
        assert_eq!(s.failed[0].message.len(), MAX_TEXT);
        assert_eq!(s.failed[0].text.len(), MAX_TEXT);
        let many = format!(
            "<testsuite>{}</testsuite>",
            "<testcase name='f'><failure/></testcase>".repeat(MAX_FAILURES + 3)
        );
        let s = parse(many.as_bytes()).expect("many failures parse");
        assert_eq!((s.failed.len(), s.more_failed), (MAX_FAILURES, 3));
    }
}
