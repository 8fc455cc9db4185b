//! HL7 listener robustness: thousands of random, mutated and badly framed messages over
//! several concurrent connections to the readgate binary. Every complete frame must get
//! exactly one ACK frame back, in order, each one readable with MSA-1 in AA/AE/AR and
//! MSA-2 echoing the frame's MSH-10; the daemon must keep running, and a good message on
//! a new connection afterwards must get AA.
//!
//! What "complete frame" means is decided by readgate's own `mllp::Decoder` run over the
//! exact bytes each connection sends (with the configured `max_frame_bytes`), and the
//! expected MSA-2 by `hl7::process` on each decoded frame: the test checks that the
//! listener applies them faithfully over real sockets, whatever the pieces the bytes
//! arrive in. Frames over the limit get no ACK, or an AR (either is accepted); what
//! follows them must still be answered.
//!
//! Deterministic (fastrand, fixed seeds). `HL7_FUZZ_FRAMES` sets the frames per fuzz
//! connection (default 500; 6 connections).

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::hl7::{sample, Ack, Rng, SAMPLES};
use common::{free_port, no_reading_site, Daemon};
use readgate::hl7::{self, charset, mllp};

/// `hl7.max_frame_bytes` for this test: small, so oversize frames are cheap to send.
const MAX_FRAME: usize = 64 * 1024;
const FUZZ_CONNECTIONS: u64 = 6;
const READ_TIMEOUT: Duration = Duration::from_secs(20);

/// MSH-10 of each sample (ASCII, inside the MSH in every charset), to make copies unique.
const CONTROL_IDS: [&[u8]; 6] = [
    b"MSG00001",
    b"ORM0001",
    b"ORU0001",
    b"ORU0002",
    b"ADT0001",
    b"ORM0002",
];

// ---------------------------------------------------------------------------
// Generating input
// ---------------------------------------------------------------------------

const SPECIAL: &[u8] = b"|^~\\&#\r\n\"\x1b\x80\xff\xe3\x00\x7f";
const SNIPPETS: &[&[u8]] = &[
    b"\\S\\",
    b"\\F\\",
    b"\\X",
    b"\\Xe5b1b1\\",
    b"\\.sp 99999999999999999999\\",
    b"\\.br\\",
    "山田\\S\\太郎".as_bytes(),
    b"\x1b$B;3ED",
    b"\x1b(B",
    b"\x1b$(D",
    b"\x83\x7c",
    b"\rMSH|^~\\&|",
    b"\rBHS|^~\\&|",
    b"\rOBR|1|",
    b"\rORC|NW|",
    b"\rIPC|",
    b"\rZZ",
    b"~ISO IR87",
    b"UNICODE UTF-8",
    b"SHIFT_JIS",
    b"8859/1",
    b"ACK^A01",
    b"\"\"",
    b"&&&&&&&&^^^^^^~~~~",
];

/// MLLP cannot carry 0x0B / 0x1C inside a payload; generated payloads never hold them,
/// so where frames start and end is decided by the framing the test chooses.
fn sanitize(mut v: Vec<u8>) -> Vec<u8> {
    for b in &mut v {
        if *b == mllp::START_BLOCK || *b == mllp::END_BLOCK {
            *b = b'?';
        }
    }
    v
}

fn mutate(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
    let mut v = base.to_vec();
    for _ in 0..1 + rng.below(6) {
        let pos = rng.below(v.len() + 1);
        match rng.below(8) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.byte();
            }
            1 => v.insert(pos, SPECIAL[rng.below(SPECIAL.len())]),
            2 => {
                let end = (pos + rng.below(40)).min(v.len());
                v.drain(pos..end);
            }
            3 => v.truncate(pos),
            4 => {
                let snippet = SNIPPETS[rng.below(SNIPPETS.len())];
                v.splice(pos..pos, snippet.iter().copied());
            }
            5 => {
                let end = (pos + rng.below(200)).min(v.len());
                let copy = v[pos..end].to_vec();
                let at = rng.below(v.len() + 1);
                v.splice(at..at, copy);
            }
            6 if v.len() > 1 => {
                let (a, b) = (rng.below(v.len()), rng.below(v.len()));
                v.swap(a, b);
            }
            _ => v.insert(pos, rng.byte()),
        }
    }
    sanitize(v)
}

