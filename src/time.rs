//! The one clock and calendar of readgate: the current time, and every date/time text
//! format readgate reads or writes — DICOM DA, TM and DT; HL7 DTM; RFC 3339; `YYYY-MM-DD`
//! days and `YYYY-MM` report months. All calendar arithmetic is chrono's; no other module
//! converts between dates and instants.
//!
//! Conventions:
//! - An instant is an `i64` of **milliseconds since the Unix epoch, UTC** (as in the store).
//! - A day is an `i64` **day number**: days since 1970-01-01 (negative before it).
//! - A UTC offset is an `i64` of **seconds east of UTC** (`+09:00` is `32_400`). Callers
//!   configured in minutes (the policy's `utc_offset_minutes`) multiply by 60.
//! - A time without an offset (DICOM TM/DT, HL7 DTM) is local time at an offset the
//!   caller passes: the configured hospital offset.
//! - Parsers return [`TimeError`] naming the input they refused; the few lenient readers
//!   whose leniency decisions depend on say so in their documentation.

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use std::time::SystemTime;

const DAY_MS: i64 = 86_400_000;

/// A date/time text readgate could not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("{input:?}: expected a date YYYY-MM-DD{why}")]
    Date { input: String, why: &'static str },
    #[error("expected a UTC offset like +09:00, got {0:?}")]
    Offset(String),
    #[error(
        "{input:?}: expected an RFC 3339 date-time with an offset (2026-06-01T09:30:00+09:00){why}"
    )]
    Rfc3339 { input: String, why: &'static str },
    #[error("expected YYYY-MM with a month 01–12, got {0:?}")]
    Month(String),
    #[error("not a DICOM DA (YYYYMMDD): {0:?}")]
    DicomDate(String),
    #[error("not a DICOM TM (HH[MM[SS[.F]]]): {0:?}")]
    DicomTime(String),
    #[error("not a DICOM DT (YYYY[MM[DD[HH[MM[SS[.F]]]]]][&ZZXX]): {0:?}")]
    DicomDateTime(String),
    #[error("not an ISO 8601 date[-time] YYYY-MM-DD[THH:MM[:SS]][offset]: {0:?}")]
    Iso(String),
    #[error("not an HL7 DTM with at least an hour (YYYYMMDDHH[MM[SS[.S]]][+/-ZZZZ]): {0:?}")]
    Hl7Dtm(String),
}

// --- now and instants --------------------------------------------------------

/// Milliseconds since the Unix epoch: all times in the store use this.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// The UTC date-time of an instant; `None` outside chrono's range (±262,000 years).
fn utc(ms: i64) -> Option<NaiveDateTime> {
    DateTime::<Utc>::from_timestamp_millis(ms).map(|t| t.naive_utc())
}

// --- day numbers ---------------------------------------------------------------

fn epoch_date() -> NaiveDate {
    NaiveDate::default() // 1970-01-01
}

fn day_of(date: NaiveDate) -> i64 {
    date.signed_duration_since(epoch_date()).num_days()
}

fn date_of(day: i64) -> Option<NaiveDate> {
    let shift = Days::new(day.unsigned_abs());
    if day >= 0 {
        epoch_date().checked_add_days(shift)
    } else {
        epoch_date().checked_sub_days(shift)
    }
}

/// Day number of a valid proleptic Gregorian date; `None` for a date that does not exist.
pub fn day_of_ymd(year: i64, month: u32, day: u32) -> Option<i64> {
    let year = i32::try_from(year).ok()?;
    NaiveDate::from_ymd_opt(year, month, day).map(day_of)
}

/// Day number of a date whose day of the month may run past the month's end: day 30 of
/// February is 1 or 2 March. `month` must be 1–12 and `day` at least 1.
///
/// The policy's DICOM DA reader and the context assembler's ISO reader always accepted
/// such dates this way; they keep doing so, so that no hold decision changes.
pub fn day_of_ymd_rolling(year: i64, month: u32, day: u32) -> Option<i64> {
    let year = i32::try_from(year).ok()?;
    let first = NaiveDate::from_ymd_opt(year, month, 1)?;
    first
        .checked_add_days(Days::new(u64::from(day.checked_sub(1)?)))
        .map(day_of)
}

