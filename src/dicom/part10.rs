//! DICOM Part 10 files: the preamble and file meta group readgate writes in front of a
//! received data set, and the reading of that group back when forwarding.
//!
//! The data set bytes themselves are never re-encoded: they are streamed to disk as they
//! arrive and streamed out again, so bytes readgate does not change reach the reader as
//! they were sent.

use std::io::{self, Read};

/// readgate's own Implementation Class UID (a UUID-derived UID under 2.25, PS3.5 §B.2).
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.291046947089623362715746525608297232024";
pub const IMPLEMENTATION_VERSION_NAME: &str = concat!("READGATE_", env!("CARGO_PKG_VERSION"));

pub const PREAMBLE_LEN: usize = 128;

/// What the file meta group says about the data set that follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub transfer_syntax: String,
    pub source_ae: Option<String>,
    /// Byte offset of the data set in the file.
    pub dataset_offset: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("not a DICOM Part 10 file (no DICM prefix)")]
    NotPart10,
    #[error("file meta group is malformed: {0}")]
    Malformed(&'static str),
    #[error("file meta group lacks {0}")]
    Missing(&'static str),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Preamble, `DICM` and the file meta group (explicit VR little endian, PS3.10 §7.1).
pub fn encode_file_meta(
    sop_class_uid: &str,
    sop_instance_uid: &str,
    transfer_syntax: &str,
    source_ae: &str,
) -> Vec<u8> {
    let mut group = Vec::with_capacity(256);
    push_explicit(&mut group, 0x0001, b"OB", &[0, 1]);
    push_explicit(&mut group, 0x0002, b"UI", &uid_bytes(sop_class_uid));
    push_explicit(&mut group, 0x0003, b"UI", &uid_bytes(sop_instance_uid));
    push_explicit(&mut group, 0x0010, b"UI", &uid_bytes(transfer_syntax));
    push_explicit(
        &mut group,
        0x0012,
        b"UI",
        &uid_bytes(IMPLEMENTATION_CLASS_UID),
    );
    push_explicit(
        &mut group,
        0x0013,
        b"SH",
        &text_bytes(IMPLEMENTATION_VERSION_NAME),
    );
    let ae = source_ae.trim();
    if !ae.is_empty() {
        push_explicit(&mut group, 0x0016, b"AE", &text_bytes(ae));
    }
    let mut out = Vec::with_capacity(PREAMBLE_LEN + 4 + 12 + group.len());
    out.resize(PREAMBLE_LEN, 0);
    out.extend_from_slice(b"DICM");
    push_explicit(&mut out, 0x0000, b"UL", &(group.len() as u32).to_le_bytes());
    out.extend_from_slice(&group);
    out
}

fn uid_bytes(uid: &str) -> Vec<u8> {
    let mut v = uid.as_bytes().to_vec();
    if v.len() % 2 == 1 {
        v.push(0);
    }
    v
}

fn text_bytes(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    if v.len() % 2 == 1 {
        v.push(b' ');
    }
    v
}

fn push_explicit(out: &mut Vec<u8>, element: u16, vr: &[u8; 2], value: &[u8]) {
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&element.to_le_bytes());
    out.extend_from_slice(vr);
    if vr == b"OB" {
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    } else {
        out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    }
    out.extend_from_slice(value);
}

/// Reads preamble and file meta group, leaving `reader` at the start of the data set.
pub fn read_file_meta<R: Read>(reader: &mut R) -> Result<FileMeta, MetaError> {
    let mut head = [0u8; PREAMBLE_LEN + 4];
    reader.read_exact(&mut head).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => MetaError::NotPart10,
        _ => MetaError::Io(e),
    })?;
    if &head[PREAMBLE_LEN..] != b"DICM" {
        return Err(MetaError::NotPart10);
    }
    let mut offset = (PREAMBLE_LEN + 4) as u64;
    // The group length element comes first; it bounds how much is read.
    let (element, value) = read_explicit_element(reader, &mut offset)?;
    if element != 0x0000 || value.len() != 4 {
        return Err(MetaError::Malformed("first element is not (0002,0000) UL"));
    }
    let group_len = u32::from_le_bytes([value[0], value[1], value[2], value[3]]) as u64;
    if group_len > 64 * 1024 {
        return Err(MetaError::Malformed("group length over 64 KiB"));
    }
    let end = offset + group_len;
    let (mut class, mut instance, mut ts, mut ae) = (None, None, None, None);
    while offset < end {
        let (element, value) = read_explicit_element(reader, &mut offset)?;
        let text = || {
            String::from_utf8_lossy(&value)
                .trim_end_matches(['\0', ' '])
                .to_string()
        };
        match element {
            0x0002 => class = Some(text()),
            0x0003 => instance = Some(text()),
            0x0010 => ts = Some(text()),
            0x0016 => ae = Some(text()),
            _ => {}
        }
    }
    if offset != end {
        return Err(MetaError::Malformed(
            "group length does not end on an element",
        ));
    }
    Ok(FileMeta {
        sop_class_uid: class.ok_or(MetaError::Missing("(0002,0002) Media Storage SOP Class"))?,
        sop_instance_uid: instance
            .ok_or(MetaError::Missing("(0002,0003) Media Storage SOP Instance"))?,
        transfer_syntax: ts.ok_or(MetaError::Missing("(0002,0010) Transfer Syntax"))?,
        source_ae: ae.filter(|a| !a.is_empty()),
        dataset_offset: end,
    })
}

fn read_explicit_element<R: Read>(
    reader: &mut R,
    offset: &mut u64,
) -> Result<(u16, Vec<u8>), MetaError> {
    let mut h = [0u8; 8];
    reader.read_exact(&mut h)?;
    let group = u16::from_le_bytes([h[0], h[1]]);
    let element = u16::from_le_bytes([h[2], h[3]]);
    if group != 0x0002 {
        return Err(MetaError::Malformed("element outside group 0002"));
    }
    let vr = [h[4], h[5]];
    let (len, header_len) = if super::has_long_length(&vr) {
        let mut l = [0u8; 4];
        reader.read_exact(&mut l)?;
        (u32::from_le_bytes(l) as usize, 12u64)
    } else {
        (u16::from_le_bytes([h[6], h[7]]) as usize, 8u64)
    };
    if len > 64 * 1024 {
        return Err(MetaError::Malformed("element longer than 64 KiB"));
    }
    let mut value = vec![0u8; len];
    reader.read_exact(&mut value)?;
    *offset += header_len + len as u64;
    Ok((element, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trips() {
        let bytes = encode_file_meta(
            "1.2.840.10008.5.1.4.1.1.2",
            "1.2.3.4",
            "1.2.840.10008.1.2.1",
            "CT01",
        );
        let meta = read_file_meta(&mut &bytes[..]).unwrap();
        assert_eq!(meta.sop_class_uid, "1.2.840.10008.5.1.4.1.1.2");
        assert_eq!(meta.sop_instance_uid, "1.2.3.4");
        assert_eq!(meta.transfer_syntax, "1.2.840.10008.1.2.1");
        assert_eq!(meta.source_ae.as_deref(), Some("CT01"));
        assert_eq!(meta.dataset_offset, bytes.len() as u64);
    }

    #[test]
    fn garbage_is_rejected() {
        assert!(matches!(
            read_file_meta(&mut &b"short"[..]),
            Err(MetaError::NotPart10)
        ));
        let mut bytes = encode_file_meta("1.2", "3.4", "1.2.840.10008.1.2", "");
        bytes.truncate(150);
        assert!(read_file_meta(&mut &bytes[..]).is_err());
    }
}
