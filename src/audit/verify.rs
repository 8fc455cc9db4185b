//! `AuditLog::verify`: one pass over the chain in sequence order.
//!
//! For every row it checks, in this order: the sequence number follows its predecessor's
//! (a gap = deleted entries), the row's content still hashes to its stored hash (else it
//! was changed), and its `prev_hash` is its predecessor's hash (else something was
//! inserted or rewritten). The first row where anything is off is classified and
//! reported; after the walk the head record, the syslog cursors and an optional external
//! anchor catch deletions and insertions at the newest end, which a chain alone cannot see.
//!
//! Classification of a broken link between entries p and r (r's content is fine):
//! - r links to p's predecessor → p was inserted between them;
//! - the entry after r links to p → r was inserted between them;
//! - r is the newest entry → r was inserted (appended by someone else);
//! - otherwise → p was rewritten and its own hash recomputed (r still holds p's old hash).
//!
//! A row whose content no longer hashes to its stored hash was changed — unless it is a
//! copy of its predecessor, the row after it links past it (inserted), or it hashes
//! correctly under a neighbouring sequence number (rows renumbered to hide an insertion
//! or a deletion).

use super::chain::{self, Fields};
use super::{AuditError, EntryRef, Result};
use crate::db::{Conn as Connection, OptionalExtension, Value as ValueRef};
use serde::Serialize;
use std::time::{Duration, Instant};

/// A wall-clock step larger than this (compared with the monotonic clock between two
/// entries of one boot) is reported. NTP slews both clocks alike, so any real difference
/// is a step (or a suspend).
const CLOCK_STEP_TOLERANCE_MS: i64 = 1000;
const MAX_CLOCK_FINDINGS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tamper {
    Changed,
    Deleted,
    Inserted,
}

