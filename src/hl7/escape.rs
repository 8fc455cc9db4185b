//! HL7 delimiters and escape sequences.
//!
//! Escape decoding is done here rather than with hl7-parser's `display()`/`decode()`,
//! which panic on text that has multi-byte UTF-8 before an escape (e.g. `山田\S\太郎`).
//! This implementation walks `char`s, so it cannot split a character.

use serde::{Deserialize, Serialize};

/// The delimiters of a message: MSH-1 and MSH-2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delimiters {
    /// MSH-1, `|` by default.
    pub field: char,
    /// `^`
    pub component: char,
    /// `~`
    pub repetition: char,
    /// `\`
    pub escape: char,
    /// `&`
    pub subcomponent: char,
    /// The HL7 2.7 truncation character (`#`), when MSH-2 has five characters.
    pub truncation: Option<char>,
}

impl Default for Delimiters {
    fn default() -> Self {
        Delimiters {
            field: '|',
            component: '^',
            repetition: '~',
            escape: '\\',
            subcomponent: '&',
            truncation: None,
        }
    }
}

/// Longest escape sequence looked at; a lone escape character further from the next
/// one is literal text, and this bounds the work on hostile input.
const MAX_ESCAPE_LEN: usize = 64;

impl Delimiters {
    /// MSH-2 as it appears in a message (`^~\&`, or `^~\&#`).
    pub fn encoding_characters(&self) -> String {
        let mut s = String::with_capacity(5);
        s.push(self.component);
        s.push(self.repetition);
        s.push(self.escape);
        s.push(self.subcomponent);
        if let Some(t) = self.truncation {
            s.push(t);
        }
        s
    }

    /// Decode the escape sequences of a raw value.
    ///
    /// * `\F\ \S\ \T\ \R\ \E\` (and `\P\` with a truncation character) → the delimiter;
    /// * `\.br\` → newline, `\.sp\`/`\.sp n\` → n newlines (at most 10), other
    ///   formatting commands (`\.in\`, `\.ti\`, `\.sk\`, `\.ce\`, `\.fi\`, `\.nf\`) and
    ///   highlighting (`\H\`, `\N\`) are dropped;
    /// * `\Xhh..\` → the bytes, when they form UTF-8 text (the message is already
    ///   decoded, so only ASCII/UTF-8 hex is meaningful); otherwise kept verbatim;
    /// * character set switches `\Cxxyy\`, `\Mxxyyzz\` are dropped (the message was
    ///   decoded as a whole);
    /// * anything else (`\Z..\`, unknown, unterminated) is kept verbatim.
    pub fn unescape(&self, raw: &str) -> String {
        let esc = self.escape;
        if !raw.contains(esc) {
            return raw.to_string();
        }
        let mut out = String::with_capacity(raw.len());
        let mut rest = raw;
        while let Some(pos) = rest.find(esc) {
            out.push_str(&rest[..pos]);
            let after = &rest[pos + esc.len_utf8()..];
            let close = after
                .char_indices()
                .take(MAX_ESCAPE_LEN)
                .find(|&(_, c)| c == esc)
                .map(|(i, _)| i);
            let Some(close) = close else {
                // Unterminated: literal escape character.
                out.push(esc);
                rest = after;
                continue;
            };
            let seq = &after[..close];
            if !self.expand(seq, &mut out) {
                out.push(esc);
                out.push_str(seq);
                out.push(esc);
            }
            rest = &after[close + esc.len_utf8()..];
        }
        out.push_str(rest);
        out
    }

