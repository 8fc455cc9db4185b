//! Audit entries as DICOM PS3.15 A.5 audit messages (the XML IHE ATNA collectors take), in
//! RFC 5424 syslog messages with RFC 6587 / RFC 5425 octet-counting framing.
//!
//! Each readgate kind maps to a PS3.15 event ID and action; the readgate kind itself is
//! always kept as an extra `EventTypeCode` in the private coding scheme `99READGATE`, and
//! every message carries the entry's sequence number, hashes and JSON detail (base64 in
//! `ParticipantObjectDetail`), so a collector's copy is evidence on its own.
//!
//! The messages satisfy both the PS3.15 A.5.1 schema and the stricter variant dcm4che
//! ships (which requires a `ParticipantObjectDescription` in every participant object):
//! each participant object therefore has a name and one description.

use super::Entry;
use std::fmt::Write as _;

/// Who reports: stamped into `AuditSourceIdentification` and the syslog header.
#[derive(Debug, Clone)]
pub struct AtnaSource {
    /// `gateway.id`: the AuditSourceID.
    pub gateway_id: String,
    /// The sending facility (AuditEnterpriseSiteID).
    pub site_id: Option<String>,
    /// readgate's own AE title (the receiving side of instances received).
    pub ae_title: Option<String>,
    /// RFC 5424 HOSTNAME.
    pub hostname: String,
    /// RFC 5424 APP-NAME, also the application's UserID in Application Activity messages.
    pub app_name: String,
}

impl AtnaSource {
    pub fn from_config(config: &crate::config::Config) -> AtnaSource {
        AtnaSource {
            gateway_id: config.gateway.id.clone(),
            site_id: Some(config.gateway.sending_facility.clone()),
            ae_title: Some(config.dicom.ae_title.clone()),
            hostname: hostname(),
            app_name: config.audit.app_name.clone(),
        }
    }
}

/// The machine's host name (RFC 5424 HOSTNAME), or `-` (the NILVALUE) if it has none.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "-".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).into_owned();
    if name.is_empty() {
        "-".into()
    } else {
        name
    }
}