/// The first entry found changed, deleted or inserted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The entry's sequence number (for deletions: the first missing one).
    pub seq: i64,
    pub tamper: Tamper,
    /// For deletions, how many consecutive entries are missing (0 when unknown).
    pub count: i64,
    /// What was seen, in words, for the auditor.
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockIssue {
    /// Within one boot the wall clock advanced less than the monotonic clock: set back.
    SteppedBack,
    /// Within one boot the wall clock advanced more than the monotonic clock: set forward
    /// (or the machine was suspended).
    SteppedForward,
    /// The first entry of a new boot is older than the entry before it.
    BehindPrevious,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClockFinding {
    /// The entry at which the step is seen.
    pub seq: i64,
    pub issue: ClockIssue,
    /// Size of the step in milliseconds.
    pub by_ms: i64,
}

/// The result of a verification. `finding` is `None` when the chain is intact.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    pub entries: u64,
    pub first_seq: Option<i64>,
    pub last_seq: Option<i64>,
    /// Hash of the newest entry: note it down as an anchor for the next verification.
    pub head_hash: Option<String>,
    pub finding: Option<Finding>,
    /// Wall-clock steps seen between entries (first 100).
    pub clock: Vec<ClockFinding>,
    /// How many clock steps in all (may exceed `clock.len()`).
    pub clock_steps: u64,
    /// Whether the kernel reports the system clock synchronised now (`None`: unknown).
    pub clock_synchronised: Option<bool>,
    /// Observations that are not tampering by themselves (e.g. dropped triggers).
    pub notes: Vec<String>,
    #[serde(serialize_with = "ser_ms")]
    pub elapsed: Duration,
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

impl Verification {
    pub fn intact(&self) -> bool {
        self.finding.is_none()
    }
}

/// What is kept of the previous rows while walking.
struct Prev {
    seq: i64,
    /// Stored hash, decoded; `None` if it was not even hex.
    hash: Option<[u8; 32]>,
    at_ms: i64,
    mono_ns: i64,
    boot_id: String,
}

pub(super) fn run(conn: &Connection, anchor: Option<&EntryRef>) -> Result<Verification> {
    let started = Instant::now();
    let mut v = Verification {
        entries: 0,
        first_seq: None,
        last_seq: None,
        head_hash: None,
        finding: None,
        clock: Vec::new(),
        clock_steps: 0,
        clock_synchronised: chain::clock_synchronised(),
        notes: Vec::new(),
        elapsed: Duration::ZERO,
    };
    let max_seq: Option<i64> =
        conn.query_row("SELECT MAX(seq) FROM audit_log", [], |r| r.get(0))?;
    let mut p: Option<Prev> = None;
    // The hash of the entry before p (to recognise an entry inserted between two others).
    let mut pp_hash: Option<[u8; 32]> = None;
    let mut failure: Option<AuditError> = None;
    conn.query_each(
        "SELECT seq, at_ms, at, boot_id, mono_ns, actor, kind, study_uid, accession, detail, \
         prev_hash, hash FROM audit_log ORDER BY seq",
        [],
        |row| {
            let seq: i64 = row.get(0)?;
            v.entries += 1;
            v.first_seq.get_or_insert(seq);
            v.last_seq = Some(seq);
            let expected = p.as_ref().map_or(1, |p| p.seq + 1);
            let expected_prev = match &p {
                None => Some(chain::GENESIS),
                Some(p) => p.hash,
            };
            if seq < expected {
                v.finding = Some(Finding {
                    seq,
                    tamper: Tamper::Inserted,
                    count: 0,
                    message: format!(
                        "entry {seq} was inserted: sequence numbers start at 1 and only grow"
                    ),
                });
                return Ok(false);
            }
            if seq > expected {
                let count = seq - expected;
                v.finding = Some(Finding {
                    seq: expected,
                    tamper: Tamper::Deleted,
                    count,
                    message: format!(
                        "{} deleted: the chain jumps from entry {} to entry {seq}",
                        range_words(expected, count),
                        expected - 1
                    ),
                });
                return Ok(false);
            }
            let r = match read_fields(row, seq) {
                Ok(r) => r,
                Err(why) => {
                    v.finding = Some(changed(seq, &why));
                    return Ok(false);
                }
            };
            let stored_hash = chain::from_hex(r.hash);
            let stored_prev = chain::from_hex(r.prev);
            let content_ok = match (stored_prev, stored_hash) {
                (Some(prev), Some(hash)) => chain::entry_hash(&prev, &r.fields) == hash,
                _ => false,
            };
            if !content_ok {
                let p_hash = p.as_ref().and_then(|p| p.hash);
                let next_links_past = match links_past(conn, seq, p_hash) {
                    Ok(found) => found,
                    Err(e) => {
                        failure = Some(e);
                        return Ok(false);
                    }
                };
                v.finding = Some(classify_content_mismatch(
                    &r,
                    stored_prev,
                    stored_hash,
                    p_hash,
                    pp_hash,
                    next_links_past,
                ));
                return Ok(false);
            }
            if stored_prev != expected_prev {
                let p_hash = p.as_ref().and_then(|p| p.hash);
                let finding = match &p {
                    None => Finding {
                        seq,
                        tamper: Tamper::Inserted,
                        count: 0,
                        message: format!(
                            "entry {seq} was inserted or rewritten: as the first entry its prev_hash must be all zeros"
                        ),
                    },
                    Some(p) if stored_prev.is_some() && stored_prev == pp_hash => Finding {
                        seq: p.seq,
                        tamper: Tamper::Inserted,
                        count: 0,
                        message: format!(
                            "entry {} was inserted: entry {seq} links past it to entry {}",
                            p.seq,
                            p.seq - 1
                        ),
                    },
                    Some(p) => match links_past(conn, seq, p_hash) {
                        Err(e) => {
                            failure = Some(e);
                            return Ok(false);
                        }
                        Ok(found) => match found {
                        Some(next) => inserted_between(seq, p.seq, next),
                        None if Some(seq) == max_seq => Finding {
                            seq,
                            tamper: Tamper::Inserted,
                            count: 0,
                            message: format!(
                                "entry {seq} was inserted: its prev_hash does not match entry {} \
                                 (or entry {} was rewritten together with its hash)",
                                p.seq, p.seq
                            ),
                        },
                        None => Finding {
                            seq: p.seq,
                            tamper: Tamper::Changed,
                            count: 0,
                            message: format!(
                                "entry {} was changed and its hash recomputed: entry {seq} still \
                                 holds its original hash",
                                p.seq
                            ),
                        },
                        },
                    },
                };
                v.finding = Some(finding);
                return Ok(false);
            }
            if let Some(p) = &p {
                clock_check(&mut v, p, &r.fields);
            }
            pp_hash = p.as_ref().and_then(|p| p.hash);
            match &mut p {
                Some(prev) => {
                    prev.seq = seq;
                    prev.hash = stored_hash;
                    prev.at_ms = r.fields.at_ms;
                    prev.mono_ns = r.fields.mono_ns;
                    if prev.boot_id != r.fields.boot_id {
                        prev.boot_id = r.fields.boot_id.to_string();
                    }
                }
                None => {
                    p = Some(Prev {
                        seq,
                        hash: stored_hash,
                        at_ms: r.fields.at_ms,
                        mono_ns: r.fields.mono_ns,
                        boot_id: r.fields.boot_id.to_string(),
                    })
                }
            }
            Ok(true)
        },
    )?;
    if let Some(e) = failure {
        return Err(e);
    }
    let last = p.as_ref().map(|p| (p.seq, p.hash));
    v.head_hash = last.and_then(|(_, h)| h).map(|h| chain::to_hex(&h));
    if v.finding.is_none() {
        v.finding = check_ends(conn, last, anchor)?;
    }
    if v.entries == 0 {
        v.notes.push(
            "the trail is empty: if readgate has run with this database, its entries were \
             deleted (check with --anchor)"
                .into(),
        );
    }
    for t in ["audit_log_no_update", "audit_log_no_delete"] {
        let present: bool = conn.query_row(
            match conn.backend() {
                crate::db::Backend::Sqlite => {
                    "SELECT EXISTS(SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND name = ?1)"
                }
                crate::db::Backend::Postgres => {
                    "SELECT EXISTS(SELECT 1 FROM pg_trigger WHERE tgname = ?1 AND NOT tgisinternal)"
                }
            },
            [t],
            |r| r.get(0),
        )?;
        if !present {
            v.notes.push(format!(
                "trigger {t} is missing: someone removed the append-only guard \
                 (readgate re-creates it when it next opens the database)"
            ));
        }
    }
    v.elapsed = started.elapsed();
    Ok(v)
}

struct RowFields<'a> {
    fields: Fields<'a>,
    prev: &'a str,
    hash: &'a str,
}

