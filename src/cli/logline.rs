//! One log event, one line: text from the network (UIDs, AE titles, HL7 fields) reaches
//! log fields as it came, and a line feed in it would start a forged log line (finding
//! L1). The writer every log event goes through escapes CR, LF and, without a terminal,
//! every other control character, keeping only the event's final newline.

use std::io::{self, Write};
use tracing_subscriber::fmt::MakeWriter;

/// Stderr, one escaped line per write (tracing-subscriber writes one event per write).
pub struct OneLine {
    /// Keep ESC (the formatter's own colours on a terminal).
    pub ansi: bool,
}

pub struct OneLineWriter {
    ansi: bool,
}

impl<'a> MakeWriter<'a> for OneLine {
    type Writer = OneLineWriter;
    fn make_writer(&'a self) -> Self::Writer {
        OneLineWriter { ansi: self.ansi }
    }
}

/// `event` with control characters escaped as `\n`, `\r`, `\x1b`…, except a final newline.
pub fn escape(event: &[u8], ansi: bool) -> Vec<u8> {
    let (body, end) = match event.strip_suffix(b"\n") {
        Some(body) => (body, &b"\n"[..]),
        None => (event, &b""[..]),
    };
    let mut out = Vec::with_capacity(event.len() + 8);
    for &b in body {
        match b {
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.push(b),
            0x1b if ansi => out.push(b),
            0..=0x1f | 0x7f => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
            _ => out.push(b),
        }
    }
    out.extend_from_slice(end);
    out
}

impl Write for OneLineWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        io::stderr().lock().write_all(&escape(buf, self.ansi))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn an_event_stays_one_line() {
        let forged = b"WARN sop_instance=1.2\n2026-01-01T00:00:00Z  INFO forged\r\x1b[31m\n";
        let out = escape(forged, false);
        assert_eq!(
            out,
            b"WARN sop_instance=1.2\\n2026-01-01T00:00:00Z  INFO forged\\r\\x1b[31m\n".to_vec()
        );
        assert_eq!(
            escape(b"plain \x1b[1mbold\n", true),
            b"plain \x1b[1mbold\n".to_vec()
        );
    }
}
