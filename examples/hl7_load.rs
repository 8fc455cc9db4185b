//! HL7 MLLP load generator: sends order messages and measures the ACK round trip.
//!
//! ```text
//! cargo run --release --example hl7_load -- --addr 127.0.0.1:2575 --connections 8 --messages 20000
//! ```
//!
//! Every connection behaves like a real sender: it sends one message, waits for its ACK,
//! then sends the next (no pipelining). Each message is the template (an ORM^O01 or
//! OMI^O23 file; by default `tests/hl7/orm_o01_ihe.hl7`, built in) with a unique MSH-10,
//! accession number (OBR-18 / IPC-1), placer and filler order numbers (ORC-2/3, OBR-2/3)
//! and study instance UID (ZDS-1 / IPC-3), where the template has them. The template is
//! decoded per its MSH-18 (readgate's own charset code, so ISO-2022-JP and UTF-8 templates
//! work) and every message is sent in that charset.
//!
//! Prints messages/s (acknowledged messages over the wall time from the first send to the
//! last ACK, connection set-up excluded), p50/p95/p99/max latency (send → complete ACK
//! frame), and the count of AA/AE/AR. An ACK whose MSA-2 does not echo the MSH-10 just
//! sent, a missing ACK (timeout), a closed connection or a framing error is an error: the
//! connection stops, the others go on, and the program exits 1.
//!
//! `--json` prints one JSON object instead of the text report (for scripts).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context as _};
use clap::Parser;
use readgate::hl7::charset::{self, Charset};
use readgate::hl7::mllp;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Barrier;

/// The built-in template: the IHE-style ORM^O01 sample.
const DEFAULT_TEMPLATE: &[u8] = include_bytes!("../tests/hl7/orm_o01_ihe.hl7");

#[derive(Debug, Parser)]
#[command(
    name = "hl7_load",
    about = "HL7 MLLP load generator: N order messages over C synchronous connections"
)]
struct Args {
    /// The MLLP listener, HOST:PORT; several, comma-separated (the nodes of a cluster),
    /// get the connections in turn.
    #[arg(long)]
    addr: String,
    /// Concurrent connections (each waits for the ACK before sending the next message).
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Messages in total, spread evenly over the connections.
    #[arg(long, default_value_t = 10_000)]
    messages: usize,
    /// ORM^O01 / OMI^O23 message file used as the template (segments separated by CR
    /// or LF). Default: the built-in copy of tests/hl7/orm_o01_ihe.hl7.
    #[arg(long)]
    template: Option<PathBuf>,
    /// Charset of a template whose MSH-18 is empty: ascii, utf8, iso2022jp, shift_jis.
    #[arg(long, default_value = "ascii")]
    default_charset: String,
    /// Messages per connection sent before measuring (not counted).
    #[arg(long, default_value_t = 0)]
    warmup: usize,
    /// Seconds to wait for each ACK.
    #[arg(long, default_value_t = 10.0)]
    ack_timeout: f64,
    /// Seconds to wait for each connection to be established.
    #[arg(long, default_value_t = 5.0)]
    connect_timeout: f64,
    /// Prefix of the generated MSH-10, accession and order numbers. Default: a run id
    /// derived from the clock and the process id, so repeated runs against the same
    /// readgate never reuse a control id.
    #[arg(long)]
    id_prefix: Option<String>,
    /// Tokio worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
    /// Print the first generated message (CR shown as newlines) and exit.
    #[arg(long)]
    show_message: bool,
}

// ---------------------------------------------------------------------------
// Template
// ---------------------------------------------------------------------------

/// A value varied per message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    ControlId,
    Accession,
    Placer,
    Filler,
    StudyUid,
}

#[derive(Debug)]
enum Part {
    Literal(Vec<u8>),
    Slot(Slot),
}

/// The template cut into encoded literal bytes and per-message slots.
#[derive(Debug)]
struct Template {
    parts: Vec<Part>,
    charset: Charset,
    message_type: String,
    slots: Vec<Slot>,
}