fn random_payload(rng: &mut Rng) -> Vec<u8> {
    let len = rng.below(600);
    let mut v: Vec<u8> = if rng.chance(2) {
        b"MSH|^~\\&|".to_vec()
    } else {
        Vec::new()
    };
    for _ in 0..len {
        v.push(match rng.below(4) {
            0 => SPECIAL[rng.below(SPECIAL.len())],
            1 => b"MSHPIDORCOBRIPCOBXMSA0123456789|^"[rng.below(33)],
            _ => rng.byte(),
        });
    }
    sanitize(v)
}

/// Bytes outside any frame: never a start block (a start block would open a frame).
fn garbage(rng: &mut Rng) -> Vec<u8> {
    let mut v = match rng.below(4) {
        0 => b"GET / HTTP/1.1\r\nHost: readgate\r\n\r\n".to_vec(),
        1 => b"\r\n".to_vec(),
        2 => vec![mllp::END_BLOCK, mllp::CARRIAGE_RETURN],
        _ => (0..1 + rng.below(64)).map(|_| rng.byte()).collect(),
    };
    for b in &mut v {
        if *b == mllp::START_BLOCK {
            *b = b'.';
        }
    }
    v
}

/// A sample with a unique MSH-10 (half the time), so that the listener sees new
/// messages and not only repeats of the same control ids.
fn sample_copy(rng: &mut Rng, corpus: &[Vec<u8>], unique: &str) -> Vec<u8> {
    let base = &corpus[rng.below(corpus.len())];
    if rng.chance(2) {
        for id in CONTROL_IDS {
            if let Some(pos) = base.windows(id.len()).position(|w| w == id) {
                let mut v = base[..pos].to_vec();
                v.extend_from_slice(unique.as_bytes());
                v.extend_from_slice(&base[pos + id.len()..]);
                return v;
            }
        }
    }
    base.clone()
}

/// A payload over the limit: an ORM with a huge text OBX.
fn oversize_payload(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut v =
        b"MSH|^~\\&|BIG|BIG|READGATE|RAD|20240601||ORM^O01|BIG-X|P|2.3.1\rPID|||P1\rOBX|1|TX|||"
            .to_vec();
    while v.len() < len {
        v.push(b'a' + rng.below(26) as u8);
    }
    v.push(b'\r');
    v
}

/// The byte stream of one fuzz connection.
fn fuzz_stream(rng: &mut Rng, corpus: &[Vec<u8>], conn: u64, frames: usize) -> Vec<u8> {
    let mut wire = Vec::new();
    for k in 0..frames {
        let unique = format!("FZ{conn}-{k}");
        let payload = match rng.below(20) {
            0..=10 => {
                let base = sample_copy(rng, corpus, &unique);
                mutate(rng, &base)
            }
            11..=13 => random_payload(rng),
            _ => sample_copy(rng, corpus, &unique),
        };
        match rng.below(20) {
            // Garbage before the frame.
            0..=1 => {
                wire.extend(garbage(rng));
                wire.extend(mllp::encode_frame(&payload));
            }
            // A frame cut short and abandoned: the next start block interrupts it.
            2 => {
                let cut = rng.below(payload.len() + 1);
                wire.push(mllp::START_BLOCK);
                wire.extend_from_slice(&payload[..cut]);
                wire.extend(mllp::encode_frame(&payload));
            }
            // End block without the final CR, or followed by LF.
            3 => {
                wire.push(mllp::START_BLOCK);
                wire.extend_from_slice(&payload);
                wire.push(mllp::END_BLOCK);
                if rng.chance(2) {
                    wire.extend_from_slice(b"\r\n");
                }
            }
            _ => wire.extend(mllp::encode_frame(&payload)),
        }
    }
    // Sometimes the stream ends inside a frame.
    if rng.chance(2) {
        let i = rng.below(corpus.len());
        let p = mutate(rng, &corpus[i]);
        wire.push(mllp::START_BLOCK);
        wire.extend_from_slice(&p[..rng.below(p.len() + 1)]);
    }
    wire
}