/// (year, month, day) of a day number; `None` outside chrono's range.
pub fn ymd_of_day(day: i64) -> Option<(i64, u32, u32)> {
    date_of(day).map(|d| (i64::from(d.year()), d.month(), d.day()))
}

/// Local day number of an instant at `offset` seconds east of UTC.
pub fn local_day(ms: i64, offset: i64) -> i64 {
    ms.saturating_add(offset.saturating_mul(1000))
        .div_euclid(DAY_MS)
}

fn digits_u32(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `YYYY-MM-DD` → day number (exactly four, two and two digits; the date must exist).
pub fn parse_date(s: &str) -> Result<i64, TimeError> {
    let bad = |why| TimeError::Date {
        input: s.to_string(),
        why,
    };
    let parts: Vec<&str> = s.trim().split('-').collect();
    let [y, m, d] = parts[..] else {
        return Err(bad(""));
    };
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return Err(bad(""));
    }
    let (Some(y), Some(m), Some(d)) = (digits_u32(y), digits_u32(m), digits_u32(d)) else {
        return Err(bad(": expected digits"));
    };
    day_of_ymd(i64::from(y), m, d).ok_or_else(|| bad(": that day does not exist"))
}

/// Day number → `YYYY-MM-DD`.
pub fn format_date(day: i64) -> String {
    match date_of(day) {
        Some(d) => d.format("%Y-%m-%d").to_string(),
        None => String::new(),
    }
}

/// The local date (`YYYY-MM-DD`) of an instant at `offset` seconds east of UTC.
pub fn format_local_date(ms: i64, offset: i64) -> String {
    format_date(local_day(ms, offset))
}

// --- UTC offsets -----------------------------------------------------------------

/// `+09:00`, `-0500`, `Z` → seconds east of UTC (hours up to 23).
pub fn parse_offset(s: &str) -> Result<i64, TimeError> {
    let s = s.trim();
    if s == "Z" || s == "z" {
        return Ok(0);
    }
    let bad = || TimeError::Offset(s.to_string());
    let (sign, rest) = match s.as_bytes().first() {
        Some(b'+') => (1, &s[1..]),
        Some(b'-') => (-1, &s[1..]),
        _ => return Err(bad()),
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    // Four ASCII digits (a multi-byte character would make the slices below panic).
    if digits.len() != 4 || !digits.is_ascii() {
        return Err(bad());
    }
    let h = digits_u32(&digits[..2]).ok_or_else(bad)?;
    let m = digits_u32(&digits[2..]).ok_or_else(bad)?;
    if h > 23 || m > 59 {
        return Err(bad());
    }
    Ok(sign * i64::from(h * 3600 + m * 60))
}

/// Seconds east of UTC → `+09:00` (seconds below a minute are dropped).
pub fn format_offset(secs: i64) -> String {
    let sign = if secs < 0 { '-' } else { '+' };
    let a = secs.unsigned_abs();
    format!("{sign}{:02}:{:02}", a / 3600, (a % 3600) / 60)
}

// --- RFC 3339 ----------------------------------------------------------------------

/// RFC 3339 date-time with an offset → ms (`2026-06-01T09:30:00+09:00`; `t` or a space
/// may separate date and time; fractions of any length, read to the millisecond; the
/// offset may omit its colon; a leap second `:60` reads as `:59`).
pub fn parse_rfc3339_ms(s: &str) -> Result<i64, TimeError> {
    let s = s.trim();
    let bad = |why| TimeError::Rfc3339 {
        input: s.to_string(),
        why,
    };
    let t = s.find(['T', 't', ' ']).ok_or_else(|| bad(""))?;
    let (date, rest) = (&s[..t], &s[t + 1..]);
    let day = parse_date(date).map_err(|_| bad(": the date is not YYYY-MM-DD"))?;
    let off_at = rest
        .find(['Z', 'z', '+', '-'])
        .ok_or_else(|| bad(": the offset (Z or +09:00) is missing"))?;
    let (clock, offset) = (&rest[..off_at], &rest[off_at..]);
    let offset = parse_offset(offset).map_err(|_| bad(": the offset is not Z or ±hh:mm"))?;
    let (hms, frac) = match clock.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (clock, None),
    };
    let parts: Vec<&str> = hms.split(':').collect();
    let [h, mi, se] = parts[..] else {
        return Err(bad(": expected hh:mm:ss"));
    };
    if [h, mi, se].iter().any(|p| p.len() != 2) {
        return Err(bad(": expected hh:mm:ss"));
    }
    let (Some(h), Some(mi), Some(se)) = (digits_u32(h), digits_u32(mi), digits_u32(se)) else {
        return Err(bad(": expected hh:mm:ss"));
    };
    if se > 60 {
        return Err(bad(": the time is out of range"));
    }
    let time = NaiveTime::from_hms_opt(h, mi, se.min(59))
        .ok_or_else(|| bad(": the time is out of range"))?;
    let ms = match frac {
        Some(f) => millis_of_fraction(f).ok_or_else(|| bad(": the fraction is not digits"))?,
        None => 0,
    };
    let date = date_of(day).ok_or_else(|| bad(""))?;
    let secs = date.and_time(time).and_utc().timestamp() - offset;
    Ok(secs * 1000 + ms)
}