/// Identifiers of one message.
struct Ids {
    prefix: String,
    run: u64,
    seq: u64,
}

impl Ids {
    fn value(&self, slot: Slot) -> String {
        let (p, n) = (&self.prefix, self.seq);
        match slot {
            Slot::ControlId => format!("{p}-{n}"),
            Slot::Accession => format!("A{p}{n}"),
            Slot::Placer => format!("P{p}{n}"),
            Slot::Filler => format!("F{p}{n}"),
            // 2.25.<integer>: a UID that needs no registered root (PS3.5 B.2).
            Slot::StudyUid => format!("2.25.{}", (u128::from(self.run) << 64) | u128::from(n)),
        }
    }
}

impl Template {
    fn parse(raw: &[u8], default_charset: Charset) -> anyhow::Result<Template> {
        let decoded = charset::decode(raw, default_charset)
            .map_err(|e| anyhow!("the template cannot be decoded: {e}"))?;
        let charset = decoded.detection.charset;
        let text = decoded.text.trim_start_matches('\u{feff}');
        let segments: Vec<&str> = text
            .split(['\r', '\n'])
            .filter(|s| !s.trim().is_empty())
            .collect();
        let msh = segments
            .first()
            .filter(|s| s.starts_with("MSH"))
            .ok_or_else(|| anyhow!("the template does not start with an MSH segment"))?;
        let sep = msh
            .chars()
            .nth(3)
            .ok_or_else(|| anyhow!("the template's MSH has no field separator"))?;
        let component = msh.chars().nth(4).unwrap_or('^');
        let msh_fields: Vec<&str> = msh.split(sep).collect();
        let message_type = msh_fields
            .get(8)
            .map(|t| t.split(component).take(2).collect::<Vec<_>>().join("^"))
            .unwrap_or_default();

        // (segment id, field number, slot, whole field or first component only)
        let rules: &[(&str, usize, Slot, bool)] = &[
            ("MSH", 10, Slot::ControlId, true),
            ("ORC", 2, Slot::Placer, false),
            ("ORC", 3, Slot::Filler, false),
            ("OBR", 2, Slot::Placer, false),
            ("OBR", 3, Slot::Filler, false),
            ("OBR", 18, Slot::Accession, true),
            ("IPC", 1, Slot::Accession, true),
            ("IPC", 3, Slot::StudyUid, true),
            ("ZDS", 1, Slot::StudyUid, false),
        ];

        let mut text_parts: Vec<(String, Option<Slot>)> = Vec::new();
        let mut literal = String::new();
        let mut slots = Vec::new();
        for segment in &segments {
            let id: String = segment.chars().take(3).collect();
            let mut fields: Vec<String> = segment.split(sep).map(str::to_string).collect();
            // For MSH, fields[1] is MSH-2, so MSH-n is fields[n - 1]; elsewhere fields[n].
            let index = |n: usize| if id == "MSH" { n - 1 } else { n };
            let mut marks: Vec<(usize, Slot, bool)> = Vec::new();
            for &(seg, n, slot, whole) in rules {
                if seg != id {
                    continue;
                }
                let i = index(n);
                let present = fields.get(i).is_some_and(|f| {
                    let first = f.split(component).next().unwrap_or("");
                    !first.is_empty() && first != "\"\""
                });
                if slot == Slot::ControlId && !present {
                    bail!("the template has no MSH-10 (message control id)");
                }
                if present {
                    marks.push((i, slot, whole));
                }
            }
            marks.sort_by_key(|m| m.0);
            // Rebuild the segment, cutting it at each slot.
            let mut cursor = 0usize; // fields already emitted
            for (i, slot, whole) in marks {
                while cursor < i {
                    literal.push_str(&fields[cursor]);
                    literal.push(sep);
                    cursor += 1;
                }
                let rest = if whole {
                    String::new()
                } else {
                    let f = std::mem::take(&mut fields[i]);
                    match f.find(component) {
                        Some(pos) => f[pos..].to_string(),
                        None => String::new(),
                    }
                };
                text_parts.push((std::mem::take(&mut literal), Some(slot)));
                if !slots.contains(&slot) {
                    slots.push(slot);
                }
                literal.push_str(&rest);
                cursor = i + 1;
                if cursor < fields.len() {
                    literal.push(sep);
                }
            }
            for (k, f) in fields.iter().enumerate().skip(cursor) {
                literal.push_str(f);
                if k + 1 < fields.len() {
                    literal.push(sep);
                }
            }
            literal.push('\r');
        }
        text_parts.push((literal, None));

        // Encode each literal on its own: the slots are ASCII, and an ISO-2022-JP
        // encoder returns to ASCII at the end of every piece.
        let mut parts = Vec::new();
        for (lit, slot) in text_parts {
            if !lit.is_empty() {
                parts.push(Part::Literal(charset::encode(&lit, charset)));
            }
            if let Some(slot) = slot {
                parts.push(Part::Slot(slot));
            }
        }
        Ok(Template {
            parts,
            charset,
            message_type,
            slots,
        })
    }

