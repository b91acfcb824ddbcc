//! Durations as operators write them: `500ms`, `1s`, `1.5s`, `2m30s`, `1h`.

use std::time::Duration;

/// Parses a duration made of one or more `<number><unit>` parts (units `ms`, `s`, `m`, `h`).
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".to_string());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("`{text}` needs a unit: ms, s, m or h (e.g. `{text}s`)"))?;
        if number_len == 0 {
            return Err(format!(
                "`{text}` is not a duration (expected e.g. 500ms, 1s, 1h)"
            ));
        }
        let number: f64 = rest[..number_len]
            .parse()
            .map_err(|_| format!("`{}` is not a number", &rest[..number_len]))?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            other => {
                return Err(format!(
                    "unknown duration unit `{other}` in `{text}` (use ms, s, m or h)"
                ));
            }
        };
        rest = &rest[unit_len..];
        let seconds = number * seconds_per_unit;
        if !seconds.is_finite() || seconds > 1e9 {
            return Err(format!("`{text}` is too long"));
        }
        total += Duration::from_secs_f64(seconds);
    }
    // Nothing below a millisecond means anything to Envoy's timers or ours.
    let millis = total.as_millis();
    Ok(Duration::from_millis(
        u64::try_from(millis).unwrap_or(u64::MAX),
    ))
}

/// Formats a duration the way `parse` reads it, in the largest unit that is exact.
pub fn format(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        "0s".to_string()
    } else if ms.is_multiple_of(3_600_000) {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_compounds() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("2m30s"), Ok(Duration::from_secs(150)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects_bad_input_with_a_reason() {
        assert!(parse("10").unwrap_err().contains("needs a unit"));
        assert!(parse("1d").unwrap_err().contains("unknown duration unit"));
        assert!(parse("s").is_err());
        assert!(parse("").is_err());
        assert!(parse("1..2s").is_err());
    }

    #[test]
    fn format_round_trips() {
        for text in ["0s", "250ms", "1500ms", "3s", "5m", "2h"] {
            assert_eq!(format(parse(text).unwrap()), text);
        }
    }
}
