//! Process-wide counters for `/metrics` (Prometheus text): what the store cannot answer
//! cheaply — instances and bytes received, forward failures, HL7 messages by type and
//! ACK code, HTTP latencies. Everything else (studies by state, held by reason, queue
//! depth) is read from the store when scraped.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

pub static INSTANCES_RECEIVED: AtomicU64 = AtomicU64::new(0);
/// Until when (ms since the epoch) this node runs the cluster's timers (`crate::cluster`:
/// the same bound the node itself obeys; 0: it does not).
pub static RUNS_TIMERS_UNTIL: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
/// This node's name (`gateway.id`), set when it joins.
static NODE: Mutex<Option<String>> = Mutex::new(None);

/// Names this process's node for `/metrics`.
pub fn set_node(id: &str) {
    *NODE.lock().unwrap_or_else(|p| p.into_inner()) = Some(id.to_string());
}

/// This process's node, once it joined.
pub fn node() -> Option<String> {
    NODE.lock().unwrap_or_else(|p| p.into_inner()).clone()
}
pub static BYTES_RECEIVED: AtomicU64 = AtomicU64::new(0);

/// Failed forwarding attempts per destination.
static FORWARD_FAILURES: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());
/// PACS history lookups per (`[[pacs]]` id, outcome): count and seconds spent.
static PACS_LOOKUPS: Mutex<BTreeMap<LookupKey, (u64, f64)>> = Mutex::new(BTreeMap::new());
/// (`[[pacs]]` id, `answered` or `failed`).
type LookupKey = (String, &'static str);
/// Prior studies retrieved from each PACS per (`[[pacs]]` id, outcome): count, bytes.
static PACS_RETRIEVES: Mutex<BTreeMap<LookupKey, (u64, u64)>> = Mutex::new(BTreeMap::new());
/// Prior studies sent per destination: studies, instances.
static PRIORS_SENT: Mutex<BTreeMap<String, (u64, u64)>> = Mutex::new(BTreeMap::new());
/// HL7 messages per (message type, ACK code).
static HL7_MESSAGES: Mutex<BTreeMap<(String, String), u64>> = Mutex::new(BTreeMap::new());

/// HTTP latency histogram buckets (seconds).
pub const BUCKETS: [f64; 10] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// Time-to-reader histogram buckets (seconds): from under a second (streaming, MPPS) to
/// an hour (a study held back, then released).
pub const READER_BUCKETS: [f64; 13] = [
    0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

#[derive(Debug, Clone)]
pub struct Histogram {
    /// The buckets' upper bounds.
    pub bounds: &'static [f64],
    /// Cumulative counts per bucket of `bounds`.
    pub buckets: Vec<u64>,
    pub count: u64,
    pub sum: f64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: vec![0; bounds.len()],
            count: 0,
            sum: 0.0,
        }
    }

    fn observe(&mut self, value: f64) {
        for (i, b) in self.bounds.iter().enumerate() {
            if value <= *b {
                self.buckets[i] += 1;
            }
        }
        self.count += 1;
        self.sum += value;
    }
}

/// Per (method, route template, status class).
static HTTP: Mutex<BTreeMap<(String, String, String), Histogram>> = Mutex::new(BTreeMap::new());
/// Per destination: its last instance received → acknowledged by the destination.
static TIME_TO_READER: Mutex<BTreeMap<String, Histogram>> = Mutex::new(BTreeMap::new());

/// Records a study's time to reader at `destination` (a configured id: a fixed set).
pub fn time_to_reader(destination: &str, secs: f64) {
    let mut m = TIME_TO_READER.lock().unwrap_or_else(|p| p.into_inner());
    m.entry(destination.to_string())
        .or_insert_with(|| Histogram::new(&READER_BUCKETS))
        .observe(secs.max(0.0));
}

pub fn times_to_reader() -> BTreeMap<String, Histogram> {
    TIME_TO_READER
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}

pub fn instance_received(bytes: u64) {
    INSTANCES_RECEIVED.fetch_add(1, Ordering::Relaxed);
    BYTES_RECEIVED.fetch_add(bytes, Ordering::Relaxed);
}

pub fn forward_failed(destination: &str, studies: usize) {
    let mut m = FORWARD_FAILURES.lock().unwrap_or_else(|p| p.into_inner());
    *m.entry(destination.to_string()).or_default() += studies as u64;
}