/// Cut a stream into writes: byte by byte, small pieces, or many frames at once.
fn chunks(rng: &mut Rng, wire: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < wire.len() {
        let n = match rng.below(10) {
            0..=1 => 1 + rng.below(4),
            2..=5 => 1 + rng.below(300),
            6..=8 => 1 + rng.below(3000),
            _ => 1 + rng.below(40_000),
        };
        let end = (at + n).min(wire.len());
        out.push((at, end));
        at = end;
    }
    out
}

// ---------------------------------------------------------------------------
// The oracle: what the listener must answer to a byte stream
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Expected {
    /// One ACK whose MSA-2 has these bytes; `frame` is kept for messages.
    Ack { msa2: Vec<u8>, frame: Vec<u8> },
    /// An oversize frame: no ACK, or one AR.
    NoneOrReject,
}

fn hl7_config() -> hl7::Config {
    hl7::Config {
        default_charset: charset::Charset::Ascii,
        accept_unsupported_types: true,
        ..hl7::Config::default()
    }
}

/// MSA-2 of an ACK, as raw bytes (split on the ACK's own field separator).
fn msa2(ack: &[u8]) -> Option<Vec<u8>> {
    let sep = *ack.get(3)?;
    let msa = ack
        .split(|&b| b == b'\r')
        .find(|s| s.starts_with(b"MSA") && s.get(3) == Some(&sep))?;
    Some(msa.split(|&b| b == sep).nth(2).unwrap_or(b"").to_vec())
}

fn expected_for(wire: &[u8], finished: bool) -> Vec<Expected> {
    let config = hl7_config();
    let mut decoder = mllp::Decoder::new(MAX_FRAME);
    decoder.push(wire);
    if finished {
        decoder.finish();
    }
    let mut out = Vec::new();
    while let Some(item) = decoder.next_frame() {
        match item {
            Ok(frame) => {
                let o = hl7::process(&frame, &config, "ORACLE", "20240601000000+0000");
                if let Err(hl7::Error::Parse(hl7::ParseError::Panicked(m))) = &o.result {
                    panic!(
                        "hl7::process contained a panic ({m}) for {:?}",
                        String::from_utf8_lossy(&frame)
                    );
                }
                check_ack(&o.ack_bytes).unwrap_or_else(|e| {
                    panic!(
                        "the library's own ACK fails the test's check ({e}) for {:?}",
                        String::from_utf8_lossy(&frame)
                    )
                });
                if o.should_reply() {
                    out.push(Expected::Ack {
                        msa2: msa2(&o.ack_bytes).expect("library ACK has an MSA"),
                        frame,
                    });
                }
            }
            Err(mllp::FrameError::TooLarge { .. }) => out.push(Expected::NoneOrReject),
            Err(_) => {}
        }
    }
    out
}

/// An ACK a sender can use: MSH with a sane field separator, MSA-1 in AA/AE/AR, and
/// decodable in the charset its MSH-18 names (when it names one readgate knows).
fn check_ack(raw: &[u8]) -> Result<String, String> {
    check_ack_in(raw, charset::Charset::Ascii)
}

/// [`check_ack`] for a listener whose default charset (used without MSH-18) is `default`.
fn check_ack_in(raw: &[u8], default: charset::Charset) -> Result<String, String> {
    if !raw.starts_with(b"MSH") {
        return Err("does not start with MSH".into());
    }
    let sep = *raw.get(3).ok_or("no field separator")?;
    if !sep.is_ascii_graphic() || sep.is_ascii_alphanumeric() {
        return Err(format!("bad field separator {sep:#04x}"));
    }
    let msa = raw
        .split(|&b| b == b'\r')
        .find(|s| s.starts_with(b"MSA") && s.get(3) == Some(&sep))
        .ok_or("no MSA segment")?;
    let code = msa.split(|&b| b == sep).nth(1).unwrap_or(b"");
    let code = String::from_utf8_lossy(code).into_owned();
    if !matches!(code.as_str(), "AA" | "AE" | "AR") {
        return Err(format!("MSA-1 is {code:?}"));
    }
    match charset::decode(raw, default) {
        Ok(_) | Err(charset::CharsetError::Unsupported { .. }) => {}
        Err(e) => return Err(format!("not decodable: {e}")),
    }
    Ok(code)
}