/// `"25"` → 250: the first three digits of a decimal fraction of a second.
fn millis_of_fraction(f: &str) -> Option<i64> {
    if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let first: String = f.chars().take(3).collect();
    Some(i64::from(first.parse::<u32>().ok()?) * 10_i64.pow(3 - first.len() as u32))
}

/// `2025-04-01T09:30:00.123Z` (UTC, milliseconds): the audit trail's form. The Unix
/// epoch for a time chrono cannot represent.
pub fn format_rfc3339_ms(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// ms → `2026-06-01T09:30:00+09:00` at `offset` seconds east of UTC (whole seconds).
pub fn format_ms(ms: i64, offset: i64) -> String {
    let local = utc(ms
        .div_euclid(1000)
        .saturating_add(offset)
        .saturating_mul(1000))
    .unwrap_or_default();
    format!(
        "{}{}",
        local.format("%Y-%m-%dT%H:%M:%S"),
        format_offset(offset)
    )
}

// --- report months -----------------------------------------------------------------

/// A report month.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Month {
    pub year: i64,
    pub month: u32,
}

impl Month {
    /// `YYYY-MM`.
    pub fn parse(s: &str) -> Result<Month, TimeError> {
        let bad = || TimeError::Month(s.to_string());
        let (y, m) = s.trim().split_once('-').ok_or_else(bad)?;
        if y.len() != 4 || m.len() != 2 {
            return Err(bad());
        }
        let (year, month) = (
            digits_u32(y).ok_or_else(bad)?,
            digits_u32(m).ok_or_else(bad)?,
        );
        if !(1..=12).contains(&month) {
            return Err(bad());
        }
        Ok(Month {
            year: i64::from(year),
            month,
        })
    }

    /// The month an instant falls in, at `offset` seconds east of UTC.
    pub fn of(ms: i64, offset: i64) -> Month {
        let (year, month, _) = ymd_of_day(local_day(ms, offset)).unwrap_or((1970, 1, 1));
        Month { year, month }
    }

