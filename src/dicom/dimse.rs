//! DIMSE command sets (PS3.7 §9, §E): always group 0000, implicit VR little endian.
//!
//! dicom-ul has no DIMSE layer; command sets are tiny and fixed-format, so they are
//! encoded and decoded here directly rather than through a full dataset parser.

use std::collections::BTreeMap;

pub const C_STORE_RQ: u16 = 0x0001;
pub const C_STORE_RSP: u16 = 0x8001;
pub const C_ECHO_RQ: u16 = 0x0030;
pub const C_ECHO_RSP: u16 = 0x8030;
pub const N_SET_RQ: u16 = 0x0120;
pub const N_SET_RSP: u16 = 0x8120;
pub const N_CREATE_RQ: u16 = 0x0140;
pub const N_CREATE_RSP: u16 = 0x8140;
/// Command Data Set Type value meaning "no data set follows".
pub const NO_DATA_SET: u16 = 0x0101;

pub const TAG_AFFECTED_SOP_CLASS: u16 = 0x0002;
pub const TAG_COMMAND_FIELD: u16 = 0x0100;
pub const TAG_MESSAGE_ID: u16 = 0x0110;
pub const TAG_MESSAGE_ID_RESPONDED: u16 = 0x0120;
pub const TAG_PRIORITY: u16 = 0x0700;
pub const TAG_DATA_SET_TYPE: u16 = 0x0800;
pub const TAG_STATUS: u16 = 0x0900;
pub const TAG_ERROR_COMMENT: u16 = 0x0902;
pub const TAG_AFFECTED_SOP_INSTANCE: u16 = 0x1000;
pub const TAG_REQUESTED_SOP_CLASS: u16 = 0x0003;
pub const TAG_REQUESTED_SOP_INSTANCE: u16 = 0x1001;
pub const TAG_MOVE_ORIGINATOR_AE: u16 = 0x1030;
pub const TAG_MOVE_ORIGINATOR_ID: u16 = 0x1031;

/// C-STORE / C-ECHO status codes used by readgate (PS3.4 Annex B, PS3.7 Annex C).
pub mod status {
    pub const SUCCESS: u16 = 0x0000;
    pub const REFUSED_OUT_OF_RESOURCES: u16 = 0xA700;
    pub const DATA_SET_DOES_NOT_MATCH_SOP_CLASS: u16 = 0xA900;
    pub const CANNOT_UNDERSTAND: u16 = 0xC000;
    pub const SOP_CLASS_NOT_SUPPORTED: u16 = 0x0122;
    pub const UNRECOGNIZED_OPERATION: u16 = 0x0211;
    pub const PROCESSING_FAILURE: u16 = 0x0110;
    /// Refused: Not Authorized (PS3.7 C.5.x).
    pub const NOT_AUTHORIZED: u16 = 0x0124;
    /// DIMSE-N failures (PS3.7 Annex C.4): an attribute's value is not allowed, the SOP
    /// Instance exists already or does not exist, a required attribute is missing.
    pub const INVALID_ATTRIBUTE_VALUE: u16 = 0x0106;
    pub const DUPLICATE_SOP_INSTANCE: u16 = 0x0111;
    pub const NO_SUCH_SOP_INSTANCE: u16 = 0x0112;
    pub const MISSING_ATTRIBUTE: u16 = 0x0120;
    pub const RESOURCE_LIMITATION: u16 = 0x0213;