/// A coded value: (code, coding scheme, meaning).
type Code = (&'static str, &'static str, &'static str);

const DCM: &str = "DCM";
const PRIVATE_SCHEME: &str = "99READGATE";

const INSTANCES_TRANSFERRED: Code = ("110104", DCM, "DICOM Instances Transferred");
const INSTANCES_ACCESSED: Code = ("110103", DCM, "DICOM Instances Accessed");
const STUDY_DELETED: Code = ("110105", DCM, "DICOM Study Deleted");
const EXPORT: Code = ("110106", DCM, "Export");
const IMPORT: Code = ("110107", DCM, "Import");
const QUERY: Code = ("110112", DCM, "Query");
const PROCEDURE_RECORD: Code = ("110111", DCM, "Procedure Record");
const SECURITY_ALERT: Code = ("110113", DCM, "Security Alert");
const USER_AUTHENTICATION: Code = ("110114", DCM, "User Authentication");
const APPLICATION_ACTIVITY: Code = ("110100", DCM, "Application Activity");

const APPLICATION_START: Code = ("110120", DCM, "Application Start");
const APPLICATION_STOP: Code = ("110121", DCM, "Application Stop");
const LOGIN: Code = ("110122", DCM, "Login");
const LOGOUT: Code = ("110123", DCM, "Logout");

const ROLE_APPLICATION: Code = ("110150", DCM, "Application");
const ROLE_LAUNCHER: Code = ("110151", DCM, "Application Launcher");
const ROLE_DESTINATION: Code = ("110152", DCM, "Destination Role ID");
const ROLE_SOURCE: Code = ("110153", DCM, "Source Role ID");

/// How one readgate kind is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventSpec {
    pub event_id: (&'static str, &'static str, &'static str),
    /// C create, R read, U update, D delete, E execute.
    pub action: char,
    /// A DCM event type code where PS3.15 defines one for this event.
    pub type_code: Option<(&'static str, &'static str, &'static str)>,
    participants: Participants,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Participants {
    /// The actor alone (requestor).
    Actor,
    /// The actor sent instances to readgate (actor = source, readgate = destination).
    Received,
    /// readgate sent instances on (actor = source, the destination from the detail).
    Sent,
    /// The application (readgate) and who started or stopped it.
    Application,
    /// A user and the application that authenticated them.
    Authentication,
}

/// The PS3.15 event a readgate kind is reported as.
pub fn event_for(kind: &str) -> EventSpec {
    use crate::model::AuditKind as K;
    use Participants as P;
    let spec = |event_id, action, type_code, participants| EventSpec {
        event_id,
        action,
        type_code,
        participants,
    };
    let application = |code| spec(APPLICATION_ACTIVITY, 'E', Some(code), P::Application);
    let Ok(kind) = kind.parse::<K>() else {
        // A kind written by another version of readgate.
        return spec(APPLICATION_ACTIVITY, 'E', None, P::Actor);
    };
    match kind {
        K::InstanceReceived => spec(INSTANCES_TRANSFERRED, 'C', None, P::Received),
        K::StudyForwarded | K::PriorSent => spec(INSTANCES_TRANSFERRED, 'R', None, P::Sent),
        K::ReadEvent => spec(INSTANCES_ACCESSED, 'R', None, P::Actor),
        // A modality's MPPS: the record of the procedure it performs.
        K::StepCreated => spec(PROCEDURE_RECORD, 'C', None, P::Actor),
        K::StepUpdated => spec(PROCEDURE_RECORD, 'U', None, P::Actor),
        // Decisions about a study change its state, not its images: Instances Accessed,
        // Update, with the readgate kind as event type.
        K::StudyHeld
        | K::StudyReleased
        | K::StudyOverridden
        | K::Confirmation
        | K::StudyReevaluated
        | K::StudyRetried => spec(INSTANCES_ACCESSED, 'U', None, P::Actor),
        // A rejected study leaves the spool unsent.
        K::StudyRejected => spec(STUDY_DELETED, 'D', None, P::Actor),
        K::ReportGenerated => spec(EXPORT, 'R', None, P::Actor),
        // A backup copies the studies out of readgate; a restore brings them in.
        K::BackupTaken => spec(EXPORT, 'R', None, P::Actor),
        K::Restored => spec(IMPORT, 'C', None, P::Actor),
        K::Query => spec(QUERY, 'E', None, P::Actor),
        K::OperatorLogin => spec(USER_AUTHENTICATION, 'E', Some(LOGIN), P::Authentication),
        K::OperatorLogout => spec(USER_AUTHENTICATION, 'E', Some(LOGOUT), P::Authentication),
        K::SecurityAlert => spec(SECURITY_ALERT, 'E', None, P::Actor),
        K::ApplicationStart => application(APPLICATION_START),
        K::ApplicationStop => application(APPLICATION_STOP),
        // A rejected reload carries `outcome: 4` (minor failure) in its detail. A schema
        // migration and a copy to another database change the application's own data store.
        K::ConfigLoaded | K::ConfigRejected | K::SchemaMigrated | K::DatabaseCopied => {
            spec(APPLICATION_ACTIVITY, 'E', None, P::Actor)
        }
    }
}

/// EventOutcomeIndicator: `detail.outcome` if it is one of 0, 4, 8, 12 (number or text),
/// else 0 (success).
fn outcome(detail: &serde_json::Value) -> &'static str {
    let v = &detail["outcome"];
    let n = v
        .as_i64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()));
    match n {
        Some(4) => "4",
        Some(8) => "8",
        Some(12) => "12",
        _ => "0",
    }
}

