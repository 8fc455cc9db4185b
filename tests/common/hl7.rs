//! HL7 helpers for the integration tests: the sample messages, the Python `hl7`
//! package's `mllp_send` as the real sender, ACK parsing independent of readgate's own
//! ACK code, and a deterministic random generator.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use encoding_rs::{ISO_2022_JP, SHIFT_JIS};
use readgate::hl7::mllp;

/// The sample messages in tests/hl7/, in the order the interop test sends them.
pub const SAMPLES: [&str; 8] = [
    "omi_o23_iso2022jp.hl7",
    "orm_o01_ihe.hl7",
    "oru_r01_prelim.hl7",
    "oru_r01_final.hl7",
    "adt_a40_merge.hl7",
    "malformed_no_msh.hl7",
    "malformed_truncated.hl7",
    "orm_missing_accession.hl7",
];

pub fn sample_path(name: &str) -> PathBuf {
    super::repo_path("tests/hl7").join(name)
}

pub fn sample(name: &str) -> Vec<u8> {
    let path = sample_path(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The python3 the tests use (`PYTHON` overrides).
pub fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// Panics with an install hint unless the Python `hl7` package is importable. Tests
/// never skip for a missing peer: scripts/install-test-deps installs it.
pub fn require_python_hl7() {
    let out = Command::new(python())
        .args(["-c", "import hl7, hl7.client; print(hl7.__version__)"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python()));
    assert!(
        out.status.success(),
        "the Python `hl7` package is missing (pip install -r tests/requirements.txt, or \
         scripts/install-test-deps):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sends `payloads` over one connection with the `hl7` package's `mllp_send` and
/// returns the ACK payloads it printed, one per message.
///
/// `mllp_send` is run as `python3 -m hl7.client` (the module behind the console script:
/// the same code, but immune to whatever `mllp_send` PATH resolves to); set `MLLP_SEND`
/// to a command to use instead. Quirks of hl7 0.4.5's mllp_send that shape this helper:
/// it splits its input file on 0x1C, so each message is written MLLP-framed (a bare
/// file ends in "buffer not terminated"); reading from stdin is broken on Python 3
/// (text-mode stdin), so a file is used; it strips CR from both ends of each message;
/// it prints each reply as received (framing included) followed by a newline, and it
/// reads each reply with a single `recv(4096)`.
pub fn mllp_send(port: u16, payloads: &[&[u8]], scratch: &Path) -> Vec<Vec<u8>> {
    let file = scratch.join(format!(
        "mllp-send-{}-{}.hl7",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    let mut input = Vec::new();
    for p in payloads {
        assert!(
            !p.contains(&mllp::START_BLOCK) && !p.contains(&mllp::END_BLOCK) && !p.contains(&0x0C),
            "payload holds MLLP control bytes (or FF, which mllp_send splits on)"
        );
        input.extend(mllp::encode_frame(p));
    }
    std::fs::write(&file, &input).expect("write mllp_send input");

    let mut cmd = match std::env::var("MLLP_SEND") {
        Ok(c) => Command::new(c),
        Err(_) => {
            let mut c = Command::new(python());
            c.args(["-m", "hl7.client"]);
            c
        }
    };
    cmd.args(["-p", &port.to_string(), "--file"])
        .arg(&file)
        .arg("127.0.0.1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = run_with_timeout(cmd, Duration::from_secs(30), "mllp_send");
    assert!(
        out.status.success(),
        "mllp_send failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );

    let mut decoder = mllp::Decoder::default();
    decoder.push(&out.stdout);
    decoder.finish();
    let mut acks = Vec::new();
    while let Some(item) = decoder.next_frame() {
        match item {
            Ok(frame) => acks.push(frame),
            Err(e) => panic!(
                "mllp_send printed something that is not a complete MLLP reply ({e}): {:?}",
                String::from_utf8_lossy(&out.stdout)
            ),
        }
    }
    assert_eq!(
        acks.len(),
        payloads.len(),
        "one reply per message expected; mllp_send printed {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    let _ = std::fs::remove_file(&file);
    acks
}

/// Runs `cmd` to completion, killing it after `timeout`. Output is read after exit, so
/// it must fit in a pipe buffer (ACKs do).
pub fn run_with_timeout(mut cmd: Command, timeout: Duration, what: &str) -> std::process::Output {
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let start = Instant::now();
    loop {
        match child.try_wait().expect("wait") {
            Some(_) => return child.wait_with_output().expect("collect output"),
            None if start.elapsed() > timeout => {
                let _ = child.kill();
                let out = child.wait_with_output().expect("collect output");
                panic!(
                    "{what} did not finish within {timeout:?} (no reply?); stdout {:?}, stderr {:?}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Which charset an ACK's bytes are in, judged from the bytes themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckEncoding {
    Ascii,
    Utf8,
    Iso2022Jp,
    ShiftJis,
}

/// An ACK as a sender sees it: bytes, decoded text, segments.
#[derive(Debug, Clone)]
pub struct Ack {
    pub raw: Vec<u8>,
    pub encoding: AckEncoding,
    pub text: String,
    pub field_separator: char,
    pub component_separator: char,
    pub segments: Vec<String>,
}

impl Ack {
    /// Decodes and splits an ACK payload. ESC means ISO-2022-JP (strictly decoded);
    /// otherwise ASCII, else UTF-8, else Shift_JIS.
    pub fn parse(raw: &[u8]) -> Result<Ack, String> {
        let (encoding, text) = if raw.contains(&0x1B) {
            let text = ISO_2022_JP
                .decode_without_bom_handling_and_without_replacement(raw)
                .ok_or_else(|| format!("ACK has ESC but is not valid ISO-2022-JP: {raw:?}"))?;
            (AckEncoding::Iso2022Jp, text.into_owned())
        } else if raw.is_ascii() {
            (
                AckEncoding::Ascii,
                String::from_utf8_lossy(raw).into_owned(),
            )
        } else if let Ok(t) = std::str::from_utf8(raw) {
            (AckEncoding::Utf8, t.to_string())
        } else {
            let text = SHIFT_JIS
                .decode_without_bom_handling_and_without_replacement(raw)
                .ok_or_else(|| format!("ACK is neither UTF-8 nor Shift_JIS: {raw:?}"))?;
            (AckEncoding::ShiftJis, text.into_owned())
        };
        if !text.starts_with("MSH") {
            return Err(format!("ACK does not start with MSH: {text:?}"));
        }
        let mut chars = text.chars().skip(3);
        let field_separator = chars
            .next()
            .ok_or_else(|| format!("ACK has no field separator: {text:?}"))?;
        let component_separator = chars.next().unwrap_or('^');
        let segments = text
            .split(['\r', '\n'])
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        Ok(Ack {
            raw: raw.to_vec(),
            encoding,
            text,
            field_separator,
            component_separator,
            segments,
        })
    }

    /// Fields of the first segment named `id`: `[id, field 1, field 2, ...]`. For MSH,
    /// index n is MSH-(n+1) (MSH-1 is the separator itself).
    pub fn segment(&self, id: &str) -> Option<Vec<String>> {
        self.segments
            .iter()
            .find(|s| s.split(self.field_separator).next() == Some(id))
            .map(|s| s.split(self.field_separator).map(str::to_string).collect())
    }

    /// MSH-n (n >= 2).
    pub fn msh(&self, n: usize) -> String {
        self.segment("MSH")
            .and_then(|f| f.get(n - 1).cloned())
            .unwrap_or_default()
    }

    /// MSA-n.
    pub fn msa(&self, n: usize) -> String {
        self.segment("MSA")
            .and_then(|f| f.get(n).cloned())
            .unwrap_or_default()
    }

    /// MSA-1.
    pub fn code(&self) -> String {
        self.msa(1)
    }

    /// Text of the message for assertion failures (CR shown as a newline).
    pub fn show(&self) -> String {
        self.text.replace('\r', "\n")
    }
}

/// Sends `message` in one MLLP frame over a new connection to `addr` and returns the
/// framed answer (the ACK) as text; panics if none comes within 10 s.
pub async fn send_hl7(addr: std::net::SocketAddr, message: impl AsRef<[u8]>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut frame = vec![0x0b];
    frame.extend_from_slice(message.as_ref());
    frame.extend_from_slice(&[0x1c, 0x0d]);
    s.write_all(&frame).await.unwrap();
    let mut buf = Vec::new();
    while !buf.ends_with(&[0x1c, 0x0d]) {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "connection closed before the ACK");
        buf.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// A seeded generator (fastrand's wyrand): the same seed gives the same inputs.
pub struct Rng(fastrand::Rng);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(fastrand::Rng::with_seed(seed))
    }

    /// Uniform in `0..n` (0 when n is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            self.0.usize(..n)
        }
    }

    pub fn byte(&mut self) -> u8 {
        self.0.u8(..)
    }

    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}