    /// Success and the warning family (0001, Bxxx) mean the peer kept the instance.
    pub fn is_success_or_warning(code: u16) -> bool {
        code == SUCCESS || code == 0x0001 || (code & 0xF000) == 0xB000
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CommandError {
    #[error("command set truncated at byte {0}")]
    Truncated(usize),
    #[error("command set element ({0:04X},{1:04X}) is outside group 0000")]
    WrongGroup(u16, u16),
    #[error("command set lacks {0}")]
    Missing(&'static str),
    #[error("command set element (0000,{0:04X}) has length {1}, expected {2}")]
    BadLength(u16, usize, usize),
}

/// A decoded command set: element number → raw value bytes.
#[derive(Debug, Clone, Default)]
pub struct Command {
    elements: BTreeMap<u16, Vec<u8>>,
}

impl Command {
    pub fn decode(bytes: &[u8]) -> Result<Command, CommandError> {
        let mut elements = BTreeMap::new();
        let mut pos = 0usize;
        while pos < bytes.len() {
            let header = bytes
                .get(pos..pos + 8)
                .ok_or(CommandError::Truncated(pos))?;
            let group = u16::from_le_bytes([header[0], header[1]]);
            let element = u16::from_le_bytes([header[2], header[3]]);
            let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
            if group != 0 {
                return Err(CommandError::WrongGroup(group, element));
            }
            let start = pos + 8;
            let value = start
                .checked_add(len)
                .and_then(|end| bytes.get(start..end))
                .ok_or(CommandError::Truncated(pos))?;
            elements.insert(element, value.to_vec());
            pos = start + len;
        }
        Ok(Command { elements })
    }

    pub fn u16(&self, element: u16) -> Result<Option<u16>, CommandError> {
        match self.elements.get(&element) {
            None => Ok(None),
            Some(v) if v.len() == 2 => Ok(Some(u16::from_le_bytes([v[0], v[1]]))),
            Some(v) => Err(CommandError::BadLength(element, v.len(), 2)),
        }
    }

    /// A text value with DICOM padding (trailing NUL or space) removed.
    pub fn text(&self, element: u16) -> Option<String> {
        self.elements.get(&element).map(|v| {
            String::from_utf8_lossy(v)
                .trim_end_matches(['\0', ' '])
                .trim_start()
                .to_string()
        })
    }

    pub fn command_field(&self) -> Result<u16, CommandError> {
        self.u16(TAG_COMMAND_FIELD)?
            .ok_or(CommandError::Missing("Command Field (0000,0100)"))
    }

    pub fn message_id(&self) -> Result<u16, CommandError> {
        self.u16(TAG_MESSAGE_ID)?
            .ok_or(CommandError::Missing("Message ID (0000,0110)"))
    }

    pub fn has_data_set(&self) -> Result<bool, CommandError> {
        Ok(self
            .u16(TAG_DATA_SET_TYPE)?
            .ok_or(CommandError::Missing("Command Data Set Type (0000,0800)"))?
            != NO_DATA_SET)
    }

    pub fn status(&self) -> Result<u16, CommandError> {
        self.u16(TAG_STATUS)?
            .ok_or(CommandError::Missing("Status (0000,0900)"))
    }
}

/// Builds a command set; values are padded to even length as PS3.5 requires.
#[derive(Debug, Default)]
pub struct CommandBuilder {
    elements: BTreeMap<u16, Vec<u8>>,
}

impl CommandBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn u16(mut self, element: u16, value: u16) -> Self {
        self.elements.insert(element, value.to_le_bytes().to_vec());
        self
    }

    /// UI values are padded with NUL, other text with a space.
    pub fn uid(mut self, element: u16, value: &str) -> Self {
        let mut v = value.as_bytes().to_vec();
        if v.len() % 2 == 1 {
            v.push(0);
        }
        self.elements.insert(element, v);
        self
    }

    pub fn text(mut self, element: u16, value: &str) -> Self {
        let mut v = value.as_bytes().to_vec();
        if v.len() % 2 == 1 {
            v.push(b' ');
        }
        self.elements.insert(element, v);
        self
    }

    pub fn encode(self) -> Vec<u8> {
        let body_len: usize = self.elements.values().map(|v| 8 + v.len()).sum();
        let mut out = Vec::with_capacity(12 + body_len);
        push_element(&mut out, 0x0000, &(body_len as u32).to_le_bytes());
        for (element, value) in &self.elements {
            push_element(&mut out, *element, value);
        }
        out
    }
}

fn push_element(out: &mut Vec<u8>, element: u16, value: &[u8]) {
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&element.to_le_bytes());
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(value);
}

pub fn c_store_rq(message_id: u16, sop_class: &str, sop_instance: &str) -> Vec<u8> {
    store_rq(message_id, sop_class, sop_instance).encode()
}

fn store_rq(message_id: u16, sop_class: &str, sop_instance: &str) -> CommandBuilder {
    CommandBuilder::new()
        .uid(TAG_AFFECTED_SOP_CLASS, sop_class)
        .u16(TAG_COMMAND_FIELD, C_STORE_RQ)
        .u16(TAG_MESSAGE_ID, message_id)
        .u16(TAG_PRIORITY, 0)
        .u16(TAG_DATA_SET_TYPE, 0x0000)
        .uid(TAG_AFFECTED_SOP_INSTANCE, sop_instance)
}

/// A C-STORE-RQ that is a sub-operation of the C-MOVE `move_id` asked by `originator`.
pub fn c_store_rq_moved(
    message_id: u16,
    sop_class: &str,
    sop_instance: &str,
    originator: &str,
    move_id: u16,
) -> Vec<u8> {
    store_rq(message_id, sop_class, sop_instance)
        .text(TAG_MOVE_ORIGINATOR_AE, originator)
        .u16(TAG_MOVE_ORIGINATOR_ID, move_id)
        .encode()
}

/// A response to `request`: echoes the affected SOP class/instance when the request had them.
pub fn response(
    command_field: u16,
    request: &Command,
    message_id: u16,
    status: u16,
    error_comment: Option<&str>,
) -> Vec<u8> {
    let mut b = response_head(command_field, message_id, status);
    if let Some(class) = request.text(TAG_AFFECTED_SOP_CLASS) {
        b = b.uid(TAG_AFFECTED_SOP_CLASS, &class);
    }
    if let Some(instance) = request.text(TAG_AFFECTED_SOP_INSTANCE) {
        b = b.uid(TAG_AFFECTED_SOP_INSTANCE, &instance);
    }
    with_comment(b, error_comment).encode()
}

/// A response's command field, message ID responded to, no data set, status.
fn response_head(field: u16, message_id: u16, status: u16) -> CommandBuilder {
    CommandBuilder::new()
        .u16(TAG_COMMAND_FIELD, field)
        .u16(TAG_MESSAGE_ID_RESPONDED, message_id)
        .u16(TAG_DATA_SET_TYPE, NO_DATA_SET)
        .u16(TAG_STATUS, status)
}

/// Adds the Error Comment (LO: at most 64 ASCII characters).
fn with_comment(b: CommandBuilder, error_comment: Option<&str>) -> CommandBuilder {
    match error_comment {
        Some(comment) => {
            let short: String = comment.chars().filter(|c| c.is_ascii()).take(64).collect();
            b.text(TAG_ERROR_COMMENT, &short)
        }
        None => b,
    }
}

/// An N-CREATE-RSP or N-SET-RSP: `field`, the SOP Class and Instance it concerns (as
/// Affected SOP Class/Instance UID), the status and an optional Error Comment.
pub fn n_response(
    field: u16,
    sop_class: &str,
    sop_instance: &str,
    message_id: u16,
    status: u16,
    error_comment: Option<&str>,
) -> Vec<u8> {
    let mut b = response_head(field, message_id, status).uid(TAG_AFFECTED_SOP_CLASS, sop_class);
    if !sop_instance.is_empty() {
        b = b.uid(TAG_AFFECTED_SOP_INSTANCE, sop_instance);
    }
    with_comment(b, error_comment).encode()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_request_round_trips() {
        let bytes = c_store_rq(7, "1.2.840.10008.5.1.4.1.1.2", "1.2.3");
        let cmd = Command::decode(&bytes).unwrap();
        assert_eq!(cmd.command_field().unwrap(), C_STORE_RQ);
        assert_eq!(cmd.message_id().unwrap(), 7);
        assert!(cmd.has_data_set().unwrap());
        assert_eq!(cmd.text(TAG_AFFECTED_SOP_INSTANCE).unwrap(), "1.2.3");
        assert_eq!(bytes.len() % 2, 0);
        // group length covers everything after itself
        let gl = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
        assert_eq!(gl, bytes.len() - 12);
    }

    #[test]
    fn response_carries_status_and_comment() {
        let rq = Command::decode(&c_store_rq(3, "1.2", "9.9")).unwrap();
        let rsp =
            Command::decode(&response(C_STORE_RSP, &rq, 3, 0xA700, Some("disk full"))).unwrap();
        assert_eq!(rsp.status().unwrap(), 0xA700);
        assert_eq!(rsp.text(TAG_ERROR_COMMENT).unwrap(), "disk full");
        assert_eq!(rsp.u16(TAG_MESSAGE_ID_RESPONDED).unwrap(), Some(3));
        assert!(!rsp.has_data_set().unwrap());
    }

    #[test]
    fn truncated_and_foreign_groups_are_errors() {
        let bytes = c_store_rq(1, "1.2", "3.4");
        assert!(matches!(
            Command::decode(&bytes[..bytes.len() - 3]),
            Err(CommandError::Truncated(_))
        ));
        let mut foreign = bytes.clone();
        foreign[0] = 8;
        assert!(matches!(
            Command::decode(&foreign),
            Err(CommandError::WrongGroup(8, 0))
        ));
        // absurd length must not overflow
        let mut huge = vec![0u8, 0, 0x00, 0x01];
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(Command::decode(&huge).is_err());
    }
}
