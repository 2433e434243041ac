//! Durations (`90s`, `15d`, `2w`, ISO-8601 `PT1H`, `never`), sizes (`10GB`, `512MiB`) and
//! instants (`2026-12-31T00:00:00Z`, `+7d`).

use std::time::Duration;

/// A retention period: a duration, or `never` (kept until removed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    After(Duration),
    Never,
}

/// Why a duration or size could not be read.
#[derive(Debug, thiserror::Error)]
#[error("invalid {what} {input:?}: {reason}")]
pub struct UnitError {
    pub what: &'static str,
    pub input: String,
    pub reason: String,
}

fn err(what: &'static str, input: &str, reason: &str) -> UnitError {
    UnitError {
        what,
        input: input.to_string(),
        reason: reason.to_string(),
    }
}

const DURATION_HELP: &str =
    "use a number with s, m, h, d or w (90s, 30m, 12h, 15d, 2w) or ISO-8601 (PT1H, P15D)";

/// Reads a duration: `90s`, `30m`, `12h`, `15d`, `2w`, or ISO-8601 such as `PT1H30M`, `P15D`, `P1W`.
pub fn parse_duration(input: &str) -> Result<Duration, UnitError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(err("duration", input, DURATION_HELP));
    }
    if let Some(iso) = s.strip_prefix(['P', 'p']) {
        return parse_iso(input, iso);
    }
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| err("duration", input, DURATION_HELP))?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| err("duration", input, DURATION_HELP))?;
    let secs = match unit.trim() {
        "s" | "sec" | "secs" | "second" | "seconds" => 1,
        "m" | "min" | "mins" | "minute" | "minutes" => 60,
        "h" | "hour" | "hours" => 3600,
        "d" | "day" | "days" => 86_400,
        "w" | "week" | "weeks" => 604_800,
        _ => return Err(err("duration", input, DURATION_HELP)),
    };
    n.checked_mul(secs)
        .map(Duration::from_secs)
        .ok_or_else(|| err("duration", input, "too long"))
}

fn parse_iso(input: &str, rest: &str) -> Result<Duration, UnitError> {
    let mut total: u64 = 0;
    let mut in_time = false;
    let mut num = String::new();
    let mut any = false;
    for c in rest.chars() {
        match c.to_ascii_uppercase() {
            'T' if !in_time && num.is_empty() => in_time = true,
            d if d.is_ascii_digit() => num.push(d),
            unit => {
                let n: u64 = num
                    .parse()
                    .map_err(|_| err("duration", input, DURATION_HELP))?;
                num.clear();
                let secs = match (in_time, unit) {
                    (false, 'Y') => 365 * 86_400,
                    (false, 'M') => 30 * 86_400,
                    (false, 'W') => 604_800,
                    (false, 'D') => 86_400,
                    (true, 'H') => 3600,
                    (true, 'M') => 60,
                    (true, 'S') => 1,
                    _ => return Err(err("duration", input, DURATION_HELP)),
                };
                total = n
                    .checked_mul(secs)
                    .and_then(|v| total.checked_add(v))
                    .ok_or_else(|| err("duration", input, "too long"))?;
                any = true;
            }
        }
    }
    if !num.is_empty() || !any {
        return Err(err("duration", input, DURATION_HELP));
    }
    Ok(Duration::from_secs(total))
}

/// Reads a retention period: a duration, or `never` where `allow_never`.
pub fn parse_ttl(input: &str, allow_never: bool) -> Result<Ttl, UnitError> {
    if input.trim().eq_ignore_ascii_case("never") {
        return if allow_never {
            Ok(Ttl::Never)
        } else {
            Err(err(
                "ttl",
                input,
                "`never` is allowed only for artifacts; give a duration such as 15d",
            ))
        };
    }
    parse_duration(input).map(Ttl::After)
}

