//! DICOM pieces shared by the receiving and forwarding sides: DIMSE command sets,
//! Part 10 file meta, the structural walk of a data set, and what readgate accepts.

pub mod dataset;
pub mod dimse;
pub mod part10;
pub mod sop_classes;
pub mod text;

pub const VERIFICATION_SOP_CLASS: &str = "1.2.840.10008.1.1";
pub const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";
pub const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";
pub const DEFLATED_EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1.99";
pub const EXPLICIT_VR_BE: &str = "1.2.840.10008.1.2.2";

/// Transfer syntaxes the SCP accepts, in the order readgate prefers them when a peer
/// proposes several (dicom-ul picks the peer's first one that is listed here).
pub const ACCEPTED_TRANSFER_SYNTAXES: &[&str] = &[
    EXPLICIT_VR_LE,
    IMPLICIT_VR_LE,
    DEFLATED_EXPLICIT_VR_LE,
    EXPLICIT_VR_BE,
    "1.2.840.10008.1.2.4.50",  // JPEG baseline (process 1)
    "1.2.840.10008.1.2.4.51",  // JPEG extended (process 2 & 4)
    "1.2.840.10008.1.2.4.57",  // JPEG lossless (process 14)
    "1.2.840.10008.1.2.4.70",  // JPEG lossless, first-order prediction (SV1)
    "1.2.840.10008.1.2.4.80",  // JPEG-LS lossless
    "1.2.840.10008.1.2.4.81",  // JPEG-LS near-lossless
    "1.2.840.10008.1.2.4.90",  // JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91",  // JPEG 2000
    "1.2.840.10008.1.2.4.201", // HTJ2K lossless
    "1.2.840.10008.1.2.4.202", // HTJ2K lossless RPCL
    "1.2.840.10008.1.2.4.203", // HTJ2K
    "1.2.840.10008.1.2.5",     // RLE lossless
];

/// Native (not encapsulated) encodings, which a destination may receive transcoded.
pub fn is_native(ts: &str) -> bool {
    matches!(
        ts,
        IMPLICIT_VR_LE | EXPLICIT_VR_LE | EXPLICIT_VR_BE | DEFLATED_EXPLICIT_VR_LE
    )
}

pub fn is_storage_sop_class(uid: &str) -> bool {
    sop_classes::STORAGE_SOP_CLASSES
        .iter()
        .any(|(u, _)| *u == uid)
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

#[cfg(test)]
mod tests {
    #[test]
    fn every_accepted_transfer_syntax_is_supported_by_the_stack() {
        for ts in super::ACCEPTED_TRANSFER_SYNTAXES {
            assert!(dicom_ul::association::server::is_supported(ts), "{ts}");
        }
    }
}
