//! The structure bounds of `[hl7.limits]`, checked in one pass over the normalised text
//! before hl7-parser allocates per field, repetition and component (finding H1: a frame
//! of `~` repeated took hundreds of MiB). The pass allocates nothing but the segment
//! counter.

use super::error::ParseError;
use super::escape::Delimiters;
use crate::config::Hl7Limits;

/// What is being counted, for the error.
#[derive(Clone, Copy)]
enum Part {
    Segments,
    Fields,
    Repetitions,
    Components,
    Subcomponents,
    Elements,
}

impl Part {
    fn what(self) -> &'static str {
        match self {
            Part::Segments => "segments in the message",
            Part::Fields => "fields in a segment",
            Part::Repetitions => "repetitions in a field",
            Part::Components => "components in a repetition",
            Part::Subcomponents => "subcomponents in a component",
            Part::Elements => "delimiters in the message",
        }
    }

    fn limit(self, l: &Hl7Limits) -> usize {
        match self {
            Part::Segments => l.max_segments,
            Part::Fields => l.max_fields,
            Part::Repetitions => l.max_repetitions,
            Part::Components => l.max_components,
            Part::Subcomponents => l.max_subcomponents,
            Part::Elements => l.max_elements,
        }
    }
}

/// Where the scan is: counts inside the current segment, field, repetition, component.
struct Position<'a> {
    text: &'a [u8],
    line: usize,
    segment_start: usize,
    field: usize,
    repetitions: usize,
    components: usize,
    subcomponents: usize,
    elements: usize,
}

impl Position<'_> {
    fn segment_id(&self) -> &str {
        let end = (self.segment_start + 3).min(self.text.len());
        std::str::from_utf8(&self.text[self.segment_start..end]).unwrap_or("?")
    }

    /// Which occurrence of its id the current segment is (counted only on error).
    fn sequence(&self) -> u32 {
        let id = &self.text[self.segment_start..(self.segment_start + 3).min(self.text.len())];
        let before = &self.text[..self.segment_start];
        let earlier = before
            .split(|&b| b == b'\r')
            .filter(|s| !s.is_empty() && s.starts_with(id))
            .count();
        u32::try_from(earlier + 1).unwrap_or(u32::MAX)
    }

    fn exceeded(&self, part: Part, limits: &Hl7Limits) -> ParseError {
        ParseError::TooComplex {
            line: self.line,
            segment: self.segment_id().to_string(),
            sequence: self.sequence(),
            field: self.field,
            what: part.what(),
            limit: part.limit(limits),
        }
    }
}

/// Checks `text` (normalised: segments separated by CR, MSH-2 exactly four characters)
/// against `limits`.
pub(crate) fn check(text: &str, d: &Delimiters, limits: &Hl7Limits) -> Result<(), ParseError> {
    // Delimiters are ASCII (see `read_delimiters`), so they can be matched as bytes:
    // no byte of a multi-byte UTF-8 character is ASCII.
    let byte = |c: char| u8::try_from(c).unwrap_or(0);
    let (field, repetition, component, subcomponent) = (
        byte(d.field),
        byte(d.repetition),
        byte(d.component),
        byte(d.subcomponent),
    );
    let bytes = text.as_bytes();
    let mut at = Position {
        text: bytes,
        line: 1,
        segment_start: 0,
        // MSH-1 and MSH-2 are the delimiters themselves: the scan starts in MSH-2.
        field: 2,
        repetitions: 1,
        components: 1,
        subcomponents: 1,
        elements: 0,
    };
    let start = (3 + 1 + 4).min(bytes.len());
    for (i, &b) in bytes.iter().enumerate().skip(start) {
        let part = if b == b'\r' {
            at.line += 1;
            at.segment_start = i + 1;
            at.field = 0;
            (at.repetitions, at.components, at.subcomponents) = (1, 1, 1);
            if at.line > limits.max_segments {
                return Err(at.exceeded(Part::Segments, limits));
            }
            continue;
        } else if b == field {
            at.field += 1;
            (at.repetitions, at.components, at.subcomponents) = (1, 1, 1);
            (Part::Fields, at.field)
        } else if b == repetition {
            at.repetitions += 1;
            (at.components, at.subcomponents) = (1, 1);
            (Part::Repetitions, at.repetitions)
        } else if b == component {
            at.components += 1;
            at.subcomponents = 1;
            (Part::Components, at.components)
        } else if b == subcomponent {
            at.subcomponents += 1;
            (Part::Subcomponents, at.subcomponents)
        } else {
            continue;
        };
        if part.1 > part.0.limit(limits) {
            return Err(at.exceeded(part.0, limits));
        }
        at.elements += 1;
        if at.elements > limits.max_elements {
            return Err(at.exceeded(Part::Elements, limits));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d() -> Delimiters {
        Delimiters::default()
    }

    fn small() -> Hl7Limits {
        Hl7Limits {
            max_segments: 4,
            max_fields: 5,
            max_repetitions: 3,
            max_components: 3,
            max_subcomponents: 2,
            max_elements: 40,
        }
    }

    fn refused(text: &str) -> (String, u32, usize, &'static str, usize) {
        match check(text, &d(), &small()) {
            Err(ParseError::TooComplex {
                segment,
                sequence,
                field,
                what,
                limit,
                ..
            }) => (segment, sequence, field, what, limit),
            other => panic!("{other:?} for {text:?}"),
        }
    }

    #[test]
    fn a_message_within_the_limits_passes() {
        let ok = "MSH|^~\\&|A|B\rPID|1||P1^^H~P2^^H||山田^太郎\rOBR|1|a&b^c";
        assert_eq!(check(ok, &d(), &small()), Ok(()));
        // MSH-2's own characters are not structure.
        assert_eq!(check("MSH|^~\\&", &d(), &small()), Ok(()));
    }

    #[test]
    fn each_bound_is_named_with_its_place() {
        assert_eq!(
            refused("MSH|^~\\&|A\rPID|1|~~~"),
            ("PID".into(), 1, 2, "repetitions in a field", 3)
        );
        assert_eq!(
            refused("MSH|^~\\&|A\rOBX|1\rOBX|2|a^b^c^d"),
            ("OBX".into(), 2, 2, "components in a repetition", 3)
        );
        assert_eq!(
            refused("MSH|^~\\&|A\rPID|a&b&c"),
            ("PID".into(), 1, 1, "subcomponents in a component", 2)
        );
        assert_eq!(
            refused("MSH|^~\\&|A\rPID||||||"),
            ("PID".into(), 1, 6, "fields in a segment", 5)
        );
        assert_eq!(
            refused("MSH|^~\\&|A\rZ1|\rZ2|\rZ3|\rZ4|"),
            ("Z4|".into(), 1, 0, "segments in the message", 4)
        );
        let many = format!("MSH|^~\\&|A{}", "\rPID|a^b~c^d".repeat(3));
        let limits = Hl7Limits {
            max_segments: 100,
            max_elements: 8,
            ..small()
        };
        assert!(matches!(
            check(&many, &d(), &limits),
            Err(ParseError::TooComplex {
                what: "delimiters in the message",
                limit: 8,
                ..
            })
        ));
    }

    #[test]
    fn a_megabyte_of_repetitions_is_refused_at_the_bound() {
        let hostile = format!("MSH|^~\\&|A|B\rOBR|1|||{}", "~".repeat(1 << 20));
        let e = check(&hostile, &d(), &Hl7Limits::default()).unwrap_err();
        assert!(e.to_string().contains("more than 200 repetitions"), "{e}");
    }
}