/// Reads an instant: an RFC 3339 time (`2026-12-31T00:00:00Z`), or `+DURATION` after `now`
/// (`+7d`).
pub fn parse_instant(
    input: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<chrono::DateTime<chrono::Utc>, UnitError> {
    const HELP: &str = "use an RFC 3339 time (2026-12-31T00:00:00Z) or +DURATION (+7d)";
    let s = input.trim();
    if let Some(ahead) = s.strip_prefix('+') {
        let d = parse_duration(ahead).map_err(|e| err("time", input, &e.reason))?;
        return chrono::Duration::from_std(d)
            .ok()
            .and_then(|d| now.checked_add_signed(d))
            .ok_or_else(|| err("time", input, "too far ahead"));
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|_| err("time", input, HELP))
}

/// Reads a size: `1024`, `10GB`, `512MiB`, `2g` (decimal `kB/MB/GB/TB`, binary `KiB/MiB/GiB/TiB`;
/// a bare letter `k/m/g/t` is binary).
pub fn parse_size(input: &str) -> Result<u64, UnitError> {
    const HELP: &str = "use a number of bytes with an optional unit: 500MB, 10GB, 512MiB, 2GiB";
    let s = input.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| err("size", input, HELP))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tib" => 1024.0f64.powi(4),
        _ => return Err(err("size", input, HELP)),
    };
    Ok((n * mult) as u64)
}

/// Formats a byte count for people: `1.5 MiB`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Formats a duration in the largest unit that divides it: `15d`, `12h`, `30m`, `90s`.
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    for (unit, secs) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if s >= secs && s % secs == 0 {
            return format!("{}{unit}", s / secs);
        }
    }
    format!("{s}s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_in_the_largest_unit_that_divides_them() {
        assert_eq!(format_duration(Duration::from_secs(15 * 86_400)), "15d");
        assert_eq!(format_duration(Duration::from_secs(7_200)), "2h");
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::from_secs(0)), "0s");
    }

    #[test]
    fn durations_in_every_form() {
        assert_eq!(parse_duration("90s").ok(), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m").ok(), Some(Duration::from_secs(1800)));
        assert_eq!(
            parse_duration("12h").ok(),
            Some(Duration::from_secs(43_200))
        );
        assert_eq!(
            parse_duration("15d").ok(),
            Some(Duration::from_secs(15 * 86_400))
        );
        assert_eq!(
            parse_duration("2w").ok(),
            Some(Duration::from_secs(14 * 86_400))
        );
        assert_eq!(parse_duration("PT1H").ok(), Some(Duration::from_secs(3600)));
        assert_eq!(
            parse_duration("P15D").ok(),
            Some(Duration::from_secs(15 * 86_400))
        );
        assert_eq!(
            parse_duration("P1DT2H3M4S").ok(),
            Some(Duration::from_secs(86_400 + 7384))
        );
        for bad in ["", "15", "d", "1y", "PT", "P1H", "-5s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn never_only_where_allowed() {
        assert_eq!(parse_ttl("never", true).ok(), Some(Ttl::Never));
        assert!(parse_ttl("never", false).is_err());
    }

    #[test]
    fn sizes_decimal_and_binary() {
        assert_eq!(parse_size("10GB").ok(), Some(10_000_000_000));
        assert_eq!(parse_size("512MiB").ok(), Some(512 * 1024 * 1024));
        assert_eq!(parse_size("1024").ok(), Some(1024));
        assert!(parse_size("ten").is_err());
    }

    #[test]
    fn instants_are_rfc3339_times_or_a_duration_ahead() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-30T12:00:00Z")
            .expect("time")
            .with_timezone(&chrono::Utc);
        let t = |s| parse_instant(s, now).map(|t| t.to_rfc3339());
        assert_eq!(t("+7d").expect("ahead"), "2026-12-07T12:00:00+00:00");
        assert_eq!(
            t("2026-12-31T01:02:03.000000004+01:00").expect("rfc3339"),
            "2026-12-31T00:02:03.000000004+00:00"
        );
        for bad in ["", "tomorrow", "+", "+7x", "2026-12-31", "-7d"] {
            let e = t(bad).expect_err(bad).to_string();
            assert!(e.starts_with("invalid time"), "{bad}: {e}");
        }
    }
}