/// The error is text because it is not an error of the program but a finding about the
/// row (kept verbatim in the verification report).
fn read_fields<'a>(
    row: &'a crate::db::Row,
    seq: i64,
) -> std::result::Result<RowFields<'a>, String> {
    // Read by reference and by type: an attacker may have stored a value of another type,
    // which is a finding, not a reason to abort verification.
    let int = |i: usize, name: &str| match row.get_ref(i) {
        Ok(ValueRef::Integer(n)) => Ok(*n),
        Ok(other) => Err(format!("column {name} holds {:?}", other.kind())),
        Err(e) => Err(e.to_string()),
    };
    let text = |i: usize, name: &str| match row.get_ref(i) {
        Ok(ValueRef::Text(t)) => Ok(t.as_str()),
        Ok(other) => Err(format!("column {name} holds {:?}", other.kind())),
        Err(e) => Err(e.to_string()),
    };
    let opt_text = |i: usize, name: &str| match row.get_ref(i) {
        Ok(ValueRef::Null) => Ok(None),
        Ok(ValueRef::Text(t)) => Ok(Some(t.as_str())),
        Ok(other) => Err(format!("column {name} holds {:?}", other.kind())),
        Err(e) => Err(e.to_string()),
    };
    Ok(RowFields {
        fields: Fields {
            seq,
            at_ms: int(1, "at_ms")?,
            at: text(2, "at")?,
            boot_id: text(3, "boot_id")?,
            mono_ns: int(4, "mono_ns")?,
            actor: text(5, "actor")?,
            kind: text(6, "kind")?,
            study_uid: opt_text(7, "study_uid")?,
            accession: opt_text(8, "accession")?,
            detail: text(9, "detail")?,
        },
        prev: text(10, "prev_hash")?,
        hash: text(11, "hash")?,
    })
}