    /// The message for `ids`, and its MSH-10.
    fn render(&self, ids: &Ids) -> (Vec<u8>, String) {
        let mut out = Vec::with_capacity(1024);
        let control_id = ids.value(Slot::ControlId);
        for part in &self.parts {
            match part {
                Part::Literal(bytes) => out.extend_from_slice(bytes),
                Part::Slot(Slot::ControlId) => out.extend_from_slice(control_id.as_bytes()),
                Part::Slot(slot) => out.extend_from_slice(ids.value(*slot).as_bytes()),
            }
        }
        (out, control_id)
    }
}

// ---------------------------------------------------------------------------
// ACK
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Code {
    Aa,
    Ae,
    Ar,
    Other,
}

/// MSA-1 and MSA-2 of an ACK, read from its bytes (MSA is ASCII in every charset
/// readgate answers in; MSA-2 echoes our ASCII control id).
fn read_ack(ack: &[u8]) -> Result<(Code, String), String> {
    let sep = match ack {
        [b'M', b'S', b'H', sep, ..] => *sep,
        _ => return Err(format!("reply does not start with MSH: {}", preview(ack))),
    };
    let msa = ack
        .split(|&b| b == b'\r' || b == b'\n')
        .find(|s| s.starts_with(b"MSA") && s.get(3) == Some(&sep))
        .ok_or_else(|| format!("reply has no MSA segment: {}", preview(ack)))?;
    let mut fields = msa.split(|&b| b == sep).skip(1);
    let code = match fields.next().unwrap_or(b"") {
        b"AA" | b"CA" => Code::Aa,
        b"AE" | b"CE" => Code::Ae,
        b"AR" | b"CR" => Code::Ar,
        _ => Code::Other,
    };
    let echoed = String::from_utf8_lossy(fields.next().unwrap_or(b"")).into_owned();
    Ok((code, echoed))
}

fn preview(bytes: &[u8]) -> String {
    let shown: String = String::from_utf8_lossy(&bytes[..bytes.len().min(120)])
        .replace('\r', "\\r")
        .replace('\n', "\\n");
    format!("{shown:?}")
}

// ---------------------------------------------------------------------------
// Connections
// ---------------------------------------------------------------------------

#[derive(Debug, Default)]
struct ConnResult {
    latencies_us: Vec<u32>,
    aa: u64,
    ae: u64,
    ar: u64,
    other: u64,
    /// (message sequence number, error)
    error: Option<(u64, String)>,
    started: Option<Instant>,
    finished: Option<Instant>,
}

struct Plan {
    template: Template,
    prefix: String,
    run: u64,
    ack_timeout: Duration,
    connect_timeout: Duration,
    warmup: usize,
    messages: u64,
}

async fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, String> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| format!("connect to {addr}: no answer within {timeout:?}"))?
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("TCP_NODELAY: {e}"))?;
    Ok(stream)
}

/// Send one message and wait for its ACK. Returns the code and the round-trip time.
async fn round_trip(
    stream: &mut TcpStream,
    decoder: &mut mllp::Decoder,
    frame: &[u8],
    control_id: &str,
    timeout: Duration,
) -> Result<(Code, Duration), String> {
    let t0 = Instant::now();
    stream
        .write_all(frame)
        .await
        .map_err(|e| format!("send: {e}"))?;
    let item = tokio::time::timeout(timeout, readgate::intake::mllp::read_frame(stream, decoder))
        .await
        .map_err(|_| format!("no ACK within {timeout:?}"))?
        .map_err(|e| format!("receive: {e}"))?;
    let elapsed = t0.elapsed();
    let ack = match item {
        None => return Err("the peer closed the connection instead of answering".into()),
        Some(Err(e)) => return Err(format!("MLLP framing error in the reply: {e}")),
        Some(Ok(ack)) => ack,
    };
    let (code, echoed) = read_ack(&ack)?;
    if echoed != control_id {
        return Err(format!(
            "ACK's MSA-2 is {echoed:?}, expected the MSH-10 just sent ({control_id:?})"
        ));
    }
    if !decoder.is_idle() {
        return Err("the peer sent more than one reply to one message".into());
    }
    Ok((code, elapsed))
}

/// Renders message `seq` under `prefix`, frames it and sends it with [`round_trip`]
/// (which times only the exchange); returns its control ID (MSH-10) and the outcome.
async fn send_message(
    stream: &mut TcpStream,
    decoder: &mut mllp::Decoder,
    plan: &Plan,
    prefix: String,
    seq: u64,
) -> (String, Result<(Code, Duration), String>) {
    let ids = Ids {
        prefix,
        run: plan.run,
        seq,
    };
    let (msg, control_id) = plan.template.render(&ids);
    let frame = mllp::encode_frame(&msg);
    let outcome = round_trip(stream, decoder, &frame, &control_id, plan.ack_timeout).await;
    (control_id, outcome)
}

async fn run_connection(
    index: usize,
    addr: SocketAddr,
    seqs: Vec<u64>,
    plan: Arc<Plan>,
    barrier: Arc<Barrier>,
) -> ConnResult {
    let mut result = ConnResult {
        latencies_us: Vec::with_capacity(seqs.len()),
        ..ConnResult::default()
    };
    let connected = connect(addr, plan.connect_timeout).await;
    // Everyone waits for everyone, so that set-up is not timed (and a failed connect
    // does not leave the others waiting).
    barrier.wait().await;
    let mut stream = match connected {
        Ok(s) => s,
        Err(e) => {
            result.error = Some((0, format!("connection {index}: {e}")));
            return result;
        }
    };
    let mut decoder = mllp::Decoder::new(mllp::DEFAULT_MAX_FRAME_LEN);
    // Warm-up messages get sequence numbers beyond the measured ones (1..=messages).
    let first_warmup = plan.messages + 1 + (index as u64 - 1) * plan.warmup as u64;
    let warmup = first_warmup..first_warmup + plan.warmup as u64;
    for seq in warmup {
        let warmup_prefix = format!("{}w", plan.prefix);
        let (control_id, outcome) =
            send_message(&mut stream, &mut decoder, &plan, warmup_prefix, seq).await;
        if let Err(e) = outcome {
            result.error = Some((
                seq,
                format!("connection {index}, warm-up message {control_id}: {e}"),
            ));
            return result;
        }
    }
    result.started = Some(Instant::now());
    for seq in seqs {
        let (control_id, outcome) =
            send_message(&mut stream, &mut decoder, &plan, plan.prefix.clone(), seq).await;
        match outcome {
            Ok((code, elapsed)) => {
                result
                    .latencies_us
                    .push(u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX));
                match code {
                    Code::Aa => result.aa += 1,
                    Code::Ae => result.ae += 1,
                    Code::Ar => result.ar += 1,
                    Code::Other => result.other += 1,
                }
            }
            Err(e) => {
                result.error = Some((
                    seq,
                    format!("connection {index}, message {control_id}: {e}"),
                ));
                break;
            }
        }
    }
    result.finished = Some(Instant::now());
    let _ = stream.shutdown().await;
    result
}

