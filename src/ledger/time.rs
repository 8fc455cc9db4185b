//! Dates and times the ledger needs, without a calendar crate: RFC 3339 (REST events),
//! HL7 DTM (OBR-22), `YYYY-MM-DD` (roster validity), `YYYY-MM` (report months), all as
//! milliseconds since the Unix epoch, like the rest of the store.

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) of a day number.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

fn num(s: &str, what: &str) -> Result<u32, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{what}: expected digits, got {s:?}"));
    }
    s.parse().map_err(|_| format!("{what}: out of range"))
}

fn ymd(y: &str, m: &str, d: &str) -> Result<(i64, u32, u32), String> {
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return Err("expected YYYY-MM-DD".into());
    }
    let (y, m, d) = (num(y, "year")? as i64, num(m, "month")?, num(d, "day")?);
    if !(1..=12).contains(&m) {
        return Err(format!("month {m} is not 1–12"));
    }
    if d == 0 || d > days_in_month(y, m) {
        return Err(format!("day {d} does not exist in {y:04}-{m:02}"));
    }
    Ok((y, m, d))
}

/// `YYYY-MM-DD` → day number.
pub fn parse_date(s: &str) -> Result<i64, String> {
    let parts: Vec<&str> = s.trim().split('-').collect();
    if parts.len() != 3 {
        return Err(format!("expected a date YYYY-MM-DD, got {s:?}"));
    }
    let (y, m, d) = ymd(parts[0], parts[1], parts[2]).map_err(|e| format!("{s:?}: {e}"))?;
    Ok(days_from_civil(y, m, d))
}

/// `+09:00`, `-0500`, `Z` → seconds east of UTC.
pub fn parse_offset(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if s == "Z" || s == "z" {
        return Ok(0);
    }
    let bad = || format!("expected a UTC offset like +09:00, got {s:?}");
    let (sign, rest) = match s.as_bytes().first() {
        Some(b'+') => (1, &s[1..]),
        Some(b'-') => (-1, &s[1..]),
        _ => return Err(bad()),
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let h: i64 = digits[..2].parse().map_err(|_| bad())?;
    let m: i64 = digits[2..].parse().map_err(|_| bad())?;
    if h > 23 || m > 59 {
        return Err(bad());
    }
    Ok(sign * (h * 3600 + m * 60))
}

/// RFC 3339 date-time with an offset (`2026-06-01T09:30:00+09:00`, fractions allowed).
pub fn parse_rfc3339(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let t = s
        .find(['T', 't', ' '])
        .ok_or_else(|| format!("expected an RFC 3339 date-time, got {s:?}"))?;
    let (date, rest) = (&s[..t], &s[t + 1..]);
    let parts: Vec<&str> = date.split('-').collect();
    if parts.len() != 3 {
        return Err(format!("expected YYYY-MM-DD before 'T', got {date:?}"));
    }
    let (y, mo, d) = ymd(parts[0], parts[1], parts[2])?;
    let off_at = rest
        .find(['Z', 'z', '+', '-'])
        .ok_or_else(|| "expected a UTC offset (Z or +09:00) at the end".to_string())?;
    let (clock, offset) = (&rest[..off_at], &rest[off_at..]);
    let offset = parse_offset(offset)?;
    let (hms, frac) = match clock.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (clock, None),
    };
    let hp: Vec<&str> = hms.split(':').collect();
    if hp.len() != 3 || hp.iter().any(|p| p.len() != 2) {
        return Err(format!("expected hh:mm:ss, got {clock:?}"));
    }
    let (h, mi, se) = (
        num(hp[0], "hour")?,
        num(hp[1], "minute")?,
        num(hp[2], "second")?,
    );
    if h > 23 || mi > 59 || se > 60 {
        return Err(format!("time {hms} out of range"));
    }
    let ms = match frac {
        Some(f) => {
            if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
                return Err("fraction of a second: expected digits".into());
            }
            let mut v: u32 = 0;
            for (i, b) in f.bytes().take(3).enumerate() {
                v += (b - b'0') as u32 * [100, 10, 1][i];
            }
            v as i64
        }
        None => 0,
    };
    let secs =
        days_from_civil(y, mo, d) * 86_400 + h as i64 * 3600 + mi as i64 * 60 + se.min(59) as i64;
    Ok((secs - offset) * 1000 + ms)
}