fn preview(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(&bytes[..bytes.len().min(160)]);
    format!("{:?}", s.replace('\r', "\n"))
}

/// Compare the ACKs received on one connection with the oracle's list.
fn compare(what: &str, expected: &[Expected], acks: &[Vec<u8>]) -> Result<Counts, String> {
    let mut counts = Counts::default();
    let mut j = 0;
    for (i, e) in expected.iter().enumerate() {
        match e {
            Expected::Ack { msa2: want, frame } => {
                let Some(ack) = acks.get(j) else {
                    return Err(format!(
                        "{what}: {} ACK(s) received, expected at least {} (no ACK for frame {i}: {})",
                        acks.len(),
                        j + 1,
                        preview(frame)
                    ));
                };
                let code = check_ack(ack)
                    .map_err(|err| format!("{what}: ACK {j} unusable ({err}): {}", preview(ack)))?;
                let got = msa2(ack).unwrap_or_default();
                if &got != want {
                    return Err(format!(
                        "{what}: ACK {j} has MSA-2 {:?}, expected {:?} (frame {i}: {}; ACK: {})",
                        String::from_utf8_lossy(&got),
                        String::from_utf8_lossy(want),
                        preview(frame),
                        preview(ack)
                    ));
                }
                counts.add(&code);
                j += 1;
            }
            Expected::NoneOrReject => {
                let next_want = expected[i + 1..].iter().find_map(|e| match e {
                    Expected::Ack { msa2, .. } => Some(msa2.clone()),
                    Expected::NoneOrReject => None,
                });
                if let Some(ack) = acks.get(j) {
                    let is_ar = check_ack(ack).ok().as_deref() == Some("AR");
                    if is_ar && msa2(ack) != next_want {
                        counts.oversize_ar += 1;
                        j += 1;
                    }
                }
            }
        }
    }
    if j != acks.len() {
        return Err(format!(
            "{what}: {} ACK(s) received for {j} expected; first extra: {}",
            acks.len(),
            preview(&acks[j])
        ));
    }
    Ok(counts)
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    aa: usize,
    ae: usize,
    ar: usize,
    oversize_ar: usize,
}

impl Counts {
    fn add(&mut self, code: &str) {
        match code {
            "AA" => self.aa += 1,
            "AE" => self.ae += 1,
            _ => self.ar += 1,
        }
    }

    fn merge(&mut self, o: Counts) {
        self.aa += o.aa;
        self.ae += o.ae;
        self.ar += o.ar;
        self.oversize_ar += o.oversize_ar;
    }

    fn total(&self) -> usize {
        self.aa + self.ae + self.ar
    }
}

// ---------------------------------------------------------------------------
// Talking to the listener
// ---------------------------------------------------------------------------

fn connect(port: u16) -> Result<TcpStream, String> {
    let s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(READ_TIMEOUT))
        .map_err(|e| e.to_string())?;
    Ok(s)
}

/// Reads ACK frames until EOF (or until `limit` frames when given).
fn read_acks(mut s: TcpStream, limit: Option<usize>) -> Result<Vec<Vec<u8>>, String> {
    let mut decoder = mllp::Decoder::default();
    let mut acks = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if limit.is_some_and(|l| acks.len() >= l) {
            return Ok(acks);
        }
        let n = match s.read(&mut buf) {
            Ok(n) => n,
            Err(e) => {
                let hint = if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) {
                    format!(
                        " (no ACK, or the connection was not closed after our EOF, within {READ_TIMEOUT:?})"
                    )
                } else {
                    String::new()
                };
                return Err(format!(
                    "reading ACKs after {} ACK(s): {e}{hint}",
                    acks.len()
                ));
            }
        };
        if n == 0 {
            decoder.finish();
        } else {
            decoder.push(&buf[..n]);
        }
        while let Some(item) = decoder.next_frame() {
            match item {
                Ok(frame) => acks.push(frame),
                Err(e) => return Err(format!("broken MLLP framing from readgate: {e}")),
            }
        }
        if n == 0 {
            return Ok(acks);
        }
    }
}