// ---------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------

fn percentile_ms(sorted_us: &[u32], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    // Nearest rank.
    let rank = ((p / 100.0) * sorted_us.len() as f64).ceil() as usize;
    let i = rank.clamp(1, sorted_us.len()) - 1;
    f64::from(sorted_us[i]) / 1000.0
}

fn run_id() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut x = nanos ^ (u64::from(std::process::id()) << 32) ^ 0x9E37_79B9_7F4A_7C15;
    // splitmix64 finaliser
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn main() {
    let args = Args::parse();
    match real_main(args) {
        Ok(0) => {}
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("hl7_load: error: {e:#}");
            std::process::exit(2);
        }
    }
}

fn real_main(args: Args) -> anyhow::Result<i32> {
    if args.connections == 0 {
        bail!("--connections must be at least 1");
    }
    if args.messages == 0 {
        bail!("--messages must be at least 1");
    }
    if !(args.ack_timeout > 0.0 && args.connect_timeout > 0.0) {
        bail!("--ack-timeout and --connect-timeout must be positive");
    }
    let default_charset: Charset = args.default_charset.parse().map_err(|_| {
        anyhow!(
            "--default-charset {:?}: expected ascii, utf8, iso2022jp or shift_jis",
            args.default_charset
        )
    })?;
    let raw = match &args.template {
        Some(path) => std::fs::read(path)
            .with_context(|| format!("cannot read the template {}", path.display()))?,
        None => DEFAULT_TEMPLATE.to_vec(),
    };
    let template =
        Template::parse(&raw, default_charset).with_context(|| match &args.template {
            Some(p) => format!("template {}", p.display()),
            None => "built-in template".to_string(),
        })?;
    if !matches!(template.message_type.as_str(), "ORM^O01" | "OMI^O23") {
        eprintln!(
            "hl7_load: warning: the template is {}, not ORM^O01 or OMI^O23",
            template.message_type
        );
    }
    if !template.slots.contains(&Slot::Accession) && !template.slots.contains(&Slot::StudyUid) {
        eprintln!(
            "hl7_load: warning: the template has no accession (OBR-18 / IPC-1) or study UID \
             (ZDS-1 / IPC-3): every message names the same order"
        );
    }

    let run = run_id();
    let prefix = match &args.id_prefix {
        Some(p) => p.clone(),
        None => format!("{:06x}", run & 0xFF_FFFF),
    };
    if args.show_message {
        let (msg, _) = template.render(&Ids {
            prefix,
            run,
            seq: 1,
        });
        let text = charset::decode_as(&msg, template.charset)
            .map_err(|e| anyhow!("generated message does not decode: {e}"))?;
        println!("{}", text.replace('\r', "\n"));
        return Ok(0);
    }

    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(t) = args.threads {
        builder.worker_threads(t.max(1));
    }
    let runtime = builder.build().context("starting the tokio runtime")?;

    runtime.block_on(async move {
        let mut addrs = Vec::new();
        for one in args.addr.split(',').map(str::trim) {
            addrs.push(
                tokio::net::lookup_host(one)
                    .await
                    .with_context(|| format!("--addr {one}: cannot resolve"))?
                    .next()
                    .ok_or_else(|| anyhow!("--addr {one}: no address"))?,
            );
        }
        let plan = Arc::new(Plan {
            template,
            prefix,
            run,
            ack_timeout: Duration::from_secs_f64(args.ack_timeout),
            connect_timeout: Duration::from_secs_f64(args.connect_timeout),
            warmup: args.warmup,
            messages: args.messages as u64,
        });
        let c = args.connections;
        let barrier = Arc::new(Barrier::new(c));
        let mut tasks = Vec::with_capacity(c);
        for i in 0..c {
            let seqs: Vec<u64> = (i..args.messages)
                .step_by(c)
                .map(|n| n as u64 + 1)
                .collect();
            tasks.push(tokio::spawn(run_connection(
                i + 1,
                addrs[i % addrs.len()],
                seqs,
                plan.clone(),
                barrier.clone(),
            )));
        }
        let mut results = Vec::with_capacity(c);
        for t in tasks {
            results.push(t.await.context("a connection task panicked")?);
        }
        let addrs: Vec<String> = addrs.iter().map(ToString::to_string).collect();
        report(&args, &addrs.join(","), &plan, results)
    })
}