/// HL7 DTM (`YYYYMMDDHHMM[SS[.S]][+ZZZZ]`) → ms; no offset: `default_offset`. Precision
/// coarser than minutes is refused (a day is not a reading time).
pub fn parse_dtm(raw: &str, default_offset: i64) -> Option<i64> {
    let iso = crate::hl7::message::dtm_to_iso(raw)?;
    // dtm_to_iso: 2024-06-01T12:34[:56[.s]][+09:00]
    let (date, rest) = iso.split_once('T')?;
    let (clock, offset) = match rest.find(['+', '-', 'Z']) {
        Some(i) => (&rest[..i], Some(&rest[i..])),
        None => (rest, None),
    };
    let clock = match clock.split(':').count() {
        2 => format!("{clock}:00"),
        _ => clock.to_string(),
    };
    let offset = match offset {
        Some(o) => o.to_string(),
        None => format_offset(default_offset),
    };
    parse_rfc3339(&format!("{date}T{clock}{offset}")).ok()
}

pub fn format_offset(secs: i64) -> String {
    let sign = if secs < 0 { '-' } else { '+' };
    let a = secs.abs();
    format!("{sign}{:02}:{:02}", a / 3600, (a % 3600) / 60)
}

/// ms → `2026-06-01T09:30:00+09:00` in the given offset.
pub fn format_ms(ms: i64, offset: i64) -> String {
    let local = ms.div_euclid(1000) + offset;
    let (y, m, d) = civil_from_days(local.div_euclid(86_400));
    let s = local.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}{}",
        s / 3600,
        (s % 3600) / 60,
        s % 60,
        format_offset(offset)
    )
}

/// Local day number of a time.
pub fn local_day(ms: i64, offset: i64) -> i64 {
    (ms.div_euclid(1000) + offset).div_euclid(86_400)
}

/// A report month.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Month {
    pub year: i64,
    pub month: u32,
}

impl Month {
    pub fn parse(s: &str) -> Result<Month, String> {
        let (y, m) = s
            .trim()
            .split_once('-')
            .ok_or_else(|| format!("expected YYYY-MM, got {s:?}"))?;
        if y.len() != 4 || m.len() != 2 {
            return Err(format!("expected YYYY-MM, got {s:?}"));
        }
        let (year, month) = (num(y, "year")? as i64, num(m, "month")?);
        if !(1..=12).contains(&month) {
            return Err(format!("month {month} is not 1–12"));
        }
        Ok(Month { year, month })
    }

    /// The month a time falls in, in the given offset.
    pub fn of(ms: i64, offset: i64) -> Month {
        let (year, month, _) = civil_from_days(local_day(ms, offset));
        Month { year, month }
    }

    /// [start, end) in ms.
    pub fn range(&self, offset: i64) -> (i64, i64) {
        let start = days_from_civil(self.year, self.month, 1);
        let (ny, nm) = if self.month == 12 {
            (self.year + 1, 1)
        } else {
            (self.year, self.month + 1)
        };
        let end = days_from_civil(ny, nm, 1);
        (
            (start * 86_400 - offset) * 1000,
            (end * 86_400 - offset) * 1000,
        )
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip() {
        for z in [-800_000, -1, 0, 1, 19_000, 20_000, 2_000_000] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn rfc3339_and_dtm() {
        let a = parse_rfc3339("2026-06-01T09:30:00+09:00").unwrap();
        let b = parse_rfc3339("2026-06-01T00:30:00Z").unwrap();
        assert_eq!(a, b);
        assert_eq!(parse_rfc3339("2026-06-01T00:30:00.250Z").unwrap(), b + 250);
        assert!(parse_rfc3339("2026-06-01T09:30:00").is_err());
        assert!(parse_rfc3339("2026-02-30T09:30:00Z").is_err());
        assert!(parse_rfc3339("yesterday").is_err());
        assert_eq!(parse_dtm("20260601093000+0900", 0), Some(a));
        assert_eq!(parse_dtm("202606010930", 9 * 3600), Some(a));
        assert_eq!(parse_dtm("20260601", 0), None);
        assert_eq!(format_ms(a, 9 * 3600), "2026-06-01T09:30:00+09:00");
    }

    #[test]
    fn months_in_local_time() {
        let m = Month::parse("2026-06").unwrap();
        let (s, e) = m.range(9 * 3600);
        assert_eq!(s, parse_rfc3339("2026-06-01T00:00:00+09:00").unwrap());
        assert_eq!(e, parse_rfc3339("2026-07-01T00:00:00+09:00").unwrap());
        assert_eq!(Month::of(s, 9 * 3600), m);
        assert_ne!(Month::of(s - 1, 9 * 3600), m);
        assert_eq!(
            Month::parse("2026-12").unwrap().range(0).1,
            days_from_civil(2027, 1, 1) * 86_400_000
        );
        assert!(Month::parse("2026-13").is_err());
        assert!(parse_date("2026-02-29").is_err());
        assert!(parse_offset("+9").is_err());
    }
}