    /// Append the expansion of one escape sequence; false when it is to be kept as is.
    fn expand(&self, seq: &str, out: &mut String) -> bool {
        match seq {
            "F" => out.push(self.field),
            "S" => out.push(self.component),
            "T" => out.push(self.subcomponent),
            "R" => out.push(self.repetition),
            "E" => out.push(self.escape),
            "P" => match self.truncation {
                Some(t) => out.push(t),
                None => return false,
            },
            "H" | "N" => {}
            ".br" => out.push('\n'),
            _ if seq.starts_with(".sp") => {
                let n = seq[3..].trim().parse::<usize>().unwrap_or(1).clamp(1, 10);
                out.extend(std::iter::repeat_n('\n', n));
            }
            _ if [".in", ".ti", ".sk", ".ce", ".fi", ".nf"]
                .iter()
                .any(|p| seq.starts_with(p)) =>
            {
                // A centred line still starts on a new line.
                if seq.starts_with(".ce") {
                    out.push('\n');
                }
            }
            _ if seq.len() > 1 && (seq.starts_with('C') || seq.starts_with('M')) => {
                if !seq[1..].chars().all(|c| c.is_ascii_hexdigit()) {
                    return false;
                }
            }
            _ if seq.len() > 1 && seq.starts_with('X') => {
                let hex = &seq[1..];
                if !hex.len().is_multiple_of(2) || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                    return false;
                }
                let bytes: Option<Vec<u8>> = (0..hex.len())
                    .step_by(2)
                    .map(|i| {
                        hex.get(i..i + 2)
                            .and_then(|h| u8::from_str_radix(h, 16).ok())
                    })
                    .collect();
                match bytes.and_then(|b| String::from_utf8(b).ok()) {
                    Some(s) => out.push_str(&s),
                    None => return false,
                }
            }
            _ => return false,
        }
        true
    }

    /// Escape text for use as one value (field, component or subcomponent content).
    /// Line breaks become `\.br\`; other control characters are dropped.
    pub fn escape(&self, text: &str) -> String {
        let esc = self.escape;
        let mut out = String::with_capacity(text.len() + 8);
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            let code = if c == esc {
                Some('E')
            } else if c == self.field {
                Some('F')
            } else if c == self.component {
                Some('S')
            } else if c == self.subcomponent {
                Some('T')
            } else if c == self.repetition {
                Some('R')
            } else if Some(c) == self.truncation {
                Some('P')
            } else {
                None
            };
            if let Some(code) = code {
                out.push(esc);
                out.push(code);
                out.push(esc);
            } else if c == '\r' || c == '\n' {
                if c == '\r' && chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push(esc);
                out.push_str(".br");
                out.push(esc);
            } else if !c.is_control() || c == '\t' {
                out.push(c);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_delimiter_escapes_after_multibyte_text() {
        let d = Delimiters::default();
        // The case that makes hl7-parser 0.3 panic.
        assert_eq!(d.unescape(r"山田\S\太郎"), "山田^太郎");
        assert_eq!(d.unescape(r"a\F\b\S\c\T\d\R\e\E\f"), "a|b^c&d~e\\f");
    }

    #[test]
    fn formatting_and_hex() {
        let d = Delimiters::default();
        assert_eq!(d.unescape(r"所見1\.br\所見2"), "所見1\n所見2");
        assert_eq!(d.unescape(r"a\.sp 2\b"), "a\n\nb");
        assert_eq!(d.unescape(r"\H\bold\N\"), "bold");
        assert_eq!(d.unescape(r"x\X414243\y"), "xABCy");
        assert_eq!(d.unescape(r"x\XE5B1B1\y"), "x山y");
        // Not UTF-8: kept verbatim rather than guessed.
        assert_eq!(d.unescape(r"x\X8E\y"), r"x\X8E\y");
        assert_eq!(d.unescape(r"\C2842\漢字\C2842\"), "漢字");
    }

    #[test]
    fn unknown_and_unterminated_escapes_are_literal() {
        let d = Delimiters::default();
        assert_eq!(d.unescape(r"\Zcustom\"), r"\Zcustom\");
        assert_eq!(d.unescape(r"C:\temp"), r"C:\temp");
        assert_eq!(d.unescape(r"trailing\"), r"trailing\");
        assert_eq!(d.unescape(r"\\"), r"\\");
        assert_eq!(d.unescape(r"\P\"), r"\P\");
    }

    #[test]
    fn escape_round_trips() {
        let d = Delimiters {
            truncation: Some('#'),
            ..Delimiters::default()
        };
        let text = "a|b^c&d~e\\f#g 山田";
        let escaped = d.escape(text);
        assert_eq!(escaped, r"a\F\b\S\c\T\d\R\e\E\f\P\g 山田");
        assert_eq!(d.unescape(&escaped), text);
        assert_eq!(d.escape("l1\r\nl2\nl3"), r"l1\.br\l2\.br\l3");
    }

    #[test]
    fn non_default_delimiters() {
        let d = Delimiters {
            field: '!',
            component: '@',
            repetition: '%',
            escape: '$',
            subcomponent: '*',
            truncation: None,
        };
        assert_eq!(d.unescape("a$F$b$S$c$E$"), "a!b@c$");
        assert_eq!(d.escape("a!b@c$"), "a$F$b$S$c$E$");
        assert_eq!(d.encoding_characters(), "@%$*");
    }
}