fn detail_str<'a>(detail: &'a serde_json::Value, keys: &[&str]) -> Option<&'a str> {
    keys.iter()
        .find_map(|k| detail[*k].as_str())
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// The DICOM audit message (XML, with declaration) for one entry.
pub fn audit_message(e: &Entry, source: &AtnaSource) -> String {
    let detail = e.detail_json();
    let spec = event_for(&e.kind);
    let mut x = String::with_capacity(2048);
    x.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<AuditMessage>");
    let _ = write!(
        x,
        "<EventIdentification EventActionCode=\"{}\" EventDateTime=\"{}\" EventOutcomeIndicator=\"{}\">",
        spec.action,
        esc(&e.at),
        outcome(&detail)
    );
    coded(&mut x, "EventID", spec.event_id);
    if let Some(t) = spec.type_code {
        coded(&mut x, "EventTypeCode", t);
    }
    coded_dyn(&mut x, "EventTypeCode", &e.kind, PRIVATE_SCHEME, &e.kind);
    if let Some(d) = detail_str(&detail, &["outcome_description", "error", "reason"]) {
        let _ = write!(
            x,
            "<EventOutcomeDescription>{}</EventOutcomeDescription>",
            esc(d)
        );
    }
    x.push_str("</EventIdentification>");

    let address = detail_str(
        &detail,
        &["client_ip", "peer_address", "address", "peer", "host"],
    );
    let gateway_user = source
        .ae_title
        .clone()
        .unwrap_or_else(|| source.gateway_id.clone());
    match spec.participants {
        Participants::Actor => participant(&mut x, &e.actor, true, None, address),
        Participants::Received => {
            participant(&mut x, &e.actor, true, Some(ROLE_SOURCE), address);
            participant(&mut x, &gateway_user, false, Some(ROLE_DESTINATION), None);
        }
        Participants::Sent => {
            participant(&mut x, &e.actor, true, Some(ROLE_SOURCE), None);
            let dest = detail_str(&detail, &["destination_ae", "ae_title", "destination"])
                .unwrap_or("unknown destination");
            participant(&mut x, dest, false, Some(ROLE_DESTINATION), address);
        }
        Participants::Application => {
            let app = &source.app_name;
            participant(&mut x, app, false, Some(ROLE_APPLICATION), None);
            participant(&mut x, &e.actor, true, Some(ROLE_LAUNCHER), address);
        }
        Participants::Authentication => {
            participant(&mut x, &e.actor, true, None, address);
            let app = &source.app_name;
            participant(&mut x, app, false, Some(ROLE_APPLICATION), None);
        }
    }

    x.push_str("<AuditSourceIdentification");
    if let Some(site) = source.site_id.as_deref().filter(|s| !s.trim().is_empty()) {
        let _ = write!(x, " AuditEnterpriseSiteID=\"{}\"", esc(site));
    }
    // 4: application server process.
    let _ = write!(
        x,
        " AuditSourceID=\"{}\"><AuditSourceTypeCode csd-code=\"4\"/></AuditSourceIdentification>",
        esc(&source.gateway_id)
    );

    if let Some(uid) = e.study_uid.as_deref().filter(|s| !s.trim().is_empty()) {
        // Study: system object (2) in the role of a report (3), PS3.15 A.5.3.
        let _ = write!(
            x,
            "<ParticipantObjectIdentification ParticipantObjectID=\"{}\" ParticipantObjectTypeCode=\"2\" ParticipantObjectTypeCodeRole=\"3\">",
            esc(uid)
        );
        coded(
            &mut x,
            "ParticipantObjectIDTypeCode",
            ("110180", DCM, "Study Instance UID"),
        );
        let name = e.accession.as_deref().unwrap_or(uid);
        let _ = write!(
            x,
            "<ParticipantObjectName>{}</ParticipantObjectName>",
            esc(name)
        );
        x.push_str("<ParticipantObjectDescription>");
        if let Some(acc) = e.accession.as_deref() {
            let _ = write!(x, "<Accession Number=\"{}\"/>", esc(acc));
        }
        let _ = write!(
            x,
            "<ParticipantObjectContainsStudy><StudyIDs UID=\"{}\"/></ParticipantObjectContainsStudy>",
            esc(uid)
        );
        x.push_str("</ParticipantObjectDescription></ParticipantObjectIdentification>");
    }

    // The audit entry itself: sequence number, chain hashes and detail, so the collector
    // can check it against the database.
    let _ = write!(
        x,
        "<ParticipantObjectIdentification ParticipantObjectID=\"{}\" ParticipantObjectTypeCode=\"2\">",
        esc(&format!("{}:{}", source.gateway_id, e.seq))
    );
    coded_dyn(
        &mut x,
        "ParticipantObjectIDTypeCode",
        "audit-entry",
        PRIVATE_SCHEME,
        "readgate audit entry",
    );
    let _ = write!(
        x,
        "<ParticipantObjectName>{}</ParticipantObjectName>",
        esc(&e.kind)
    );
    for (t, v) in [
        ("seq", e.seq.to_string()),
        ("hash", e.hash.clone()),
        ("prev_hash", e.prev_hash.clone()),
        ("detail", e.detail.clone()),
    ] {
        let _ = write!(
            x,
            "<ParticipantObjectDetail type=\"{t}\" value=\"{}\"/>",
            base64(v.as_bytes())
        );
    }
    x.push_str("<ParticipantObjectDescription><ParticipantObjectContainsStudy/></ParticipantObjectDescription>");
    x.push_str("</ParticipantObjectIdentification></AuditMessage>");
    x
}

