use super::*;
use std::time::{Duration, UNIX_EPOCH};

const JST: i64 = 9 * 3600;

// --- day numbers (ported from ledger/time.rs and decide/policy.rs) ---------------

#[test]
fn calendar_day_numbers_round_trip() {
    for z in [-800_000, -1, 0, 1, 19_000, 20_000, 2_000_000] {
        let (y, m, d) = ymd_of_day(z).unwrap();
        assert_eq!(day_of_ymd(y, m, d), Some(z));
    }
    assert_eq!(day_of_ymd(1970, 1, 1), Some(0));
    assert_eq!(day_of_ymd(2000, 3, 1), Some(11_017));
    assert_eq!(day_of_ymd(1969, 12, 31), Some(-1));
    for (y, m, d) in [(1970, 1, 1), (2000, 2, 29), (2024, 12, 31), (1899, 3, 1)] {
        assert_eq!(ymd_of_day(day_of_ymd(y, m, d).unwrap()), Some((y, m, d)));
    }
}

#[test]
fn calendar_leap_days_and_year_boundaries() {
    assert!(day_of_ymd(2024, 2, 29).is_some());
    assert_eq!(day_of_ymd(2023, 2, 29), None);
    assert_eq!(day_of_ymd(1900, 2, 29), None);
    assert!(day_of_ymd(2000, 2, 29).is_some());
    assert_eq!(day_of_ymd(2024, 13, 1), None);
    assert_eq!(day_of_ymd(2024, 4, 31), None);
    assert_eq!(
        day_of_ymd(2024, 12, 31).map(|d| d + 1),
        day_of_ymd(2025, 1, 1)
    );
    // Rolling days run into the next month (the policy's and assembler's old behaviour).
    assert_eq!(day_of_ymd_rolling(2023, 2, 30), day_of_ymd(2023, 3, 2));
    assert_eq!(day_of_ymd_rolling(2024, 2, 30), day_of_ymd(2024, 3, 1));
    assert_eq!(day_of_ymd_rolling(2024, 12, 32), day_of_ymd(2025, 1, 1));
    assert_eq!(day_of_ymd_rolling(2024, 6, 1), day_of_ymd(2024, 6, 1));
    assert_eq!(day_of_ymd_rolling(2024, 6, 0), None);
    assert_eq!(day_of_ymd_rolling(2024, 0, 1), None);
    assert_eq!(day_of_ymd_rolling(i64::MAX, 1, 1), None);
}

#[test]
fn calendar_local_days_and_dates() {
    // 2024-06-01 00:30 JST is 2024-05-31 in UTC.
    let t = parse_rfc3339_ms("2024-06-01T00:30:00+09:00").unwrap();
    assert_eq!(format_local_date(t, JST), "2024-06-01");
    assert_eq!(format_local_date(t, 0), "2024-05-31");
    assert_eq!(format_local_date(-1, 0), "1969-12-31");
    assert_eq!(local_day(-1, 0), -1);
    assert_eq!(local_day(0, -1), -1);
    assert_eq!(local_day(0, 0), 0);
    assert_eq!(format_date(0), "1970-01-01");
    assert_eq!(format_date(day_of_ymd(2024, 2, 29).unwrap()), "2024-02-29");
    assert_eq!(
        parse_date("2026-06-01"),
        Ok(day_of_ymd(2026, 6, 1).unwrap())
    );
    assert_eq!(
        parse_date(" 2024-02-29 "),
        Ok(day_of_ymd(2024, 2, 29).unwrap())
    );
    for bad in [
        "2026-02-29",
        "2026-13-01",
        "2026-00-10",
        "2026-6-1",
        "26-06-01",
        "2026/06/01",
        "2026-06-01-",
        "２０２６-06-01",
        "",
    ] {
        assert!(parse_date(bad).is_err(), "{bad}");
    }
    assert!(parse_date("2026-02-30")
        .unwrap_err()
        .to_string()
        .contains("2026-02-30"));
}