/// Sends `wire` in the given pieces while another thread reads the ACKs; then half-
/// closes and reads until readgate closes. Returns the ACK payloads.
fn exchange(
    port: u16,
    wire: Arc<Vec<u8>>,
    pieces: Vec<(usize, usize)>,
    pause_every: usize,
) -> Result<Vec<Vec<u8>>, String> {
    let s = connect(port)?;
    let reader = s.try_clone().map_err(|e| e.to_string())?;
    let reading = thread::spawn(move || read_acks(reader, None));
    let mut w = s;
    for (k, (a, b)) in pieces.into_iter().enumerate() {
        w.write_all(&wire[a..b])
            .map_err(|e| format!("write at byte {a}: {e}"))?;
        if pause_every > 0 && k % pause_every == pause_every - 1 {
            thread::sleep(Duration::from_millis(1));
        }
    }
    w.shutdown(Shutdown::Write)
        .map_err(|e| format!("shutdown: {e}"))?;
    reading
        .join()
        .map_err(|_| "reader thread panicked".to_string())?
}

fn fuzz_connection(
    port: u16,
    corpus: Arc<Vec<Vec<u8>>>,
    conn: u64,
    frames: usize,
) -> Result<Counts, String> {
    let mut rng = Rng::new(0x9E37_79B9_7F4A_7C15 ^ (conn.wrapping_mul(0x1000_0000_01B3) + 1));
    let wire = fuzz_stream(&mut rng, &corpus, conn, frames);
    let expected = expected_for(&wire, true);
    let pieces = chunks(&mut rng, &wire);
    let what = format!(
        "fuzz connection {conn} ({} bytes, {} writes)",
        wire.len(),
        pieces.len()
    );
    let acks = exchange(port, Arc::new(wire), pieces, 40).map_err(|e| format!("{what}: {e}"))?;
    compare(&what, &expected, &acks)
}

/// Good frame, oversize frame (three shapes), good frame: the good ones are answered.
fn oversize_connection(port: u16, corpus: Arc<Vec<Vec<u8>>>) -> Result<Counts, String> {
    let mut rng = Rng::new(0xB16B_00B5);
    let orm = &corpus[1];
    let good = |tag: &str| -> Vec<u8> {
        let text = String::from_utf8(orm.clone()).expect("ASCII sample");
        text.replacen("|ORM0001|", &format!("|{tag}|"), 1)
            .into_bytes()
    };
    let mut wire = Vec::new();
    for (i, shape) in ["terminated", "interrupted", "huge"].iter().enumerate() {
        wire.extend(mllp::encode_frame(&good(&format!("BIG-A{i}"))));
        match *shape {
            "terminated" => wire.extend(mllp::encode_frame(&oversize_payload(
                &mut rng,
                MAX_FRAME + 1000,
            ))),
            // No end block: the next start block ends it.
            "interrupted" => {
                wire.push(mllp::START_BLOCK);
                wire.extend(oversize_payload(&mut rng, MAX_FRAME * 2));
            }
            _ => wire.extend(mllp::encode_frame(&oversize_payload(
                &mut rng,
                MAX_FRAME * 8,
            ))),
        }
        wire.extend(mllp::encode_frame(&good(&format!("BIG-B{i}"))));
    }
    let expected = expected_for(&wire, true);
    let n_acks = expected
        .iter()
        .filter(|e| matches!(e, Expected::Ack { .. }))
        .count();
    assert_eq!(n_acks, 6, "the oracle sees the six good frames");
    let pieces = chunks(&mut rng, &wire);
    let acks = exchange(port, Arc::new(wire), pieces, 0)
        .map_err(|e| format!("oversize connection: {e}"))?;
    let counts = compare("oversize connection", &expected, &acks)?;
    if counts.total() != 6 {
        return Err(format!("oversize connection: {counts:?}"));
    }
    Ok(counts)
}

