//! DICOM pieces shared by the receiving and forwarding sides: DIMSE command sets,
//! Part 10 file meta, the structural walk of a data set, and what readgate accepts.

pub mod dataset;
pub mod dimse;
pub mod part10;
pub mod sop_classes;
pub mod text;

use dicom_dictionary_std::uids;
use std::io::{self, Read};

/// How much of a buffer [`fill`] filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filled {
    /// Every byte.
    All,
    /// None: the input ended cleanly before the first byte.
    Nothing,
    /// Some but not all: the input ended inside the buffer (truncated).
    Part,
}

/// An error with its causes, `: `-separated. dicom-ul's errors say only what failed (e.g.
/// "failed to handshake TLS connection"); the reason (rustls' `UnknownIssuer`, a PDU too
/// large) is their source.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Checks that the two bytes read as an explicit VR are one (two upper-case letters);
/// the error names them and the element's tag.
pub fn check_vr(vr: &[u8; 2], tag: u32) -> Result<(), String> {
    if vr.iter().all(u8::is_ascii_uppercase) {
        Ok(())
    } else {
        Err(format!(
            "invalid VR {:02X}{:02X} for ({:04X},{:04X})",
            vr[0],
            vr[1],
            tag >> 16,
            tag & 0xFFFF
        ))
    }
}

/// Fills `buf` from `r`, retrying interrupted reads: the one loop both walks of a data
/// set (receive and tag) read elements with, so that a clean end between elements is
/// told apart from a truncated element.
pub fn fill(r: &mut impl Read, buf: &mut [u8]) -> io::Result<Filled> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Ok(Filled::Nothing),
            Ok(0) => return Ok(Filled::Part),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Filled::All)
}

// UIDs are dicom-dictionary-std's; readgate's own knowledge is which it accepts and in
// what order it prefers them.
pub const VERIFICATION_SOP_CLASS: &str = uids::VERIFICATION;
pub const IMPLICIT_VR_LE: &str = uids::IMPLICIT_VR_LITTLE_ENDIAN;
pub const EXPLICIT_VR_LE: &str = uids::EXPLICIT_VR_LITTLE_ENDIAN;
pub const DEFLATED_EXPLICIT_VR_LE: &str = uids::DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN;
#[allow(deprecated)] // retired in PS3.5, still sent by old modalities and accepted
pub const EXPLICIT_VR_BE: &str = uids::EXPLICIT_VR_BIG_ENDIAN;

/// Transfer syntaxes the SCP accepts, in the order readgate prefers them when a peer
/// proposes several (dicom-ul picks the peer's first one that is listed here).
pub const ACCEPTED_TRANSFER_SYNTAXES: &[&str] = &[
    EXPLICIT_VR_LE,
    IMPLICIT_VR_LE,
    DEFLATED_EXPLICIT_VR_LE,
    EXPLICIT_VR_BE,
    uids::JPEG_BASELINE8_BIT,  // process 1
    uids::JPEG_EXTENDED12_BIT, // process 2 & 4
    uids::JPEG_LOSSLESS,       // process 14
    uids::JPEG_LOSSLESS_SV1,   // process 14, first-order prediction
    uids::JPEGLS_LOSSLESS,
    uids::JPEGLS_NEAR_LOSSLESS,
    uids::JPEG2000_LOSSLESS,
    uids::JPEG2000,
    uids::HTJ2K_LOSSLESS,
    uids::HTJ2K_LOSSLESS_RPCL,
    uids::HTJ2K,
    uids::RLE_LOSSLESS,
];

/// Native (not encapsulated) encodings, which a destination may receive transcoded.
pub fn is_native(ts: &str) -> bool {
    matches!(
        ts,
        IMPLICIT_VR_LE | EXPLICIT_VR_LE | EXPLICIT_VR_BE | DEFLATED_EXPLICIT_VR_LE
    )
}

pub fn is_storage_sop_class(uid: &str) -> bool {
    sop_classes::STORAGE_SOP_CLASSES.contains(&uid)
}

/// Explicit VRs whose header has two reserved bytes and a 32-bit length (PS3.5 §7.1.2).
pub fn has_long_length(vr: &[u8; 2]) -> bool {
    matches!(
        vr,
        b"OB"
            | b"OD"
            | b"OF"
            | b"OL"
            | b"OV"
            | b"OW"
            | b"SQ"
            | b"SV"
            | b"UC"
            | b"UN"
            | b"UR"
            | b"UT"
            | b"UV"
    )
}

/// Trims the padding DICOM allows on UIDs and AE titles received from the wire.
pub fn trim_uid(s: &str) -> &str {
    s.trim_end_matches(['\0', ' ']).trim_start()
}

/// A data set received in a DIMSE message (a C-FIND answer, an MPPS N-CREATE), read in
/// the presentation context's transfer syntax.
pub fn decode_dataset(
    bytes: &[u8],
    syntax: &str,
) -> Result<dicom_object::InMemDicomObject, String> {
    use dicom_encoding::TransferSyntaxIndex;
    let ts = dicom_transfer_syntax_registry::TransferSyntaxRegistry
        .get(trim_uid(syntax))
        .ok_or_else(|| format!("unknown transfer syntax {syntax}"))?;
    dicom_object::InMemDicomObject::read_dataset_with_ts(bytes, ts).map_err(|e| e.to_string())
}

/// A `2.25` UID (PS3.5 B.2) from 128 bits of a SHA-256 of `parts`: stable for the same
/// inputs, unique otherwise.
pub fn derived_uid(parts: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    let digest = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    format!("2.25.{}", u128::from_be_bytes(bytes))
}

/// A new UID for something readgate creates (an MPPS step a modality left unnamed):
/// derived from the time, the process and a counter, so no two are alike.
pub fn new_uid() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    derived_uid(&[
        "readgate new uid",
        &nanos.to_string(),
        &std::process::id().to_string(),
        &n.to_string(),
    ])
}

#[cfg(test)]
mod tests {
    #[test]
    fn accepted_transfer_syntaxes_are_unchanged() {
        // The UIDs readgate accepted when they were written out by hand, in order.
        let expected = [
            "1.2.840.10008.1.2.1",
            "1.2.840.10008.1.2",
            "1.2.840.10008.1.2.1.99",
            "1.2.840.10008.1.2.2",
            "1.2.840.10008.1.2.4.50",
            "1.2.840.10008.1.2.4.51",
            "1.2.840.10008.1.2.4.57",
            "1.2.840.10008.1.2.4.70",
            "1.2.840.10008.1.2.4.80",
            "1.2.840.10008.1.2.4.81",
            "1.2.840.10008.1.2.4.90",
            "1.2.840.10008.1.2.4.91",
            "1.2.840.10008.1.2.4.201",
            "1.2.840.10008.1.2.4.202",
            "1.2.840.10008.1.2.4.203",
            "1.2.840.10008.1.2.5",
        ];
        assert_eq!(super::ACCEPTED_TRANSFER_SYNTAXES, expected);
        assert_eq!(super::VERIFICATION_SOP_CLASS, "1.2.840.10008.1.1");
        assert!(super::is_storage_sop_class("1.2.840.10008.5.1.4.1.1.2"));
        assert!(!super::is_storage_sop_class("1.2.840.10008.1.20.1"));
    }

    #[test]
    fn every_accepted_transfer_syntax_is_supported_by_the_stack() {
        for ts in super::ACCEPTED_TRANSFER_SYNTAXES {
            assert!(dicom_ul::association::server::is_supported(ts), "{ts}");
        }
    }
}