#[test]
fn offsets() {
    assert_eq!(parse_offset("+09:00"), Ok(JST));
    assert_eq!(parse_offset("+0900"), Ok(JST));
    // Found by fuzzing (http_inputs): a multi-byte character among the digits.
    assert!(parse_offset("+0ҫ-").is_err());
    assert!(parse_rfc3339_ms("2024-06-01T6)0ҫ-").is_err());
    assert_eq!(parse_offset("-05:30"), Ok(-(5 * 3600 + 30 * 60)));
    assert_eq!(parse_offset("Z"), Ok(0));
    assert_eq!(parse_offset("z"), Ok(0));
    for bad in ["+9", "09:00", "+24:00", "+09:60", "+09:0a", "", "+"] {
        assert!(parse_offset(bad).is_err(), "{bad}");
    }
    assert_eq!(format_offset(JST), "+09:00");
    assert_eq!(format_offset(-(5 * 3600 + 30 * 60)), "-05:30");
    assert_eq!(format_offset(0), "+00:00");
}

// --- RFC 3339 (ported from ledger/time.rs and audit/chain.rs) ------------------------

#[test]
fn rfc3339_and_dtm() {
    let a = parse_rfc3339_ms("2026-06-01T09:30:00+09:00").unwrap();
    let b = parse_rfc3339_ms("2026-06-01T00:30:00Z").unwrap();
    assert_eq!(a, b);
    assert_eq!(
        parse_rfc3339_ms("2026-06-01T00:30:00.250Z").unwrap(),
        b + 250
    );
    assert!(parse_rfc3339_ms("2026-06-01T09:30:00").is_err());
    assert!(parse_rfc3339_ms("2026-02-30T09:30:00Z").is_err());
    assert!(parse_rfc3339_ms("yesterday").is_err());
    assert_eq!(parse_hl7_dtm("20260601093000+0900", 0), Ok(a));
    assert_eq!(parse_hl7_dtm("202606010930", JST), Ok(a));
    assert!(parse_hl7_dtm("20260601", 0).is_err());
    assert_eq!(format_ms(a, JST), "2026-06-01T09:30:00+09:00");
}