/// Short connections that end inside a frame, or send junk, then close.
fn closing_connections(port: u16, corpus: Arc<Vec<Vec<u8>>>, n: usize) -> Result<Counts, String> {
    let mut rng = Rng::new(0xC105_ED00);
    let mut counts = Counts::default();
    for c in 0..n {
        let mut s = connect(port).map_err(|e| format!("closing connection {c}: {e}"))?;
        let mut wire = Vec::new();
        for k in 0..rng.below(4) {
            let p = sample_copy(&mut rng, &corpus, &format!("CL{c}-{k}"));
            wire.extend(mllp::encode_frame(&if rng.chance(2) {
                mutate(&mut rng, &p)
            } else {
                p
            }));
        }
        let expected = expected_for(&wire, false);
        let mut partial = Vec::new();
        if rng.chance(5) {
            partial.extend(garbage(&mut rng));
        } else {
            let i = rng.below(corpus.len());
            let p = mutate(&mut rng, &corpus[i]);
            partial.push(mllp::START_BLOCK);
            partial.extend_from_slice(&p[..rng.below(p.len() + 1)]);
        }
        s.write_all(&wire)
            .map_err(|e| format!("closing connection {c}: {e}"))?;
        if rng.chance(3) {
            // Close with ACKs unread and the last frame unfinished.
            s.write_all(&partial)
                .map_err(|e| format!("closing connection {c}: {e}"))?;
            drop(s);
            continue;
        }
        let acks = read_acks(
            s.try_clone().map_err(|e| e.to_string())?,
            Some(expected.len()),
        )
        .map_err(|e| format!("closing connection {c}: {e}"))?;
        counts.merge(compare(
            &format!("closing connection {c}"),
            &expected,
            &acks,
        )?);
        s.write_all(&partial)
            .map_err(|e| format!("closing connection {c}: {e}"))?;
        drop(s);
    }
    Ok(counts)
}

/// One message on a new connection; its ACK.
fn send_one(port: u16, payload: &[u8]) -> Ack {
    let mut s = connect(port).expect("connect for the final message");
    s.write_all(&mllp::encode_frame(payload)).expect("write");
    let acks = read_acks(s, Some(1)).expect("ACK to the final message");
    Ack::parse(&acks[0]).expect("parse ACK")
}