fn changed(seq: i64, why: &str) -> Finding {
    Finding {
        seq,
        tamper: Tamper::Changed,
        count: 0,
        message: format!("entry {seq} was changed: {why}"),
    }
}

/// The sequence number of the row after `seq`, if that row's prev_hash is `p_hash`: it
/// links past row `seq` to the row before it, so row `seq` is not part of the original
/// chain.
fn links_past(conn: &Connection, seq: i64, p_hash: Option<[u8; 32]>) -> Result<Option<i64>> {
    let Some(p_hash) = p_hash else {
        return Ok(None);
    };
    let next: Option<(i64, String)> = conn
        .query_row(
            "SELECT seq, prev_hash FROM audit_log WHERE seq > ?1 ORDER BY seq LIMIT 1",
            [seq],
            |r| Ok((r.get(0)?, r.get::<_, String>(1).unwrap_or_default())),
        )
        .optional()?;
    Ok(next.and_then(|(n, prev)| (chain::from_hex(&prev) == Some(p_hash)).then_some(n)))
}

fn inserted_between(seq: i64, p_seq: i64, next: i64) -> Finding {
    Finding {
        seq,
        tamper: Tamper::Inserted,
        count: 0,
        message: format!(
            "entry {seq} was inserted: the entry now numbered {next} links past it to entry {p_seq}"
        ),
    }
}

/// A row whose content does not hash to its stored hash. Usually it was edited; but if it
/// is a copy of its predecessor, if the next row links past it, or if it hashes correctly
/// under a neighbouring sequence number (rows renumbered to hide an insertion or a
/// deletion), that is what is reported.
fn classify_content_mismatch(
    r: &RowFields<'_>,
    stored_prev: Option<[u8; 32]>,
    stored_hash: Option<[u8; 32]>,
    p_hash: Option<[u8; 32]>,
    pp_hash: Option<[u8; 32]>,
    next_links_past: Option<i64>,
) -> Finding {
    let seq = r.fields.seq;
    let (Some(prev), Some(hash)) = (stored_prev, stored_hash) else {
        return changed(seq, "its prev_hash or hash is not a SHA-256 hex value");
    };
    if Some(hash) == p_hash {
        return Finding {
            seq,
            tamper: Tamper::Inserted,
            count: 0,
            message: format!(
                "entry {seq} was inserted: it is a copy of entry {}",
                seq - 1
            ),
        };
    }
    let hashes_as = |s: i64| {
        let mut f = r.fields;
        f.seq = s;
        chain::entry_hash(&prev, &f) == hash
    };
    if seq > 1 && hashes_as(seq - 1) {
        let message = if Some(prev) == pp_hash {
            format!(
                "entry {} was inserted: the original entry {} was renumbered to {seq} to make room",
                seq - 1,
                seq - 1
            )
        } else {
            format!(
                "entries were renumbered: entry {seq} was originally entry {}; something \
                 was inserted at or before {}",
                seq - 1,
                seq - 1
            )
        };
        return Finding {
            seq: seq - 1,
            tamper: Tamper::Inserted,
            count: 0,
            message,
        };
    }
    if let Some(next) = next_links_past {
        return inserted_between(seq, seq - 1, next);
    }
    for d in 1..=16 {
        if hashes_as(seq + d) {
            return Finding {
                seq,
                tamper: Tamper::Deleted,
                count: d,
                message: format!(
                    "{} deleted and later entries renumbered to hide the gap: entry {seq} \
                     was originally entry {}",
                    range_words(seq, d),
                    seq + d
                ),
            };
        }
    }
    changed(seq, "its content no longer matches its hash")
}

fn range_words(first: i64, count: i64) -> String {
    if count == 1 {
        format!("entry {first} was")
    } else {
        format!("entries {first}–{} were", first + count - 1)
    }
}

