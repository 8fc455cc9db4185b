//! Process-wide counters for `/metrics` (Prometheus text): what the store cannot answer
//! cheaply — instances and bytes received, forward failures, HL7 messages by type and
//! ACK code, HTTP latencies. Everything else (studies by state, held by reason, queue
//! depth) is read from the store when scraped.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

pub static INSTANCES_RECEIVED: AtomicU64 = AtomicU64::new(0);
pub static BYTES_RECEIVED: AtomicU64 = AtomicU64::new(0);

/// Failed forwarding attempts per destination.
static FORWARD_FAILURES: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());
/// HL7 messages per (message type, ACK code).
static HL7_MESSAGES: Mutex<BTreeMap<(String, String), u64>> = Mutex::new(BTreeMap::new());

/// HTTP latency histogram buckets (seconds).
pub const BUCKETS: [f64; 10] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

#[derive(Debug, Default, Clone)]
pub struct Histogram {
    /// Cumulative counts per bucket of [`BUCKETS`].
    pub buckets: [u64; 10],
    pub count: u64,
    pub sum: f64,
}

/// Per (method, route template, status class).
static HTTP: Mutex<BTreeMap<(String, String, String), Histogram>> = Mutex::new(BTreeMap::new());

pub fn instance_received(bytes: u64) {
    INSTANCES_RECEIVED.fetch_add(1, Ordering::Relaxed);
    BYTES_RECEIVED.fetch_add(bytes, Ordering::Relaxed);
}

pub fn forward_failed(destination: &str, studies: usize) {
    let mut m = FORWARD_FAILURES.lock().unwrap_or_else(|p| p.into_inner());
    *m.entry(destination.to_string()).or_default() += studies as u64;
}

pub fn hl7_message(message_type: &str, ack_code: &str) {
    let mut m = HL7_MESSAGES.lock().unwrap_or_else(|p| p.into_inner());
    let t = if message_type.is_empty() {
        "unknown"
    } else {
        message_type
    };
    *m.entry((t.to_string(), ack_code.to_string())).or_default() += 1;
}

pub fn http_request(method: &str, route: &str, status: u16, secs: f64) {
    let mut m = HTTP.lock().unwrap_or_else(|p| p.into_inner());
    let h = m
        .entry((
            method.to_string(),
            route.to_string(),
            format!("{}xx", status / 100),
        ))
        .or_default();
    for (i, b) in BUCKETS.iter().enumerate() {
        if secs <= *b {
            h.buckets[i] += 1;
        }
    }
    h.count += 1;
    h.sum += secs;
}

pub fn forward_failures() -> BTreeMap<String, u64> {
    FORWARD_FAILURES
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