    /// [start, end) in ms, the month's bounds in local time at `offset` seconds east of
    /// UTC. A month outside chrono's range (never one [`Month::parse`] returns) is empty.
    pub fn range(&self, offset: i64) -> (i64, i64) {
        let first = i32::try_from(self.year)
            .ok()
            .and_then(|y| NaiveDate::from_ymd_opt(y, self.month, 1));
        let Some((start, end)) =
            first.and_then(|f| Some((f, f.checked_add_months(Months::new(1))?)))
        else {
            return (0, 0);
        };
        let ms = |d: NaiveDate| (day_of(d) * 86_400 - offset) * 1000;
        (ms(start), ms(end))
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

// --- DICOM DA, TM, DT ------------------------------------------------------------------

fn digits_i64(s: &str, from: usize, len: usize) -> Option<i64> {
    let part = s.get(from..from + len)?;
    if part.bytes().all(|b| b.is_ascii_digit()) {
        part.parse().ok()
    } else {
        None
    }
}

/// DICOM DA `YYYYMMDD` (also the retired `YYYY.MM.DD`) → day number. Lenient as the
/// policy always was: a day 1–31 past the month's end rolls into the next month
/// (see [`day_of_ymd_rolling`]).
pub fn parse_dicom_da(s: &str) -> Result<i64, TimeError> {
    let bad = || TimeError::DicomDate(s.to_string());
    let d: String = s.trim().chars().filter(|c| *c != '.').collect();
    if d.len() != 8 {
        return Err(bad());
    }
    let (y, m, dd) = (
        digits_i64(&d, 0, 4).ok_or_else(bad)?,
        digits_i64(&d, 4, 2).ok_or_else(bad)?,
        digits_i64(&d, 6, 2).ok_or_else(bad)?,
    );
    if !(1..=12).contains(&m) || !(1..=31).contains(&dd) {
        return Err(bad());
    }
    day_of_ymd_rolling(y, m as u32, dd as u32).ok_or_else(bad)
}

/// Day number → DICOM DA `YYYYMMDD`.
pub fn format_dicom_da(day: i64) -> Option<String> {
    date_of(day).map(|d| d.format("%Y%m%d").to_string())
}

/// DICOM TM `HH[MM[SS[.F…]]]` (also the retired `HH:MM:SS`) → ms since midnight (read
/// to the millisecond; a leap second `60` is kept as 60 s into the minute).
pub fn parse_dicom_tm(s: &str) -> Result<i64, TimeError> {
    let bad = || TimeError::DicomTime(s.to_string());
    let t: String = s.trim().chars().filter(|c| *c != ':').collect();
    let (hms, frac) = t.split_once('.').unwrap_or((&t, ""));
    if hms.len() < 2 || hms.len() % 2 != 0 || hms.len() > 6 {
        return Err(bad());
    }
    let h = digits_i64(hms, 0, 2).ok_or_else(bad)?;
    let m = if hms.len() >= 4 {
        digits_i64(hms, 2, 2).ok_or_else(bad)?
    } else {
        0
    };
    let sec = if hms.len() == 6 {
        digits_i64(hms, 4, 2).ok_or_else(bad)?
    } else {
        0
    };
    if h > 23 || m > 59 || sec > 60 {
        return Err(bad());
    }
    // A fraction that is not digits is ignored, as the policy always did.
    let ms = millis_of_fraction(frac).unwrap_or(0);
    Ok(((h * 60 + m) * 60 + sec) * 1000 + ms)
}

/// ms since midnight → DICOM TM `HHMMSS.FFFFFF`.
pub fn format_dicom_tm(ms_of_day: i64) -> Option<String> {
    let ms = u32::try_from(ms_of_day).ok()?;
    let t = NaiveTime::from_num_seconds_from_midnight_opt(ms / 1000, (ms % 1000) * 1_000_000)?;
    Some(t.format("%H%M%S.%6f").to_string())
}

/// DICOM DT `YYYY[MM[DD[HH[MM[SS[.F{1,6}]]]]]][&ZZXX]` → ms. Missing components are the
/// first of their range (`2024` is 2024-01-01 00:00); without an offset suffix the time
/// is local at `default_offset` seconds east of UTC.
pub fn parse_dicom_dt(s: &str, default_offset: i64) -> Result<i64, TimeError> {
    let bad = || TimeError::DicomDateTime(s.to_string());
    let t = s.trim_end_matches([' ', '\0']).trim_start();
    let (main, offset) = match t.find(['+', '-']) {
        Some(i) => {
            let o = &t[i..];
            if o.len() != 5 {
                return Err(bad());
            }
            (&t[..i], parse_offset(o).map_err(|_| bad())?)
        }
        None => (t, default_offset),
    };
    let (digits, frac) = match main.split_once('.') {
        Some((d, f)) => (d, Some(f)),
        None => (main, None),
    };
    if !digits.bytes().all(|b| b.is_ascii_digit()) || ![4, 6, 8, 10, 12, 14].contains(&digits.len())
    {
        return Err(bad());
    }
    let part = |from: usize, default: u32| -> Option<u32> {
        match digits.get(from..from + 2) {
            Some(p) => p.parse().ok(),
            None => Some(default),
        }
    };
    let year = digits_u32(&digits[..4]).ok_or_else(bad)?;
    let date = NaiveDate::from_ymd_opt(
        year as i32,
        part(4, 1).ok_or_else(bad)?,
        part(6, 1).ok_or_else(bad)?,
    )
    .ok_or_else(bad)?;
    let time = NaiveTime::from_hms_opt(
        part(8, 0).ok_or_else(bad)?,
        part(10, 0).ok_or_else(bad)?,
        part(12, 0).ok_or_else(bad)?,
    )
    .ok_or_else(bad)?;
    let ms = match frac {
        Some(f) if digits.len() == 14 && f.len() <= 6 => millis_of_fraction(f).ok_or_else(bad)?,
        Some(_) => return Err(bad()),
        None => 0,
    };
    Ok((date.and_time(time).and_utc().timestamp() - offset) * 1000 + ms)
}

/// A DICOM DT in UTC with microseconds and an explicit `+0000` offset, e.g.
/// `20250403101010.000000+0000` (26 characters: the DT maximum, and even).
///
/// `None` for times before 1970 or after 9999, which DT cannot or should not express
/// here (a clock that far off is a fault worth refusing).
pub fn format_dicom_dt_utc(t: SystemTime) -> Option<String> {
    t.duration_since(SystemTime::UNIX_EPOCH).ok()?;
    let t = DateTime::<Utc>::from(t);
    if t.year() > 9999 {
        return None;
    }
    Some(t.format("%Y%m%d%H%M%S.%6f+0000").to_string())
}

// --- loose ISO 8601 (the context assembler's reading) ---------------------------------

/// `YYYY-MM-DD[THH[:MM[:SS[.f]]]][Z|±HH[:MM]]` → ms, read loosely as the clinical context
/// assembler always has (HL7 times arrive here already converted by [`hl7_dtm_to_iso`]):
/// numbers are not checked against their ranges except month 1–12 and day 1–31, a day
/// past the month's end rolls over ([`day_of_ymd_rolling`]), and a time without an offset
/// is local at `default_offset` seconds east of UTC.
pub fn parse_iso_loose_ms(s: &str, default_offset: i64) -> Result<i64, TimeError> {
    let bad = || TimeError::Iso(s.to_string());
    let has_zone = s
        .get(10..)
        .is_some_and(|t| t.contains(['+', 'Z']) || t.rfind('-').is_some());
    let cut = s.len().min(10);
    if !s.is_char_boundary(cut) {
        return Err(bad());
    }
    let (date, rest) = s.split_at(cut);
    let mut d = date.split('-');
    let mut field =
        || -> Result<i64, TimeError> { d.next().and_then(|p| p.parse().ok()).ok_or_else(bad) };
    let (y, mo, da) = (field()?, field()?, field()?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) {
        return Err(bad());
    }
    let mut secs = 0i64;
    let mut offset = 0i64;
    if let Some(t) = rest.strip_prefix('T') {
        let (clock, zone) = match t.find(['+', '-', 'Z']) {
            Some(i) => t.split_at(i),
            None => (t, ""),
        };
        let mut parts = clock.split(':');
        let h: i64 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let mi: i64 = parts.next().unwrap_or("0").parse().map_err(|_| bad())?;
        let sec: f64 = parts.next().unwrap_or("0").parse().map_err(|_| bad())?;
        secs = h * 3600 + mi * 60 + sec as i64;
        if let Some(z) = zone.strip_prefix(['+', '-']) {
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            let mut zp = z.split(':');
            let zh: i64 = zp.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
            let zm: i64 = zp.next().unwrap_or("0").parse().map_err(|_| bad())?;
            offset = sign * (zh * 3600 + zm * 60);
        }
    }
    let days = day_of_ymd_rolling(y, mo as u32, da as u32).ok_or_else(bad)?;
    let ms = (days * 86_400 + secs - offset) * 1000;
    Ok(if has_zone {
        ms
    } else {
        ms - default_offset * 1000
    })
}

/// DICOM DA (+ optional TM) in local time at `default_offset` seconds east of UTC → ms,
/// read loosely as the context assembler always has: the TM's first three digit pairs
/// (`HH`, `HHMM`, `HHMMSS`; a fraction is ignored), through [`parse_iso_loose_ms`].
/// The policy's own reading of the study date and time is [`parse_dicom_da`] and
/// [`parse_dicom_tm`].
pub fn parse_dicom_da_tm_loose(
    da: &str,
    tm: Option<&str>,
    default_offset: i64,
) -> Result<i64, TimeError> {
    let bad = || TimeError::DicomDate(da.to_string());
    let d = da.trim();
    let date = format!(
        "{}-{}-{}",
        d.get(0..4).ok_or_else(bad)?,
        d.get(4..6).ok_or_else(bad)?,
        d.get(6..8).ok_or_else(bad)?
    );
    let tm = tm.map(str::trim).unwrap_or("");
    let time = match (tm.get(0..2), tm.get(2..4), tm.get(4..6)) {
        (Some(h), Some(m), Some(s)) => format!("T{h}:{m}:{s}"),
        (Some(h), Some(m), None) => format!("T{h}:{m}:00"),
        (Some(h), None, None) => format!("T{h}:00:00"),
        _ => String::new(),
    };
    parse_iso_loose_ms(&format!("{date}{time}"), default_offset)
}

// --- HL7 DTM -------------------------------------------------------------------------

/// HL7 DTM (`YYYY[MM[DD[HH[MM[SS[.S+]]]]]][+/-ZZZZ]`) to ISO 8601 at the same precision
/// (`20240601123456.78-0500` → `2024-06-01T12:34:56.78-05:00`); an offset is kept only
/// with a time of day. `None` when not a valid DTM.
pub fn hl7_dtm_to_iso(raw: &str) -> Option<String> {
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
            NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)?;
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

/// HL7 DTM (`YYYYMMDDHH[MM[SS[.S]]][+ZZZZ]`) → ms; without an offset the time is local at
/// `default_offset` seconds east of UTC. A DTM without an hour is refused (a day is not a
/// reading time).
pub fn parse_hl7_dtm(raw: &str, default_offset: i64) -> Result<i64, TimeError> {
    let bad = || TimeError::Hl7Dtm(raw.to_string());
    let iso = hl7_dtm_to_iso(raw).ok_or_else(bad)?;
    // 2024-06-01T12:34[:56[.s]][+09:00]
    let (date, rest) = iso.split_once('T').ok_or_else(bad)?;
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
    parse_rfc3339_ms(&format!("{date}T{clock}{offset}")).map_err(|_| bad())
}

/// HL7 DTM of an instant in UTC with an explicit `+0000` offset (`YYYYMMDDHHMMSS+0000`),
/// as an ACK's MSH-7. Times before 1970 are clamped to the epoch.
pub fn format_hl7_dtm_utc(t: SystemTime) -> String {
    let t = t.max(SystemTime::UNIX_EPOCH);
    DateTime::<Utc>::from(t)
        .format("%Y%m%d%H%M%S+0000")
        .to_string()
}

#[cfg(test)]
mod tests;