/// The HL7 message types counted by name; any other is counted as `other`, so that
/// a sender cannot mint label values (finding M2: 20,000 invented types made 20,002
/// series).
const HL7_TYPES: [&str; 8] = [
    "ORM^O01", "OMI^O23", "ORU^R01", "ADT^A40", "ADT^A08", "ADT^A31", "ADT", "ACK",
];

/// HTTP methods counted by name; any other is `other`.
const HTTP_METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];

/// `value` if it is one of `known` (as listed), else `other`: label values come from a
/// fixed set whatever a peer sends.
fn bounded(value: &str, known: &[&'static str]) -> &'static str {
    known
        .iter()
        .find(|k| k.eq_ignore_ascii_case(value))
        .copied()
        .unwrap_or("other")
}

/// Counts one HL7 message by its MSH-9 (`ORM^O01`; the structure, if any, is ignored)
/// and the ACK code readgate answered.
pub fn hl7_message(message_type: &str, ack_code: &str) {
    let mut m = HL7_MESSAGES.lock().unwrap_or_else(|p| p.into_inner());
    let t = if message_type.is_empty() {
        "unknown"
    } else {
        let type_and_event = message_type
            .splitn(3, '^')
            .take(2)
            .collect::<Vec<_>>()
            .join("^");
        bounded(&type_and_event, &HL7_TYPES)
    };
    let ack = bounded(ack_code, &["AA", "AE", "AR"]);
    *m.entry((t.to_string(), ack.to_string())).or_default() += 1;
}

/// Times one HTTP request; `route` is the matched route template (a fixed set).
pub fn http_request(method: &str, route: &str, status: u16, secs: f64) {
    let mut m = HTTP.lock().unwrap_or_else(|p| p.into_inner());
    m.entry((
        bounded(method, &HTTP_METHODS).to_string(),
        route.to_string(),
        format!("{}xx", status / 100),
    ))
    .or_insert_with(|| Histogram::new(&BUCKETS))
    .observe(secs);
}

pub fn forward_failures() -> BTreeMap<String, u64> {
    FORWARD_FAILURES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}

/// Counts one lookup of a patient's history in a `[[pacs]]` (ids come from the config,
/// so the label values are bounded).
pub fn pacs_lookup(pacs: &str, answered: bool, secs: f64) {
    let mut m = PACS_LOOKUPS.lock().unwrap_or_else(|p| p.into_inner());
    let outcome = if answered { "answered" } else { "failed" };
    let e = m.entry((pacs.to_string(), outcome)).or_default();
    e.0 += 1;
    e.1 += secs;
}

pub fn pacs_lookups() -> BTreeMap<LookupKey, (u64, f64)> {
    PACS_LOOKUPS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}

/// One C-GET of a prior study from `pacs` (for sending it), with the bytes it brought.
pub fn pacs_retrieve(pacs: &str, ok: bool, bytes: u64) {
    let mut m = PACS_RETRIEVES.lock().unwrap_or_else(|p| p.into_inner());
    let outcome = if ok { "retrieved" } else { "failed" };
    let e = m.entry((pacs.to_string(), outcome)).or_default();
    e.0 += 1;
    e.1 += bytes;
}

pub fn pacs_retrieves() -> BTreeMap<LookupKey, (u64, u64)> {
    PACS_RETRIEVES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}

/// A prior study (`instances` of it) sent to `destination` with a study.
pub fn prior_sent(destination: &str, instances: u64) {
    let mut m = PRIORS_SENT.lock().unwrap_or_else(|p| p.into_inner());
    let e = m.entry(destination.to_string()).or_default();
    e.0 += 1;
    e.1 += instances;
}

pub fn priors_sent() -> BTreeMap<String, (u64, u64)> {
    PRIORS_SENT
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}

pub fn hl7_messages() -> BTreeMap<(String, String), u64> {
    HL7_MESSAGES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}

pub fn http_requests() -> BTreeMap<(String, String, String), Histogram> {
    HTTP.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_come_from_a_fixed_set() {
        assert_eq!(bounded("orm^o01", &HL7_TYPES), "ORM^O01");
        assert_eq!(bounded("ZZZ^Z99", &HL7_TYPES), "other");
        assert_eq!(bounded("BREW", &HTTP_METHODS), "other");
        assert_eq!(bounded("get", &HTTP_METHODS), "GET");
    }
}