fn participant(
    x: &mut String,
    user: &str,
    requestor: bool,
    role: Option<Code>,
    address: Option<&str>,
) {
    let _ = write!(
        x,
        "<ActiveParticipant UserID=\"{}\" UserIsRequestor=\"{requestor}\"",
        esc(user)
    );
    if let Some(a) = address {
        // 2 = IP address, 1 = machine name.
        let host = a
            .parse::<std::net::SocketAddr>()
            .map(|s| s.ip().to_string())
            .unwrap_or_else(|_| a.to_string());
        let kind = if host.parse::<std::net::IpAddr>().is_ok() {
            "2"
        } else {
            "1"
        };
        let _ = write!(
            x,
            " NetworkAccessPointID=\"{}\" NetworkAccessPointTypeCode=\"{kind}\"",
            esc(&host)
        );
    }
    match role {
        Some(r) => {
            x.push('>');
            coded(x, "RoleIDCode", r);
            x.push_str("</ActiveParticipant>");
        }
        None => x.push_str("/>"),
    }
}

fn coded(x: &mut String, element: &str, (code, scheme, meaning): Code) {
    coded_dyn(x, element, code, scheme, meaning)
}

fn coded_dyn(x: &mut String, element: &str, code: &str, scheme: &str, meaning: &str) {
    let _ = write!(
        x,
        "<{element} csd-code=\"{}\" codeSystemName=\"{}\" originalText=\"{}\"/>",
        esc(code),
        esc(scheme),
        esc(meaning)
    );
}

/// XML text and attribute escaping; characters XML 1.0 cannot carry at all (most C0
/// controls) become U+FFFD — the exact bytes are in the base64 detail.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

/// RFC 5424 severity from the outcome: success is a notice, failures warnings or errors.
fn severity(e: &Entry) -> u8 {
    if e.kind == crate::model::AuditKind::SecurityAlert.as_str() {
        return 1; // alert
    }
    match outcome(&e.detail_json()) {
        "4" => 4,
        "8" | "12" => 3,
        _ => 5,
    }
}

/// RFC 5424 header fields are printable US-ASCII without spaces, of bounded length.
fn header_field(s: &str, max: usize) -> String {
    let v: String = s
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if v.is_empty() {
        "-".into()
    } else {
        v
    }
}

fn sd_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace(']', "\\]")
}