fn report(args: &Args, addr: &str, plan: &Plan, results: Vec<ConnResult>) -> anyhow::Result<i32> {
    let start = results.iter().filter_map(|r| r.started).min();
    let end = results.iter().filter_map(|r| r.finished).max();
    let wall = match (start, end) {
        (Some(s), Some(e)) => e.saturating_duration_since(s),
        _ => Duration::ZERO,
    };
    let mut lat: Vec<u32> = results
        .iter()
        .flat_map(|r| r.latencies_us.iter().copied())
        .collect();
    lat.sort_unstable();
    let acked = lat.len() as u64;
    let sum = |f: fn(&ConnResult) -> u64| results.iter().map(f).sum::<u64>();
    let (aa, ae, ar, other) = (
        sum(|r| r.aa),
        sum(|r| r.ae),
        sum(|r| r.ar),
        sum(|r| r.other),
    );
    let errors: Vec<&str> = results
        .iter()
        .filter_map(|r| r.error.as_ref().map(|e| e.1.as_str()))
        .collect();
    let secs = wall.as_secs_f64();
    let rate = if secs > 0.0 { acked as f64 / secs } else { 0.0 };
    let (p50, p95, p99) = (
        percentile_ms(&lat, 50.0),
        percentile_ms(&lat, 95.0),
        percentile_ms(&lat, 99.0),
    );
    let max = lat.last().map_or(0.0, |&v| f64::from(v) / 1000.0);
    let mean = if lat.is_empty() {
        0.0
    } else {
        lat.iter().map(|&v| f64::from(v)).sum::<f64>() / lat.len() as f64 / 1000.0
    };
    if args.json {
        let v = serde_json::json!({
            "addr": addr,
            "template_type": plan.template.message_type,
            "charset": plan.template.charset.to_string(),
            "connections": args.connections,
            "messages": args.messages,
            "warmup_per_connection": args.warmup,
            "acknowledged": acked,
            "seconds": secs,
            "msgs_per_s": rate,
            "latency_ms": {"p50": p50, "p95": p95, "p99": p99, "max": max, "mean": mean},
            "acks": {"AA": aa, "AE": ae, "AR": ar, "other": other},
            "errors": errors,
        });
        println!("{v}");
    } else {
        println!(
            "hl7_load: {acked} of {} {} message(s) ({}) acknowledged over {} connection(s) to {addr} in {secs:.3} s",
            args.messages, plan.template.message_type, plan.template.charset, args.connections
        );
        println!("throughput: {rate:.0} msg/s");
        println!(
            "latency ms: p50 {p50:.3}  p95 {p95:.3}  p99 {p99:.3}  max {max:.3}  mean {mean:.3}"
        );
        println!("acks: AA {aa}  AE {ae}  AR {ar}  other {other}");
        println!("errors: {}", errors.len());
    }
    for e in &errors {
        eprintln!("hl7_load: error: {e}");
    }
    Ok(if errors.is_empty() && acked == args.messages as u64 {
        0
    } else {
        1
    })
}