fn clock_check(v: &mut Verification, p: &Prev, f: &Fields<'_>) {
    let issue = if p.boot_id == f.boot_id {
        let wall = f.at_ms - p.at_ms;
        let mono = (f.mono_ns - p.mono_ns) / 1_000_000;
        let skew = wall - mono;
        if skew < -CLOCK_STEP_TOLERANCE_MS {
            Some((ClockIssue::SteppedBack, -skew))
        } else if skew > CLOCK_STEP_TOLERANCE_MS {
            Some((ClockIssue::SteppedForward, skew))
        } else {
            None
        }
    } else if f.at_ms < p.at_ms {
        Some((ClockIssue::BehindPrevious, p.at_ms - f.at_ms))
    } else {
        None
    };
    if let Some((issue, by_ms)) = issue {
        v.clock_steps += 1;
        if v.clock.len() < MAX_CLOCK_FINDINGS {
            v.clock.push(ClockFinding {
                seq: f.seq,
                issue,
                by_ms,
            });
        }
    }
}

/// The newest end: the head record, the syslog cursors and an external anchor.
fn check_ends(
    conn: &Connection,
    last: Option<(i64, Option<[u8; 32]>)>,
    anchor: Option<&EntryRef>,
) -> Result<Option<Finding>> {
    let last_seq = last.map_or(0, |l| l.0);
    let head: Option<(i64, String)> = conn
        .query_row("SELECT seq, hash FROM audit_head WHERE id = 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    match head {
        None if last_seq > 0 => {
            return Ok(Some(Finding {
                seq: last_seq + 1,
                tamper: Tamper::Deleted,
                count: 0,
                message: "the head record (table audit_head) was deleted; the newest entries \
                          may have been deleted with it"
                    .into(),
            }))
        }
        None => {}
        Some((head_seq, _)) if head_seq > last_seq => {
            let count = head_seq - last_seq;
            return Ok(Some(Finding {
                seq: last_seq + 1,
                tamper: Tamper::Deleted,
                count,
                message: format!(
                    "{} deleted: readgate wrote up to entry {head_seq}, the newest left is {}",
                    range_words(last_seq + 1, count),
                    if last_seq == 0 {
                        "none".to_string()
                    } else {
                        last_seq.to_string()
                    }
                ),
            }));
        }
        Some((head_seq, _)) if head_seq < last_seq => {
            return Ok(Some(Finding {
                seq: head_seq + 1,
                tamper: Tamper::Inserted,
                count: last_seq - head_seq,
                message: format!(
                    "entry {} was inserted: readgate wrote up to entry {head_seq}, but entries up to {last_seq} exist",
                    head_seq + 1
                ),
            }));
        }
        Some((head_seq, head_hash)) => {
            let last_hash = last.and_then(|l| l.1);
            if head_seq > 0 && chain::from_hex(&head_hash) != last_hash {
                return Ok(Some(Finding {
                    seq: head_seq,
                    tamper: Tamper::Changed,
                    count: 0,
                    message: format!(
                        "entry {head_seq} was changed and its hash recomputed: readgate recorded another hash for it"
                    ),
                }));
            }
        }
    }
    let mut stmt = conn.prepare("SELECT target, seq FROM audit_cursor ORDER BY seq DESC")?;
    let cursors = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?
        .collect::<std::result::Result<Vec<_>, _>>()?;
    if let Some((target, seq)) = cursors.first() {
        if *seq > last_seq {
            return Ok(Some(Finding {
                seq: last_seq + 1,
                tamper: Tamper::Deleted,
                count: seq - last_seq,
                message: format!(
                    "{} deleted: they had already been sent to {target} (and the head record was adjusted)",
                    range_words(last_seq + 1, seq - last_seq)
                ),
            }));
        }
    }
    if let Some(a) = anchor {
        let found: Option<String> = conn
            .query_row("SELECT hash FROM audit_log WHERE seq = ?1", [a.seq], |r| {
                r.get(0)
            })
            .optional()?;
        match found {
            None => {
                return Ok(Some(Finding {
                    seq: a.seq,
                    tamper: Tamper::Deleted,
                    count: 0,
                    message: format!("entry {} (the anchor) was deleted", a.seq),
                }))
            }
            Some(h) if !h.eq_ignore_ascii_case(a.hash.trim()) => {
                return Ok(Some(Finding {
                    seq: a.seq,
                    tamper: Tamper::Changed,
                    count: 0,
                    message: format!(
                    "entry {} no longer has the anchor's hash: the chain up to it was rewritten",
                    a.seq
                ),
                }))
            }
            Some(_) => {}
        }
    }
    Ok(None)
}