#[test]
fn listener_survives_random_mutated_and_broken_frames() {
    let started = Instant::now();
    let frames: usize = std::env::var("HL7_FUZZ_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let corpus: Arc<Vec<Vec<u8>>> = Arc::new(SAMPLES.iter().map(|s| sample(s)).collect());

    let (_dir, mut cfg) = no_reading_site();
    let port = free_port();
    cfg.hl7_port = Some(port);
    cfg.hl7_max_frame_bytes = MAX_FRAME as u64;
    cfg.hl7_idle_timeout_secs = 60;
    let mut daemon = Daemon::start(&cfg.write(), cfg.dicom_port);
    daemon.wait_for_port(port);

    let mut handles = Vec::new();
    for conn in 0..FUZZ_CONNECTIONS {
        let corpus = corpus.clone();
        handles.push(thread::spawn(move || {
            fuzz_connection(port, corpus, conn, frames)
        }));
    }
    {
        let corpus = corpus.clone();
        handles.push(thread::spawn(move || oversize_connection(port, corpus)));
    }
    {
        let corpus = corpus.clone();
        handles.push(thread::spawn(move || closing_connections(port, corpus, 40)));
    }
    let mut total = Counts::default();
    let mut failures = Vec::new();
    for h in handles {
        match h.join() {
            Ok(Ok(c)) => total.merge(c),
            Ok(Err(e)) => failures.push(e),
            Err(_) => failures.push("a connection thread panicked (see above)".to_string()),
        }
    }
    daemon.assert_running();
    assert!(
        failures.is_empty(),
        "{} connection(s) failed:\n{}\n--- readgate log (tail) ---\n{}",
        failures.len(),
        failures.join("\n"),
        tail(&daemon.log_text(), 40)
    );

    // Still serving: a good, new message on a new connection gets AA.
    let orm = String::from_utf8(sample("orm_o01_ihe.hl7")).unwrap();
    let fresh = orm
        .replacen("|ORM0001|", "|AFTER-FUZZ-1|", 1)
        .replace("ACC-1001", "ACC-AFTER-FUZZ");
    let ack = send_one(port, fresh.as_bytes());
    assert_eq!(ack.code(), "AA", "{}", ack.show());
    assert_eq!(ack.msa(2), "AFTER-FUZZ-1");
    daemon.assert_running();

    let log = daemon.log_text();
    assert!(
        !log.contains("panicked"),
        "readgate logged a panic:\n{}",
        tail(&log, 60)
    );
    eprintln!(
        "hl7 robustness: {} ACKs checked (AA {}, AE {}, AR {}; {} AR for oversize frames) in {:.1} s",
        total.total(),
        total.aa,
        total.ae,
        total.ar,
        total.oversize_ar,
        started.elapsed().as_secs_f64()
    );
    assert!(total.total() > 2000, "{total:?}");
}

/// The parser and the framing alone, without sockets: 5,000 random and mutated inputs
/// in every charset readgate reads, each answered directly and again after MLLP framing
/// with noise and random cuts. No input may panic, every ACK must pass `check_ack`, an
/// error is never AA, and the mutations must reach extraction (many of each code).
#[test]
fn parser_and_framing_never_panic_in_any_charset() {
    let corpus: Vec<Vec<u8>> = SAMPLES.iter().map(|s| sample(s)).collect();
    let charsets = [
        charset::Charset::Ascii,
        charset::Charset::Utf8,
        charset::Charset::Iso2022Jp,
        charset::Charset::ShiftJis,
    ];
    let mut rng = Rng::new(0x9E37_79B9_7F4A_7C15);
    let mut codes = std::collections::HashMap::new();
    let mut frames = 0usize;
    let answer = |input: &[u8], config: &hl7::Config| {
        let o = hl7::process(input, config, "ACK42", "20240601120000+0900");
        if let Err(hl7::Error::Parse(hl7::ParseError::Panicked(m))) = &o.result {
            panic!(
                "contained panic {m:?} for {:?}",
                String::from_utf8_lossy(input)
            );
        }
        let code = check_ack_in(&o.ack_bytes, config.default_charset)
            .unwrap_or_else(|e| panic!("{e} for {:?}", String::from_utf8_lossy(input)));
        assert!(o.result.is_ok() || code != "AA", "an error answered AA");
        code
    };
    for i in 0..5000 {
        let config = hl7::Config {
            default_charset: charsets[i % charsets.len()],
            accept_unsupported_types: i % 5 == 0,
            ..hl7::Config::default()
        };
        let input = if i % 4 == 0 {
            random_payload(&mut rng)
        } else {
            let base = rng.below(corpus.len());
            mutate(&mut rng, &corpus[base])
        };
        *codes.entry(answer(&input, &config)).or_insert(0) += 1;

        let mut wire = garbage(&mut rng);
        wire.extend(mllp::encode_frame(&input));
        let next = rng.below(corpus.len());
        wire.extend(mllp::encode_frame(&corpus[next]));
        let mut decoder = mllp::Decoder::new(1024);
        for (start, end) in chunks(&mut rng, &wire) {
            decoder.push(&wire[start..end]);
            while let Some(item) = decoder.next_frame() {
                if let Ok(frame) = item {
                    assert!(frame.len() <= 1024);
                    frames += 1;
                    answer(&frame, &config);
                }
            }
        }
        decoder.finish();
        while decoder.next_frame().is_some() {}
    }
    assert!(frames > 5000, "{frames}");
    for code in ["AA", "AE", "AR"] {
        assert!(codes.get(code).copied().unwrap_or(0) > 200, "{codes:?}");
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
