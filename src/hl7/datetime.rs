//! Every date/time function of the HL7 library, in one place: HL7 DTM to ISO 8601
//! and the DTM of an ACK's MSH-7. Moved here unchanged from `message.rs` and
//! `ack.rs` so that the crate-wide clock (`crate::time`) can replace them in one step.

use std::time::{SystemTime, UNIX_EPOCH};

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        2 => 28,
        _ => 0,
    }
}

/// HL7 DTM (`YYYY[MM[DD[HH[MM[SS[.S+]]]]]][+/-ZZZZ]`) to ISO 8601 at the same
/// precision. `None` when not a valid DTM.
pub fn dtm_to_iso(raw: &str) -> Option<String> {
    let s = raw.trim();
    let (main, offset) = match s.find(['+', '-']) {
        Some(i) => (&s[..i], Some(&s[i..])),
        None => (s, None),
    };
    let (digits, fraction) = match main.find('.') {
        Some(i) => (&main[..i], Some(&main[i + 1..])),
        None => (main, None),
    };
    if !digits.bytes().all(|b| b.is_ascii_digit()) || ![4, 6, 8, 10, 12, 14].contains(&digits.len())
    {
        return None;
    }
    let num = |from: usize, len: usize| {
        digits
            .get(from..from + len)
            .and_then(|p| p.parse::<u32>().ok())
    };
    let year = num(0, 4)?;
    let mut out = format!("{year:04}");
    if digits.len() >= 6 {
        let month = num(4, 2)?;
        if !(1..=12).contains(&month) {
            return None;
        }
        out.push_str(&format!("-{month:02}"));
        if digits.len() >= 8 {
            let day = num(6, 2)?;
            if day < 1 || day > days_in_month(year, month) {
                return None;
            }
            out.push_str(&format!("-{day:02}"));
        }
    }
    if digits.len() >= 10 {
        let hour = num(8, 2)?;
        let minute = if digits.len() >= 12 { num(10, 2)? } else { 0 };
        if hour > 23 || minute > 59 {
            return None;
        }
        out.push_str(&format!("T{hour:02}:{minute:02}"));
        if digits.len() >= 14 {
            let second = num(12, 2)?;
            if second > 60 {
                return None;
            }
            out.push_str(&format!(":{second:02}"));
            if let Some(f) = fraction {
                if f.is_empty() || f.len() > 4 || !f.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                out.push('.');
                out.push_str(f);
            }
        } else if fraction.is_some() {
            return None;
        }
    } else if fraction.is_some() {
        return None;
    }
    if let Some(o) = offset {
        let sign = o.get(..1)?;
        let hhmm = o.get(1..)?;
        if hhmm.len() != 4 || !hhmm.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let (h, m) = (
            hhmm.get(..2)?.parse::<u32>().ok()?,
            hhmm.get(2..)?.parse::<u32>().ok()?,
        );
        if h > 14 || m > 59 {
            return None;
        }
        // An offset is only meaningful with a time of day.
        if digits.len() >= 10 {
            out.push_str(&format!("{sign}{h:02}:{m:02}"));
        }
    }
    Some(out)
}

/// HL7 DTM for a point in time, in UTC with an explicit `+0000` offset
/// (`YYYYMMDDHHMMSS+0000`). Times before 1970 are clamped to the epoch.
pub fn timestamp(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}+0000",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamp_formats_utc() {
        assert_eq!(timestamp(UNIX_EPOCH), "19700101000000+0000");
        let t = UNIX_EPOCH + Duration::from_secs(1_709_210_096); // 2024-02-29 12:34:56
        assert_eq!(timestamp(t), "20240229123456+0000");
    }
}
