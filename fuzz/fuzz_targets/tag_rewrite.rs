//! The tag rewrite: a data set in any native, deflated or encapsulated transfer syntax
//! gets the accountability block and the missing context; whenever the input walks as
//! a valid data set, so does the output.
#![no_main]

use std::io::Cursor;
use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use readgate::dicom::dataset::{walk, Encoding};
use readgate::model::Disposition;
use readgate::tag::{tag_dataset, Accountability, ContextCopy};

const SYNTAXES: [&str; 5] = [
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.4.50",
];

fuzz_target!(|data: &[u8]| {
    let Some((&choice, bytes)) = data.split_first() else {
        return;
    };
    let ts = SYNTAXES[usize::from(choice) % SYNTAXES.len()];
    let acc = Accountability {
        gateway_id: "GW1".into(),
        sending_facility: "山田病院".into(),
        receiving_facility: "RC1".into(),
        policy_id: "jrs-2024".into(),
        policy_version: "1".into(),
        verdict: Disposition::Pass,
        reason_codes: vec![],
        evaluated_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_717_200_000),
        audit_ref: "audit:1".into(),
        prior_of: None,
    };
    let copy = if choice & 0x80 != 0 {
        ContextCopy {
            exam_purpose: Some("肺炎疑い".into()),
            ..ContextCopy::default()
        }
    } else {
        ContextCopy::default()
    };
    let mut out = Vec::new();
    if tag_dataset(Cursor::new(bytes), ts, &mut out, &acc, &copy).is_ok() {
        if let Ok(encoding) = Encoding::for_transfer_syntax(ts) {
            if ts != "1.2.840.10008.1.2.1.99" && walk(Cursor::new(bytes), encoding).is_ok() {
                walk(Cursor::new(&out), encoding).expect("valid input, invalid output");
            }
        }
    }
});