/// One RFC 5424 message: facility 10 (security/authorization), MSGID `IHE+RFC-3881` (IHE
/// ITI-20), `[meta sequenceId]` = the entry's sequence number, MSG = BOM + the XML.
pub fn syslog_message(e: &Entry, source: &AtnaSource) -> Vec<u8> {
    let pri = 10 * 8 + u32::from(severity(e));
    let mut sd = format!(
        "[origin software=\"readgate\" swVersion=\"{}\"]",
        sd_value(env!("CARGO_PKG_VERSION"))
    );
    // RFC 5424 meta sequenceId is 1..2147483647.
    if (1..=2_147_483_647).contains(&e.seq) {
        sd = format!("[meta sequenceId=\"{}\"]{sd}", e.seq);
    }
    let header = format!(
        "<{pri}>1 {} {} {} {} IHE+RFC-3881 {sd} ",
        header_field(&e.at, 64),
        header_field(&source.hostname, 255),
        header_field(&source.app_name, 48),
        std::process::id()
    );
    let xml = audit_message(e, source);
    let mut msg = Vec::with_capacity(header.len() + 3 + xml.len());
    msg.extend_from_slice(header.as_bytes());
    msg.extend_from_slice(b"\xEF\xBB\xBF");
    msg.extend_from_slice(xml.as_bytes());
    msg
}

/// Octet-counting framing (RFC 6587 §3.4.1, RFC 5425 §4.3): `MSG-LEN SP SYSLOG-MSG`.
pub fn frame(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + 8);
    out.extend_from_slice(msg.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(msg);
    out
}

/// Splits octet-counted frames (for tests and tools reading an export): the messages, or
/// the byte offset where the framing is broken.
pub fn split_frames(mut data: &[u8]) -> Result<Vec<&[u8]>, usize> {
    let total = data.len();
    let mut out = Vec::new();
    while !data.is_empty() {
        let at = total - data.len();
        let sp = data.iter().position(|&b| b == b' ').ok_or(at)?;
        let len: usize = std::str::from_utf8(&data[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(at)?;
        let body = data.get(sp + 1..sp + 1 + len).ok_or(at)?;
        out.push(body);
        data = &data[sp + 1 + len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn escaping() {
        assert_eq!(esc("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&apos;");
        assert_eq!(esc("x\u{1}y"), "x\u{FFFD}y");
        assert_eq!(esc("山田"), "山田");
    }

    #[test]
    fn kinds_map_to_ps3_15_events() {
        assert_eq!(event_for("instance_received").event_id.0, "110104");
        assert_eq!(event_for("procedure_step_created").event_id.0, "110111");
        assert_eq!(event_for("procedure_step_updated").action, 'U');
        assert_eq!(event_for("study_forwarded").event_id.0, "110104");
        assert_eq!(event_for("read_event").event_id.0, "110103");
        assert_eq!(event_for("query").event_id.0, "110112");
        assert_eq!(event_for("operator_login").event_id.0, "110114");
        assert_eq!(event_for("security_alert").event_id.0, "110113");
        assert_eq!(event_for("application_start").event_id.0, "110100");
        assert_eq!(event_for("config_loaded").event_id.0, "110100");
        assert_eq!(event_for("backup_taken").event_id.0, "110106");
        assert_eq!(event_for("restored").event_id.0, "110107");
        assert_eq!(event_for("schema_migrated").event_id.0, "110100");
        assert_eq!(event_for("schema_migrated").action, 'E');
        assert_eq!(event_for("database_copied").event_id.0, "110100");
        assert_eq!(event_for("database_copied").action, 'E');
        assert_eq!(event_for("something_new").event_id.0, "110100");
    }

    #[test]
    fn frames_round_trip() {
        let mut data = frame(b"hello world");
        data.extend(frame("日本".as_bytes()));
        let frames = split_frames(&data).unwrap();
        assert_eq!(frames, vec![&b"hello world"[..], "日本".as_bytes()]);
        assert_eq!(split_frames(b"5 abc"), Err(0));
    }
}
