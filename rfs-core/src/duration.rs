//! Durations as operators write them in flags and configuration files.

use std::time::Duration;

/// Parses a duration such as `30s`, `2m`, `1h30m` or `500ms`; a bare number
/// means seconds.
///
/// # Errors
///
/// Returns a message naming the bad text.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".to_owned());
    }
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }

    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("{text:?} is not a duration like 30s, 2m or 500ms"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = unit(&rest[..unit_len])
            .ok_or_else(|| format!("{text:?} has an unknown unit (use ms, s, m or h)"))?;
        let count = u32::try_from(number).map_err(|_| format!("duration {text:?} is too long"))?;
        total += unit * count;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

fn unit(unit: &str) -> Option<Duration> {
    match unit {
        "ms" => Some(Duration::from_millis(1)),
        "s" => Some(Duration::from_secs(1)),
        "m" => Some(Duration::from_secs(60)),
        "h" => Some(Duration::from_secs(3600)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_units_and_compounds_are_read() {
        assert_eq!(parse("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse("").is_err());
        assert!(parse("s").is_err());
        assert!(parse("5 parsecs").is_err());
    }
}