#[test]
fn rfc3339_edges() {
    assert_eq!(
        parse_rfc3339_ms("2024-04-01T09:00:00+09:00"),
        Ok(1_711_929_600_000)
    );
    assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Ok(0));
    assert_eq!(parse_rfc3339_ms("1969-12-31T23:59:59.999Z"), Ok(-1));
    assert_eq!(
        parse_rfc3339_ms("1970-01-01 00:00:00-05:00"),
        Ok(5 * 3600 * 1000)
    );
    assert_eq!(parse_rfc3339_ms("1970-01-01t00:00:00.123456789z"), Ok(123));
    assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00+0100"), Ok(-3_600_000));
    // A leap second reads as :59.
    assert_eq!(
        parse_rfc3339_ms("2016-12-31T23:59:60Z"),
        parse_rfc3339_ms("2016-12-31T23:59:59Z")
    );
    assert_eq!(
        parse_rfc3339_ms("2024-02-29T12:00:00Z").map(|t| t + 12 * 3_600_000),
        parse_rfc3339_ms("2024-03-01T00:00:00Z")
    );
    for bad in [
        "2023-02-29T00:00:00Z",
        "2024-06-01T24:00:00Z",
        "2024-06-01T12:60:00Z",
        "2024-06-01T12:00:61Z",
        "2024-06-01T12:00Z",
        "2024-06-01T12:00:00.Z",
        "2024-06-01T12:00:00.1aZ",
        "2024-06-01T12:00:00+9",
        "2024-06-01T12:00:00+09:00junk",
        "2024-06-01",
        "",
    ] {
        let e = parse_rfc3339_ms(bad).unwrap_err();
        assert!(matches!(e, TimeError::Rfc3339 { .. }), "{bad}: {e}");
    }
    assert_eq!(format_rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(
        format_rfc3339_ms(1_711_929_600_123),
        "2024-04-01T00:00:00.123Z"
    );
    assert_eq!(format_rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
    assert_eq!(format_rfc3339_ms(i64::MAX), "1970-01-01T00:00:00.000Z");
    assert_eq!(format_ms(-1, 0), "1969-12-31T23:59:59+00:00");
    assert_eq!(format_ms(0, -5 * 3600), "1969-12-31T19:00:00-05:00");
    assert_eq!(format_ms(0, JST), "1970-01-01T09:00:00+09:00");
}

#[test]
fn now_is_after_2024() {
    assert!(now_ms() > 1_704_067_200_000);
}

// --- months (ported from ledger/time.rs) ----------------------------------------------

#[test]
fn months_in_local_time() {
    let m = Month::parse("2026-06").unwrap();
    let (s, e) = m.range(JST);
    assert_eq!(s, parse_rfc3339_ms("2026-06-01T00:00:00+09:00").unwrap());
    assert_eq!(e, parse_rfc3339_ms("2026-07-01T00:00:00+09:00").unwrap());
    assert_eq!(Month::of(s, JST), m);
    assert_ne!(Month::of(s - 1, JST), m);
    assert_eq!(
        Month::parse("2026-12").unwrap().range(0).1,
        day_of_ymd(2027, 1, 1).unwrap() * 86_400_000
    );
    assert!(Month::parse("2026-13").is_err());
    assert!(parse_date("2026-02-29").is_err());
    assert!(parse_offset("+9").is_err());
}

#[test]
fn month_edges() {
    let feb = Month::parse("2024-02").unwrap();
    let (s, e) = feb.range(0);
    assert_eq!(e - s, 29 * 86_400_000);
    let (s, e) = Month::parse("2023-02").unwrap().range(0);
    assert_eq!(e - s, 28 * 86_400_000);
    // A negative offset: the month starts later in UTC.
    let (s, _) = Month::parse("2025-01").unwrap().range(-5 * 3600);
    assert_eq!(s, parse_rfc3339_ms("2025-01-01T05:00:00Z").unwrap());
    assert_eq!(
        Month::of(s - 1, -5 * 3600),
        Month {
            year: 2024,
            month: 12
        }
    );
    assert_eq!(Month::of(s, -5 * 3600).to_string(), "2025-01");
    for bad in [
        "2024-2",
        "2024-00",
        "24-02",
        "2024/02",
        "2024-02-01",
        "",
        "abcd-ef",
    ] {
        assert!(
            matches!(Month::parse(bad), Err(TimeError::Month(_))),
            "{bad}"
        );
    }
    assert_eq!(
        Month {
            year: i64::MAX,
            month: 1
        }
        .range(0),
        (0, 0)
    );
}

// --- DICOM (ported from decide/policy.rs and tag/encode.rs) ---------------------------

#[test]
fn dicom_da() {
    let d = day_of_ymd(2024, 6, 1).unwrap();
    assert_eq!(parse_dicom_da("20240601"), Ok(d));
    assert_eq!(parse_dicom_da("2024.06.01"), Ok(d));
    assert_eq!(parse_dicom_da(" 20240601 "), Ok(d));
    assert_eq!(
        parse_dicom_da("20240229"),
        day_of_ymd(2024, 2, 29).ok_or(TimeError::DicomDate(String::new()))
    );
    // The old readers rolled a day past the month's end into the next month.
    assert_eq!(
        parse_dicom_da("20230230"),
        Ok(day_of_ymd(2023, 3, 2).unwrap())
    );
    for bad in [
        "2024061",
        "202406011",
        "20241301",
        "20240600",
        "20240632",
        "2024O601",
        "",
    ] {
        assert!(
            matches!(parse_dicom_da(bad), Err(TimeError::DicomDate(_))),
            "{bad}"
        );
    }
    assert_eq!(format_dicom_da(d).as_deref(), Some("20240601"));
    assert_eq!(format_dicom_da(-1).as_deref(), Some("19691231"));
}

#[test]
fn dicom_tm() {
    assert_eq!(parse_dicom_tm("1015"), Ok((10 * 3600 + 15 * 60) * 1000));
    assert_eq!(parse_dicom_tm("10"), Ok(10 * 3600 * 1000));
    assert_eq!(
        parse_dicom_tm("10:15:30.25"),
        Ok((10 * 3600 + 15 * 60 + 30) * 1000 + 250)
    );
    assert_eq!(
        parse_dicom_tm("101530.123456"),
        Ok((10 * 3600 + 15 * 60 + 30) * 1000 + 123)
    );
    assert_eq!(parse_dicom_tm("235960"), Ok(86_400_000));
    for bad in ["2500", "1", "106000", "1015300", "10a5", ""] {
        assert!(
            matches!(parse_dicom_tm(bad), Err(TimeError::DicomTime(_))),
            "{bad}"
        );
    }
    assert_eq!(
        format_dicom_tm((10 * 3600 + 15 * 60 + 30) * 1000 + 250).as_deref(),
        Some("101530.250000")
    );
    assert_eq!(format_dicom_tm(-1), None);
    assert_eq!(format_dicom_tm(86_400_000), None);
}

#[test]
fn dicom_dt() {
    let t = parse_rfc3339_ms("2024-05-30T10:15:00+09:00").unwrap();
    assert_eq!(parse_dicom_dt("20240530101500", JST), Ok(t));
    assert_eq!(parse_dicom_dt("20240530101500+0900", 0), Ok(t));
    assert_eq!(parse_dicom_dt("20240530011500+0000", JST), Ok(t));
    assert_eq!(parse_dicom_dt("20240529201500-0500", JST), Ok(t));
    assert_eq!(parse_dicom_dt("20240530101500.5 ", JST), Ok(t + 500));
    assert_eq!(parse_dicom_dt("202405301015", JST), Ok(t));
    assert_eq!(
        parse_dicom_dt("2024", 0),
        parse_rfc3339_ms("2024-01-01T00:00:00Z")
    );
    assert_eq!(
        parse_dicom_dt("20240229", 0),
        parse_rfc3339_ms("2024-02-29T00:00:00Z")
    );
    for bad in [
        "20230229",
        "20241301",
        "2024053025",
        "202405301015.5",
        "20240530101500.1234567",
        "20240530101500+09",
        "20240530101500+2400",
        "2024-05-30",
        "",
    ] {
        assert!(
            matches!(parse_dicom_dt(bad, 0), Err(TimeError::DicomDateTime(_))),
            "{bad}"
        );
    }
}

#[test]
fn dicom_dt_formatting_is_utc_with_offset() {
    let t = UNIX_EPOCH + Duration::from_micros(1_743_675_010_123_456);
    assert_eq!(
        format_dicom_dt_utc(t).as_deref(),
        Some("20250403101010.123456+0000")
    );
    assert_eq!(
        format_dicom_dt_utc(UNIX_EPOCH).as_deref(),
        Some("19700101000000.000000+0000")
    );
    // A leap day.
    let t = UNIX_EPOCH + Duration::from_secs(951_782_400);
    assert_eq!(
        format_dicom_dt_utc(t).as_deref(),
        Some("20000229000000.000000+0000")
    );
    // The last second of a year.
    let t = UNIX_EPOCH + Duration::from_secs(1_735_689_599);
    assert_eq!(
        format_dicom_dt_utc(t).as_deref(),
        Some("20241231235959.000000+0000")
    );
    assert_eq!(
        format_dicom_dt_utc(UNIX_EPOCH - Duration::from_secs(1)),
        None
    );
    let year_10000 = UNIX_EPOCH + Duration::from_secs(253_402_300_800);
    assert_eq!(format_dicom_dt_utc(year_10000), None);
}

// --- HL7 (ported from hl7/message.rs and hl7/ack.rs) -------------------------------------

#[test]
fn hl7_dtm_conversion() {
    assert_eq!(hl7_dtm_to_iso("2024"), Some("2024".into()));
    assert_eq!(hl7_dtm_to_iso("202406"), Some("2024-06".into()));
    assert_eq!(hl7_dtm_to_iso("20240229"), Some("2024-02-29".into()));
    assert_eq!(hl7_dtm_to_iso("20230229"), None);
    assert_eq!(
        hl7_dtm_to_iso("2024060112"),
        Some("2024-06-01T12:00".into())
    );
    assert_eq!(
        hl7_dtm_to_iso("20240601123456.78-0500"),
        Some("2024-06-01T12:34:56.78-05:00".into())
    );
    assert_eq!(hl7_dtm_to_iso("20240601+0900"), Some("2024-06-01".into()));
    assert_eq!(hl7_dtm_to_iso("20241301"), None);
    assert_eq!(hl7_dtm_to_iso("2024060125"), None);
    assert_eq!(hl7_dtm_to_iso("2024-06-01"), None);
    assert_eq!(hl7_dtm_to_iso("２０２４"), None);
    assert_eq!(hl7_dtm_to_iso(""), None);
    assert_eq!(hl7_dtm_to_iso("20240601+09"), None);
    assert_eq!(hl7_dtm_to_iso("19000229"), None);
    assert_eq!(hl7_dtm_to_iso("20000229"), Some("2000-02-29".into()));
    assert_eq!(hl7_dtm_to_iso("20240601120000+1500"), None);
    assert_eq!(hl7_dtm_to_iso("202406011200.5"), None);
}

#[test]
fn hl7_dtm_instants() {
    let t = parse_rfc3339_ms("2024-06-01T12:34:56-05:00").unwrap();
    assert_eq!(parse_hl7_dtm("20240601123456-0500", JST), Ok(t));
    assert_eq!(parse_hl7_dtm("20240601123456", -5 * 3600), Ok(t));
    assert_eq!(parse_hl7_dtm("20240601123456.78-0500", 0), Ok(t + 780));
    // Hour precision is enough; a day is not.
    assert_eq!(
        parse_hl7_dtm("2024060112", 0),
        parse_rfc3339_ms("2024-06-01T12:00:00Z")
    );
    // Year boundary in a negative offset.
    assert_eq!(
        parse_hl7_dtm("202412312330-0100", 0),
        parse_rfc3339_ms("2025-01-01T00:30:00Z")
    );
    for bad in [
        "20240601",
        "202406",
        "2024",
        "20240230120000",
        "garbage",
        "",
    ] {
        assert!(
            matches!(parse_hl7_dtm(bad, 0), Err(TimeError::Hl7Dtm(_))),
            "{bad}"
        );
    }
}

#[test]
fn hl7_timestamp_formats_utc() {
    assert_eq!(format_hl7_dtm_utc(UNIX_EPOCH), "19700101000000+0000");
    let t = UNIX_EPOCH + Duration::from_secs(1_709_210_096); // 2024-02-29 12:34:56
    assert_eq!(format_hl7_dtm_utc(t), "20240229123456+0000");
    assert_eq!(
        format_hl7_dtm_utc(UNIX_EPOCH - Duration::from_secs(86_400)),
        "19700101000000+0000"
    );
}

// --- loose ISO (ported from decide/assemble.rs) ---------------------------------------

#[test]
fn iso_loose() {
    assert_eq!(parse_iso_loose_ms("1970-01-01", 0), Ok(0));
    assert_eq!(
        parse_iso_loose_ms("1970-01-02T00:00:00Z", 0),
        Ok(86_400_000)
    );
    assert_eq!(
        parse_iso_loose_ms("2024-05-30T10:15:00+09:00", 0),
        Ok(1_717_031_700_000)
    );
    assert!(parse_iso_loose_ms("garbage", 0).is_err());
    // Without an offset: local time at the default offset.
    assert_eq!(
        parse_iso_loose_ms("2024-05-30T10:15:00", JST),
        Ok(1_717_031_700_000)
    );
    assert_eq!(
        parse_iso_loose_ms("2024-05-30T10:15:00+09:00", 0),
        Ok(1_717_031_700_000)
    );
    assert_eq!(
        parse_iso_loose_ms("2024-05-30T01:15-00:00", JST),
        Ok(1_717_031_700_000)
    );
    assert_eq!(
        parse_dicom_da_tm_loose("20240530", Some("101500"), JST),
        Ok(1_717_031_700_000)
    );
    assert_eq!(
        parse_dicom_da_tm_loose("20240530", Some("1015"), JST),
        Ok(1_717_031_700_000)
    );
    assert_eq!(
        parse_dicom_da_tm_loose("20240530", None, 0),
        parse_rfc3339_ms("2024-05-30T00:00:00Z")
    );
    // Leap day, and the old roll-over of a day past the month's end.
    assert_eq!(
        parse_iso_loose_ms("2024-02-29T12:00:00Z", 0),
        parse_rfc3339_ms("2024-02-29T12:00:00Z")
    );
    assert_eq!(
        parse_iso_loose_ms("2023-02-29", 0),
        parse_rfc3339_ms("2023-03-01T00:00:00Z")
    );
    for bad in [
        "2024-13-01",
        "2024-06-00",
        "2024-06-32",
        "2024-06",
        "",
        "2024-06-01Tab",
    ] {
        assert!(parse_iso_loose_ms(bad, 0).is_err(), "{bad}");
    }
    // Not a panic on a multi-byte character across the date's tenth byte.
    assert!(parse_iso_loose_ms("2024-06-0€", 0).is_err());
    assert!(parse_dicom_da_tm_loose("2024", None, 0).is_err());
}
