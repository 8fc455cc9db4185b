//! The store's unit tests: a study's life from first instance to forwarded.

use super::*;
use crate::model::StudyState;

/// The test twice: `NAME::sqlite` on a SQLite file in a temporary directory,
/// `NAME::postgres` on a PostgreSQL server of its own (`pgtest`). The store's behaviour
/// is the same on both, so its tests are.
macro_rules! on_both_backends {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;

            #[test]
            fn sqlite() {
                let dir = tempfile::tempdir().unwrap();
                let store = Store::open(&dir.path().join("db")).unwrap();
                #[allow(clippy::redundant_closure_call)]
                ($body)(store)
            }

            #[test]
            fn postgres() {
                let pg = crate::pgtest::TempPostgres::start().unwrap();
                let store = Store::connect(&pg.url(), 4).unwrap();
                #[allow(clippy::redundant_closure_call)]
                ($body)(store)
            }
        }
    };
    // Two stores on one database: two nodes.
    ($name:ident, two $body:expr) => {
        mod $name {
            use super::*;

            #[test]
            fn sqlite() {
                let dir = tempfile::tempdir().unwrap();
                let a = Store::open(&dir.path().join("db")).unwrap();
                let b = Store::open(&dir.path().join("db")).unwrap();
                #[allow(clippy::redundant_closure_call)]
                ($body)(a, b)
            }

            #[test]
            fn postgres() {
                let pg = crate::pgtest::TempPostgres::start().unwrap();
                let a = Store::connect(&pg.url(), 4).unwrap();
                let b = Store::connect(&pg.url(), 4).unwrap();
                #[allow(clippy::redundant_closure_call)]
                ($body)(a, b)
            }
        }
    };
}

/// The lease the single-node tests forward under.
const LEASE: Lease = Lease {
    node: "n1",
    ms: 60_000,
};

fn queue(store: &Store, snap: &StudySnapshot, now: i64) -> bool {
    let d = DecisionRecord {
        forward: true,
        destination: Some("rc1".into()),
        facility: Some("RC1".into()),
        verdict: crate::model::Disposition::Pass,
        ..Default::default()
    };
    store.record_decision(snap, &d, now).unwrap().is_some()
}

fn instance(sop: &str, study: &str, at: i64) -> NewInstance {
    NewInstance {
        sop_uid: sop.into(),
        study_uid: study.into(),
        series_uid: Some("1.9".into()),
        sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
        transfer_syntax: "1.2.840.10008.1.2.1".into(),
        modality: Some("CT".into()),
        accession: Some("A1".into()),
        patient_id: Some("P1".into()),
        path: format!("objects/{sop}.dcm"),
        size: 100,
        calling_ae: "CT01".into(),
        received_at: at,
        context: "{}".into(),
    }
}

on_both_backends!(study_lifecycle_and_reopen, |store: Store| {
    assert_eq!(
        store.index_instance(&instance("1", "S", 10), true).unwrap(),
        Indexed::New
    );
    store.index_instance(&instance("2", "S", 20), true).unwrap();
    assert_eq!(
        store.studies_stable_since(15).unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        store.studies_stable_since(20).unwrap(),
        vec!["S".to_string()]
    );
    let snap = store.snapshot("S").unwrap();
    assert_eq!(snap.instance_count, 2);
    assert!(queue(&store, &snap, 30));
    // a second decision on the same snapshot is refused: the study is no longer receiving
    assert!(!queue(&store, &snap, 30));
    let q = store.queued_for("rc1", &LEASE, 30, 10).unwrap();
    assert_eq!(q.len(), 2);
    assert_eq!(
        store.mark_forwarded(&q[0], 0, &LEASE, 40).unwrap(),
        Delivery::Recorded
    );
    // a late instance re-opens the study while one is still queued
    store.index_instance(&instance("3", "S", 45), true).unwrap();
    assert_eq!(
        store.mark_forwarded(&q[1], 0, &LEASE, 50).unwrap(),
        Delivery::Recorded
    );
    let rows = store.list_studies(Some(StudyState::Receiving), 10).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].instances_forwarded, 2);
    let snap = store.snapshot("S").unwrap();
    assert!(queue(&store, &snap, 60));
    let q = store.queued_for("rc1", &LEASE, 60, 10).unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!(
        store.mark_forwarded(&q[0], 0, &LEASE, 70).unwrap(),
        Delivery::StudyForwarded
    );
    assert_eq!(
        store
            .list_studies(Some(StudyState::Forwarded), 10)
            .unwrap()
            .len(),
        1
    );
});

on_both_backends!(stale_snapshot_is_not_decided, |store: Store| {
    store.index_instance(&instance("1", "S", 10), true).unwrap();
    let snap = store.snapshot("S").unwrap();
    store.index_instance(&instance("2", "S", 11), true).unwrap();
    assert!(!queue(&store, &snap, 12));
    assert!(store
        .record_decision(&snap, &DecisionRecord::default(), 12)
        .unwrap()
        .is_none());
});

on_both_backends!(duplicates_follow_policy, |store: Store| {
    store.index_instance(&instance("1", "S", 10), true).unwrap();
    assert_eq!(
        store
            .index_instance(&instance("1", "S", 11), false)
            .unwrap(),
        Indexed::KeptFirst
    );
    let mut again = instance("1", "S", 12);
    again.path = "objects/new.dcm".into();
    assert_eq!(
        store.index_instance(&again, true).unwrap(),
        Indexed::Replaced {
            old_path: "objects/1.dcm".into()
        }
    );
    let rows = store.list_studies(None, 10).unwrap();
    assert_eq!(rows[0].instance_count, 1);
    assert_eq!(rows[0].bytes, 100);
});

on_both_backends!(retries_back_off_then_fail, |store: Store| {
    store.index_instance(&instance("1", "S", 10), true).unwrap();
    let snap = store.snapshot("S").unwrap();
    queue(&store, &snap, 20);
    let backoff = |n: u32| 1000 * n as i64;
    let failed = store
        .record_attempt_failure(&["S".into()], "refused", 30, &backoff, 2)
        .unwrap();
    assert!(failed.is_empty());
    assert!(store.queued_for("rc1", &LEASE, 30, 10).unwrap().is_empty());
    assert_eq!(store.next_attempt_for("rc1").unwrap(), Some(1030));
    let failed = store
        .record_attempt_failure(&["S".into()], "refused", 2000, &backoff, 2)
        .unwrap();
    assert_eq!(failed, vec!["S".to_string()]);
    assert!(store
        .queued_for("rc1", &LEASE, 99_999, 10)
        .unwrap()
        .is_empty());
    assert!(store.retry_study("S", 3000).unwrap());
    assert_eq!(store.queued_for("rc1", &LEASE, 3000, 10).unwrap().len(), 1);
});

/// The SQL of the store names states by their text (a parameter would keep SQLite from
/// using the partial index on queued instances): every state word written in a query
/// must be the text form of a `StudyState` or `InstanceState`; likewise a stream's state
/// (`StreamState`) and the timeline's event kinds (`EventKind`) that queries select.
#[test]
fn state_words_in_sql_are_known_states() {
    use crate::model::{EventKind, InstanceState, StreamState};
    type Known = fn(&str) -> bool;
    let columns: [(&str, Known); 3] = [
        ("state ", |w| {
            w.parse::<StudyState>().is_ok() || w.parse::<InstanceState>().is_ok()
        }),
        ("stream ", |w| w.parse::<StreamState>().is_ok()),
        ("kind ", |w| w.parse::<EventKind>().is_ok()),
    ];
    let sources = [
        include_str!("hl7.rs"),
        include_str!("instances.rs"),
        include_str!("ledger.rs"),
        include_str!("queue.rs"),
        include_str!("read.rs"),
        include_str!("schema.rs"),
        include_str!("studies.rs"),
    ];
    let mut seen = [0; 3];
    for src in sources {
        for (n, (column, known)) in columns.iter().enumerate() {
            for (i, _) in src.match_indices(column) {
                let rest = &src[i + column.len()..];
                let Some(rest) = ["= ", "!= ", "IN ("]
                    .iter()
                    .find_map(|op| rest.strip_prefix(op))
                else {
                    continue;
                };
                let list = rest.split(')').next().unwrap_or("");
                for word in list.split(", ") {
                    let Some(word) = word.strip_prefix('\'') else {
                        break;
                    };
                    let word = word.split('\'').next().unwrap_or("");
                    assert!(known(word), "unknown {column}{word:?} in the store's SQL");
                    seen[n] += 1;
                }
            }
        }
    }
    assert!(
        seen[0] > 30 && seen[1] > 8 && seen[2] >= 8,
        "the scan found the words ({seen:?})"
    );
}

on_both_backends!(
    a_prior_is_at_a_destination_once_sent_or_forwarded_there,
    |store: Store| {
        // What the PACS answered about P1: one study, issuer kept.
        let found = crate::model::PacsStudy {
            study_uid: "PRIOR".into(),
            accession: Some("A0".into()),
            date: Some("20250101".into()),
            time: None,
            modalities: vec!["CT".into()],
            description: None,
            instances: Some(2),
            issuer: Some("HOSP".into()),
            body_parts: vec!["CHEST".into()],
        };
        store
            .record_pacs_lookup("P1", "pacs1", 5, Ok(&[(found, 0)]))
            .unwrap();
        let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            store
                .pacs_holding("PRIOR", &ids(&["pacs0", "pacs1"]))
                .unwrap(),
            ["pacs1"]
        );
        assert!(store
            .pacs_holding("OTHER", &ids(&["pacs1"]))
            .unwrap()
            .is_empty());
        assert_eq!(
            store.pacs_studies(&ids(&["P1"])).unwrap()[0]
                .study
                .issuer
                .as_deref(),
            Some("HOSP")
        );

        assert!(!store.destination_has("rc1", "PRIOR").unwrap());
        let sent = SentPrior {
            destination: "rc1".into(),
            prior_uid: "PRIOR".into(),
            pacs_id: "pacs1".into(),
            for_study_uid: "S".into(),
            instances: 2,
            bytes: 200,
            sent_at: 50,
        };
        store.record_prior_sent(&sent).unwrap();
        assert!(store.destination_has("rc1", "PRIOR").unwrap());
        assert!(!store.destination_has("rc2", "PRIOR").unwrap());
        assert_eq!(store.priors_sent(&ids(&["PRIOR"])).unwrap(), [sent]);

        // A study readgate forwarded to rc1 itself is there too; one only queued is not.
        store.index_instance(&instance("1", "S", 10), true).unwrap();
        let snap = store.snapshot("S").unwrap();
        assert!(queue(&store, &snap, 20));
        assert!(!store.destination_has("rc1", "S").unwrap());
        let q = store.queued_for("rc1", &LEASE, 30, 10).unwrap();
        assert_eq!(
            store.mark_forwarded(&q[0], 0, &LEASE, 40).unwrap(),
            Delivery::StudyForwarded
        );
        assert!(store.destination_has("rc1", "S").unwrap());
        assert!(!store.destination_has("rc2", "S").unwrap());
    }
);

on_both_backends!(
    the_earliest_open_study_date_counts_only_studies_in_progress,
    |store: Store| {
        let dated = |sop: &str, study: &str, date: &str| NewInstance {
            context: format!("{{\"0008,0020\": \"{date}\"}}"),
            ..instance(sop, study, 10)
        };
        let p1 = ["P1".to_string()];
        assert_eq!(store.earliest_open_study_date(&p1).unwrap(), None);
        store
            .index_instance(&dated("1", "NEW", "20261101"), true)
            .unwrap();
        store
            .index_instance(&dated("2", "OLD", "20240315"), true)
            .unwrap();
        store
            .index_instance(&dated("3", "BAD", "2024-03"), true)
            .unwrap();
        assert_eq!(
            store.earliest_open_study_date(&p1).unwrap().as_deref(),
            Some("20240315")
        );
        // Once OLD is decided and forwarded, only NEW (still receiving) counts.
        let snap = store.snapshot("OLD").unwrap();
        assert!(queue(&store, &snap, 20));
        let q = store.queued_for("rc1", &LEASE, 30, 10).unwrap();
        assert_eq!(
            store.mark_forwarded(&q[0], 0, &LEASE, 40).unwrap(),
            Delivery::StudyForwarded
        );
        assert_eq!(
            store.earliest_open_study_date(&p1).unwrap().as_deref(),
            Some("20261101")
        );
    }
);

// Received instances from eight associations at once are all indexed, with their
// studies' counts right, in at most one commit each (how many share one depends on
// timing; `group.rs` tests the sharing); one refused inside a shared transaction is
// undone alone.
on_both_backends!(
    received_instances_share_commits_and_fail_alone,
    |store: Store| {
        let store = std::sync::Arc::new(store);
        let before = store.operations();
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for i in 0..40 {
                        let inst = instance(&format!("{t}.{i}"), &format!("S{}", t % 2), i);
                        assert_eq!(
                            store.index_received(inst, true).unwrap().indexed,
                            Indexed::New
                        );
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let commits = store.operations() - before;
        let studies = store.list_studies(None, 10).unwrap();
        let counts: Vec<i64> = studies.iter().map(|s| s.instance_count).collect();
        assert_eq!(counts, vec![160, 160], "{studies:?}");
        assert!(commits <= 320, "at most one commit per instance: {commits}");
        eprintln!("320 instances from 8 threads: {commits} commits");

        let backend = store.conn().backend();
        store
            .conn()
            .execute_batch(match backend {
                crate::db::Backend::Sqlite => {
                    "CREATE TEMP TRIGGER refuse BEFORE INSERT ON instances \
                     WHEN NEW.sop_uid = 'bad' BEGIN SELECT RAISE(ABORT, 'refused'); END;"
                }
                crate::db::Backend::Postgres => {
                    "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS \
                     $$ BEGIN RAISE EXCEPTION 'refused'; END $$; \
                     CREATE TRIGGER refuse BEFORE INSERT ON instances FOR EACH ROW \
                     WHEN (NEW.sop_uid = 'bad') EXECUTE FUNCTION refuse();"
                }
            })
            .unwrap();
        let received = |sop: &str, at, durable: bool| super::Received {
            inst: instance(sop, "S9", at),
            replace: true,
            file: {
                let file = PendingSync::new();
                file.finish(durable);
                file
            },
        };
        let outcomes = store.index_batch(vec![
            received("good1", 1, true),
            received("bad", 2, true),
            received("good2", 3, true),
            received("lost", 4, false),
        ]);
        assert!(
            matches!(&outcomes[0], Ok(o) if o.indexed == Indexed::New),
            "{outcomes:?}"
        );
        assert!(outcomes[1].is_err(), "{outcomes:?}");
        assert!(
            matches!(&outcomes[2], Ok(o) if o.indexed == Indexed::New),
            "{outcomes:?}"
        );
        assert!(
            matches!(&outcomes[3], Err(StoreError::NotDurable)),
            "{outcomes:?}"
        );
        let s9 = store.list_studies(None, 10).unwrap();
        let s9 = s9.iter().find(|s| s.study_uid == "S9").unwrap();
        assert_eq!(
            s9.instance_count, 2,
            "the refused instance and the one whose file was lost left nothing behind"
        );
        let sops: Vec<String> = store
            .instances_of("S9")
            .unwrap()
            .into_iter()
            .map(|i| i.sop_uid)
            .collect();
        assert_eq!(sops, ["good1", "good2"]);

        // A lone instance whose file was not made durable: its transaction is undone.
        let lone = store.index_batch(vec![received("alone", 5, false)]);
        assert!(matches!(&lone[0], Err(StoreError::NotDurable)), "{lone:?}");
        assert_eq!(store.instances_of("S9").unwrap().len(), 2);
    }
);

/// An order for accession `accession` under MSH-10 `control_id`, answered `ack_code`
/// (its ACK bytes name the code and `tag`, to tell copies apart).
fn order_message(accession: &str, control_id: &str, ack_code: &str, tag: &str) -> IncomingMessage {
    let text = format!(
        "MSH|^~\\&|RIS|H|RG|R|20240601||ORM^O01|{control_id}|P|2.5\rPID|||P1\r\
         ORC|NW|PL\rOBR|1|PL{}{accession}\r",
        "|".repeat(16)
    );
    IncomingMessage {
        received_at: 10,
        peer: "127.0.0.1:1".into(),
        sender: "RIS|H".into(),
        control_id: control_id.into(),
        message_type: "ORM^O01".into(),
        charset: None,
        parsed: crate::hl7::message::parse_for(&text, &crate::hl7::Config::default()).ok(),
        raw: text.into_bytes(),
        ack_code: ack_code.into(),
        ack_text: String::new(),
        ack: format!("{ack_code} {tag}").into_bytes(),
    }
}

on_both_backends!(
    repeats_inside_a_batch_and_across_batches_get_the_first_copy_s_ack,
    |store: Store| {
        let acks = |batch: &crate::store::RecordedBatch| -> Vec<(bool, String)> {
            batch
                .messages
                .iter()
                .map(|r| (r.duplicate, String::from_utf8_lossy(&r.ack).into_owned()))
                .collect()
        };
        let first = store
            .record_hl7_batch(&[
                order_message("A1", "M1", "AA", "first"),
                // Sent again on another connection before the first was answered.
                order_message("A1", "M1", "AA", "second"),
                // Refused twice: a refusal had no effect, so neither is a repeat.
                order_message("A2", "M2", "AE", "first"),
                order_message("A2", "M2", "AE", "second"),
                // No MSH-10 (refused, not parsed): never a repeat.
                order_message("A3", "", "AR", "first"),
                order_message("A3", "", "AR", "second"),
                // The same MSH-10 with other content is not a retransmission.
                order_message("A4", "M1", "AA", "other"),
            ])
            .unwrap();
        let yes = |ack: &str| (true, ack.to_string());
        let no = |ack: &str| (false, ack.to_string());
        assert_eq!(
            acks(&first),
            vec![
                no("AA first"),
                yes("AA first"),
                no("AE first"),
                no("AE second"),
                no("AR first"),
                no("AR second"),
                no("AA other"),
            ]
        );
        // No study is held or receiving: nothing to reconsider.
        assert!(!first.studies_open);
        store.index_instance(&instance("1", "S", 10), true).unwrap();
        let again = store
            .record_hl7_batch(&[
                order_message("A1", "M1", "AA", "third"),
                order_message("A5", "M5", "AA", "first"),
            ])
            .unwrap();
        assert_eq!(acks(&again), vec![yes("AA first"), no("AA first")]);
        assert!(again.studies_open, "study S is receiving");
        // A batch of repeats only records nothing, but looks for open studies with the
        // repeat's keys: readgate may have stopped after the first copy's commit and
        // before the studies it concerns were sent back to the decision stage.
        let repeats = store
            .record_hl7_batch(&[order_message("A5", "M5", "AA", "again")])
            .unwrap();
        assert_eq!(acks(&repeats), vec![yes("AA first")]);
        assert!(repeats.studies_open);
        assert_eq!(repeats.messages[0].keys.accessions, ["A5"]);
        // Recorded once each: the orders of A1, A2 (twice: refusals are kept), A4, A5.
        let orders: Vec<String> = store
            .conn()
            .query_map("SELECT accession FROM orders ORDER BY id", [], |r| r.get(0))
            .unwrap();
        assert_eq!(orders, ["A1", "A2", "A2", "A4", "A5"]);
    }
);

on_both_backends!(
    a_copy_recorded_by_another_node_while_the_first_is_uncommitted_is_a_repeat,
    two | a: Store, b: Store | {
        let a = std::sync::Arc::new(a);
        let (started, go) = std::sync::mpsc::channel();
        let first = {
            let a = a.clone();
            std::thread::spawn(move || {
                let mut conn = a.hl7_conn();
                let tx = conn.transaction().unwrap();
                let recorded =
                    super::super::hl7::record_all(&tx, &[order_message("A1", "M1", "AA", "a")])
                        .unwrap();
                // Recorded, not yet committed: the other node's copy arrives now.
                started.send(()).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(500));
                tx.commit().unwrap();
                recorded[0].duplicate
            })
        };
        go.recv().unwrap();
        let copy = b
            .record_hl7_batch(&[order_message("A1", "M1", "AA", "b")])
            .unwrap();
        assert!(!first.join().unwrap());
        assert!(
            copy.messages[0].duplicate,
            "the copy waited for the first to commit and found it"
        );
        assert_eq!(copy.messages[0].ack, b"AA a");
        let orders: i64 = b
            .conn()
            .query_row("SELECT COUNT(*) FROM orders", [], |r| r.get(0))
            .unwrap();
        assert_eq!(orders, 1, "applied once");
    }
);

on_both_backends!(
    login_attempts_are_counted_for_every_node_together,
    two | a: Store, b: Store | {
        use crate::store::LoginKey;
        let a = std::sync::Arc::new(a);
        let b = std::sync::Arc::new(b);
        let key = |k| LoginKey { key: k, max: 5 };
        let lock = 300_000;
        // Twelve attempts on one user at once, half at each node: five let through.
        let threads: Vec<_> = (0..12)
            .map(|i| {
                let store = if i % 2 == 0 { a.clone() } else { b.clone() };
                std::thread::spawn(move || {
                    store
                        .reserve_login(&[key("user:dr")], 1_000, lock)
                        .unwrap()
                })
            })
            .collect();
        let answers: Vec<Option<u64>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(answers.iter().filter(|a| a.is_none()).count(), 5, "{answers:?}");
        assert!(answers.iter().flatten().all(|secs| *secs == 299 || *secs == 300));
        // Locked on both nodes, for the rest of the five minutes; then counted anew.
        assert_eq!(b.reserve_login(&[key("user:dr")], 200_000, lock).unwrap(), Some(101));
        assert_eq!(a.reserve_login(&[key("user:dr")], 301_000, lock).unwrap(), None);
        // A success starts the user's count again and gives the address its attempt back.
        let address = LoginKey { key: "ip:1.2.3.4", max: 2 };
        assert_eq!(a.reserve_login(&[key("user:sato"), LoginKey { key: "ip:1.2.3.4", max: 2 }], 1_000, lock).unwrap(), None);
        a.login_succeeded("user:sato", &address).unwrap();
        assert_eq!(b.reserve_login(&[key("user:ito"), LoginKey { key: "ip:1.2.3.4", max: 2 }], 1_000, lock).unwrap(), None);
        assert_eq!(b.reserve_login(&[key("user:ito"), LoginKey { key: "ip:1.2.3.4", max: 2 }], 1_000, lock).unwrap(), None);
        assert_eq!(
            a.reserve_login(&[key("user:ota"), LoginKey { key: "ip:1.2.3.4", max: 2 }], 1_000, lock).unwrap(),
            Some(300),
            "the address is locked after its two attempts"
        );
        // Counts idle for a day are swept at the next attempt.
        let count = |s: &Store| -> i64 {
            s.conn()
                .query_row("SELECT COUNT(*) FROM login_failures", [], |r| r.get(0))
                .unwrap()
        };
        assert!(count(&a) >= 3);
        b.reserve_login(&[key("user:new")], 400_000_000, lock).unwrap();
        assert_eq!(count(&a), 1, "only the new one is left");
    }
);

/// Stores an ORM for accession `accession` whose ZRS-1 (the configured field) says
/// `count` images.
fn order_expecting(store: &Store, accession: &str, count: &str, control_id: &str, at: i64) {
    let text = format!(
        "MSH|^~\\&|RIS|H|RG|R|20240601||ORM^O01|{control_id}|P|2.5\rPID|||P1\r\
         ORC|NW|PL\rOBR|1|PL{}{accession}\rZRS|{count}\r",
        "|".repeat(16)
    );
    let config = crate::hl7::Config {
        expected_images: Some("ZRS-1".parse().unwrap()),
        ..crate::hl7::Config::default()
    };
    record_accepted(store, text, &config, ("ORM^O01", control_id), at);
}

/// Records `text` (parsed with `config`) as a message of `(type, control id)` accepted
/// with AA at `at`.
fn record_accepted(
    store: &Store,
    text: String,
    config: &crate::hl7::Config,
    (message_type, control_id): (&str, &str),
    at: i64,
) {
    let parsed = crate::hl7::message::parse_for(&text, config).unwrap();
    let m = IncomingMessage {
        received_at: at,
        peer: "127.0.0.1:1".into(),
        sender: "RIS|H".into(),
        control_id: control_id.into(),
        message_type: message_type.into(),
        charset: None,
        raw: text.into_bytes(),
        parsed: Some(parsed),
        ack_code: "AA".into(),
        ack_text: String::new(),
        ack: Vec::new(),
    };
    store.record_hl7_batch(&[m]).unwrap();
}

on_both_backends!(
    an_order_s_expected_image_count_completes_its_study,
    |store: Store| {
        use crate::model::CompletionSignal;
        let completed_by = |uid: &str| store.study_row(uid).unwrap().unwrap().completed_by;
        // Another study's order, and an order of this one without a count: no signal.
        order_expecting(&store, "OTHER", "2", "C0", 1);
        order_expecting(&store, "A1", "", "C1", 2);
        store.index_instance(&instance("1", "S", 10), true).unwrap();
        store.index_instance(&instance("2", "S", 20), true).unwrap();
        assert!(store.studies_stable_since(0).unwrap().is_empty());
        // A later order says 3: two of three are in.
        order_expecting(&store, "A1", "3", "C2", 3);
        assert_eq!(store.expected_images_of("S").unwrap(), Some(3));
        assert!(store.studies_stable_since(0).unwrap().is_empty());
        assert_eq!(completed_by("S"), None);
        // The third completes it without the quiet wait.
        store.index_instance(&instance("3", "S", 30), true).unwrap();
        assert_eq!(store.studies_stable_since(0).unwrap(), ["S"]);
        assert!(queue(&store, &store.snapshot("S").unwrap(), 35));
        assert_eq!(completed_by("S"), Some(CompletionSignal::ExpectedImages));
        // A fourth re-opens it; the count was wrong, so the quiet wait decides again.
        store.index_instance(&instance("4", "S", 40), true).unwrap();
        assert_eq!(completed_by("S"), None);
        assert!(store.studies_stable_since(39).unwrap().is_empty());
        assert_eq!(store.studies_stable_since(40).unwrap(), ["S"]);
        assert!(queue(&store, &store.snapshot("S").unwrap(), 45));
        assert_eq!(completed_by("S"), Some(CompletionSignal::QuietPeriod));
        // A malformed count is no count.
        order_expecting(&store, "A1", "abc", "C3", 50);
        assert_eq!(store.expected_images_of("S").unwrap(), Some(3));
    }
);

// A streaming study: instances with header context the gate has seen are queued as they
// are indexed; new context waits for the next stream decision; stopping takes back what
// is queued and the delivered count stays; at completion a study with nothing left to
// send is forwarded at once, when its last instance was delivered.
on_both_backends!(
    a_stream_queues_as_instances_arrive_and_stops_exactly,
    |store: Store| {
        use crate::model::{InstanceState, StreamState};
        let first = store.index_received(instance("1", "S", 10), true).unwrap();
        assert_eq!(first.streamed_to, None);
        assert_eq!(store.stream_checks().unwrap(), ["S"], "a new study asks");
        assert!(store.take_stream_check("S").unwrap());
        assert!(store.stream_checks().unwrap().is_empty());
        let pass = DecisionRecord {
            forward: true,
            destination: Some("rc1".into()),
            facility: Some("RC1".into()),
            verdict: crate::model::Disposition::Pass,
            ..Default::default()
        };
        let contexts = store.header_contexts("S").unwrap();
        assert_eq!(
            store
                .stream(
                    "S",
                    &pass,
                    &contexts,
                    Some((crate::model::EventKind::Streaming, "x")),
                    11
                )
                .unwrap(),
            Some(1)
        );
        // Same header context: queued at once, its destination named to be woken.
        let second = store.index_received(instance("2", "S", 12), true).unwrap();
        assert_eq!(second.streamed_to.as_deref(), Some("rc1"));
        // Another accession in the header: waits, and asks for a decision.
        let mut other = instance("3", "S", 13);
        other.context = r#"{"0008,0050":"A2"}"#.into();
        assert_eq!(store.index_received(other, true).unwrap().streamed_to, None);
        assert_eq!(store.stream_checks().unwrap(), ["S"]);
        let q = store.queued_for("rc1", &LEASE, 100, 10).unwrap();
        assert_eq!(q.len(), 2);
        assert_eq!(
            store.mark_forwarded(&q[0], 0, &LEASE, 20).unwrap(),
            Delivery::Recorded,
            "still receiving"
        );
        assert_eq!(store.sent_summary("S").unwrap(), [("rc1".to_string(), 1)]);
        // The verdict turns: what is queued goes back, the delivered one stays counted.
        let hold = DecisionRecord {
            destination: Some("rc1".into()),
            ..Default::default()
        };
        assert!(store.stop_stream("S", Some(&hold), "stopped", 21).unwrap());
        assert!(!store.stop_stream("S", Some(&hold), "again", 22).unwrap());
        let row = store.study_row("S").unwrap().unwrap();
        assert_eq!(
            (row.state, row.stream, row.instances_forwarded),
            (StudyState::Held, Some(StreamState::Stopped), 1)
        );
        assert!(store.queued_for("rc1", &LEASE, 100, 10).unwrap().is_empty());
        let states: Vec<InstanceState> = store
            .instances_of("S")
            .unwrap()
            .into_iter()
            .map(|i| i.state)
            .collect();
        assert_eq!(
            states,
            [
                InstanceState::Forwarded,
                InstanceState::Received,
                InstanceState::Received
            ]
        );
        // A stopped stream queues nothing more, however the instance looks.
        let late = store.index_received(instance("4", "S", 30), true).unwrap();
        assert_eq!(late.streamed_to, None);

        // Another study streams all of itself before it is complete: forwarded at once.
        store.index_received(instance("5", "T", 40), true).unwrap();
        let contexts = store.header_contexts("T").unwrap();
        store.stream("T", &pass, &contexts, None, 41).unwrap();
        let q = store.queued_for("rc1", &LEASE, 100, 10).unwrap();
        assert_eq!(q.len(), 1);
        store.mark_forwarded(&q[0], 0, &LEASE, 45).unwrap();
        let snap = store.snapshot("T").unwrap();
        assert!(queue(&store, &snap, 60));
        let row = store.study_row("T").unwrap().unwrap();
        assert_eq!(row.state, StudyState::Forwarded);
        assert_eq!(
            row.forwarded_at,
            Some(45),
            "when its last instance was delivered"
        );
    }
);

/// PostgreSQL restarted under a running store: what is asked while it is away fails
/// (nothing is answered as if stored), and the store connects again once it is back.
#[test]
fn the_store_connects_again_after_postgresql_restarts() {
    let mut pg = crate::pgtest::TempPostgres::start().unwrap();
    let store = Store::connect(&pg.url(), 4).unwrap();
    store.index_instance(&instance("1", "S", 10), true).unwrap();
    pg.stop().unwrap();
    assert!(
        store.index_instance(&instance("2", "S", 20), true).is_err(),
        "nothing is indexed while the database is away"
    );
    pg.restart().unwrap();
    store.index_instance(&instance("3", "S", 30), true).unwrap();
    let rows = store.list_studies(None, 10).unwrap();
    assert_eq!(rows[0].instance_count, 2, "instances 1 and 3, not 2");
}

on_both_backends!(a_study_is_forwarded_by_the_node_that_holds_its_lease, two |a: Store, b: Store| {
    let (la, lb) = (
        Lease { node: "a", ms: 1_000 },
        Lease { node: "b", ms: 1_000 },
    );
    a.index_instance(&instance("1", "S", 10), true).unwrap();
    a.index_instance(&instance("2", "S", 11), true).unwrap();
    assert!(queue(&a, &a.snapshot("S").unwrap(), 20));
    let qa = a.queued_for("rc1", &la, 100, 10).unwrap();
    assert_eq!(qa.len(), 2, "a takes the study");
    assert!(b.queued_for("rc1", &lb, 200, 10).unwrap().is_empty(), "a's lease holds");
    assert_eq!(a.mark_forwarded(&qa[0], 0, &la, 300).unwrap(), Delivery::Recorded);
    // a's delivery renewed the lease to 1300: b still waits at 1200 …
    assert!(b.queued_for("rc1", &lb, 1200, 10).unwrap().is_empty());
    // … and takes the study once it lapsed (a paused or died), with a new token.
    let qb = b.queued_for("rc1", &lb, 1301, 10).unwrap();
    assert_eq!(qb.len(), 1);
    assert!(qb[0].lease_token > qa[1].lease_token);
    // a wakes up and delivers under its old token: refused, nothing recorded.
    assert_eq!(a.mark_forwarded(&qa[1], 0, &la, 1302).unwrap(), Delivery::LeaseLost);
    assert_eq!(a.study_row("S").unwrap().unwrap().state, crate::model::StudyState::Queued);
    assert_eq!(b.mark_forwarded(&qb[0], 0, &lb, 1303).unwrap(), Delivery::StudyForwarded);
    let nodes_leases: i64 = b.nodes(1304).unwrap().iter().map(|n| n.leases).sum();
    assert_eq!(nodes_leases, 0, "a forwarded study's lease is given back");
});

on_both_backends!(one_claim_leaves_work_for_the_other_nodes, two |a: Store, b: Store| {
    let (la, lb) = (
        Lease { node: "a", ms: 60_000 },
        Lease { node: "b", ms: 60_000 },
    );
    for i in 0..20 {
        let study = format!("S{i:02}");
        a.index_instance(&instance(&format!("{i}"), &study, 10 + i), true).unwrap();
        assert!(queue(&a, &a.snapshot(&study).unwrap(), 100));
    }
    let qa = a.queued_for("rc1", &la, 200, 500).unwrap();
    let qb = b.queued_for("rc1", &lb, 200, 500).unwrap();
    assert_eq!(qa.len() as i64, super::queue::CLAIM_STUDIES);
    assert_eq!(qa.len() + qb.len(), 20, "every study is claimed once");
    let studies = |q: &[QueuedInstance]| q.iter().map(|i| i.study_uid.clone()).collect::<std::collections::BTreeSet<_>>();
    assert!(studies(&qa).is_disjoint(&studies(&qb)));
    // A claim again renews a's own leases and takes nothing of b's.
    assert_eq!(a.queued_for("rc1", &la, 300, 500).unwrap().len(), qa.len());
});

on_both_backends!(nodes_join_beat_lead_and_leave, two |a: Store, b: Store| {
    let beat = |id: &str, run: &str| NodeBeat {
        id: id.into(),
        incarnation: run.into(),
        host: "h".into(),
        pid: 1,
        version: "v".into(),
        listens: "dicom=127.0.0.1:104".into(),
    };
    let running = |_: &str, _: i64| true;
    a.join_cluster(&beat("a", "run1"), 1_000, 30_000, &running).unwrap().unwrap();
    b.join_cluster(&beat("b", "run1"), 1_000, 30_000, &running).unwrap().unwrap();
    // A second process with a's id while a is alive: refused, naming the id …
    let refused = b.join_cluster(&beat("a", "run2"), 2_000, 30_000, &running).unwrap().unwrap_err();
    assert!(refused.to_string().contains("gateway.id \"a\""), "{refused}");
    // … but not a's restart after its process died (kill -9, then systemd starts it).
    let gone = |_: &str, _: i64| false;
    a.join_cluster(&beat("a", "run1b"), 2_500, 30_000, &gone).unwrap().unwrap();
    a.join_cluster(&beat("a", "run1"), 2_600, 30_000, &gone).unwrap().unwrap();
    // The cluster's timers: a takes them, b is refused, a renews with the same token.
    let t1 = a.hold_lease("timers", "a", 1_000, 30_000).unwrap().unwrap();
    assert_eq!(b.hold_lease("timers", "b", 2_000, 30_000).unwrap(), None);
    assert_eq!(a.hold_lease("timers", "a", 3_000, 30_000).unwrap(), Some(t1));
    assert_eq!(b.lease_holder("timers", 4_000).unwrap().map(|h| h.0).as_deref(), Some("a"));
    // a falls silent: after its lease b takes over, with the next token.
    assert_eq!(b.hold_lease("timers", "b", 33_001, 30_000).unwrap(), Some(t1 + 1));
    assert!(a.heartbeat(&beat("a", "run1"), 5_000).unwrap());
    assert!(!a.heartbeat(&beat("a", "old"), 5_000).unwrap(), "a stale run is told");
    // a restarted after it died (its heartbeat is old): accepted.
    a.join_cluster(&beat("a", "run3"), 40_000, 30_000, &running).unwrap().unwrap();
    // b leaves: its leases are free at once.
    b.leave_cluster(&beat("b", "run1"), 41_000).unwrap();
    assert_eq!(a.lease_holder("timers", 41_001).unwrap(), None);
    assert!(a.hold_lease("timers", "a", 41_002, 30_000).unwrap().is_some());
    let nodes = a.nodes(41_003).unwrap();
    assert_eq!(nodes.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(nodes[1].stopped_at, Some(41_000));
    assert_eq!(nodes[0].stopped_at, None);
});

on_both_backends!(console_sessions_touch_expire_and_end, |store: Store| {
    use super::{NewSession, SESSION_TOUCH_AFTER_MS as TOUCH};
    use crate::model::Role;
    const IDLE: i64 = 8 * 3600 * 1000;
    let new = |id: &'static str, user: &'static str, now: i64| NewSession {
        id_sha256: id,
        user,
        role: Role::Admin,
        user_digest: "d",
        csrf: "c",
        node: "n",
        now,
    };
    store.create_session(&new("a", "dr", 1_000)).unwrap();
    store.create_session(&new("b", "dr", 1_000)).unwrap();
    store.create_session(&new("c", "sato", 1_000)).unwrap();
    let s = store.find_session("a", 1_000 + 10, IDLE).unwrap().unwrap();
    assert_eq!(
        (s.user.as_str(), s.role, s.csrf.as_str()),
        ("dr", Role::Admin, "c")
    );
    assert_eq!(s.last_seen_at, 1_000, "not touched within a minute");
    let s = store
        .find_session("a", 1_000 + TOUCH, IDLE)
        .unwrap()
        .unwrap();
    assert_eq!(s.last_seen_at, 1_000 + TOUCH, "touched after a minute");
    let s = store
        .find_session("a", 1_000 + 2 * TOUCH - 1, IDLE)
        .unwrap()
        .unwrap();
    assert_eq!(
        s.last_seen_at,
        1_000 + TOUCH,
        "a minute after the last touch"
    );
    assert!(store.find_session("nope", 1_000, IDLE).unwrap().is_none());

    // Idle: "b" and "b2" were last seen at 1 000; a moment before the idle time "b2" is
    // valid; at exactly the idle time "b" has ended, and the lookup deleted it.
    store.create_session(&new("b2", "dr", 1_000)).unwrap();
    assert!(store
        .find_session("b2", 1_000 + IDLE - 1, IDLE)
        .unwrap()
        .is_some());
    assert!(store
        .find_session("b", 1_000 + IDLE, IDLE)
        .unwrap()
        .is_none());
    assert_eq!(store.session_count().unwrap(), 3);
    // The sweep ends what nobody asked for ("c"), not what was seen since ("a").
    assert_eq!(
        store.delete_expired_sessions(1_000 + IDLE - IDLE).unwrap(),
        1
    );
    assert!(store
        .find_session("a", 1_000 + IDLE, IDLE)
        .unwrap()
        .is_some());
    assert!(store.find_session("c", 1_000 + 10, IDLE).unwrap().is_none());

    // By user (a reload that removed or changed users), and one by one (logout).
    store.create_session(&new("d", "sato", 5_000)).unwrap();
    store.create_session(&new("e", "kato", 5_000)).unwrap();
    assert_eq!(
        store
            .delete_sessions_of(&["dr".to_string(), "sato".to_string()])
            .unwrap(),
        3
    );
    assert!(store.find_session("a", 6_000, IDLE).unwrap().is_none());
    assert!(store.delete_session("e").unwrap());
    assert!(!store.delete_session("e").unwrap());
    assert_eq!(store.session_count().unwrap(), 0);
    assert_eq!(store.delete_sessions_of(&[]).unwrap(), 0);
});

// What the PACS answered: a lookup that found studies, then one that failed (the found
// studies stay), which patients are due for another lookup, and the earliest date of
// the patient's open studies (the PACS is asked back from there).
on_both_backends!(pacs_lookups_say_who_is_due, |store: Store| {
    use crate::model::PacsStudy;
    let ids = ["P1".to_string()];
    let pacs = ["PACS1".to_string(), "PACS2".to_string()];
    let mut first = instance("1", "S", 10);
    first.context = r#"{"0008,0020":"20240105"}"#.into();
    store.index_instance(&first, true).unwrap();
    // Never asked: due in both.
    assert_eq!(
        store.patients_to_look_up(&pacs, 0, 0, 0, 10).unwrap(),
        ["P1"]
    );
    assert_eq!(
        store.earliest_open_study_date(&ids).unwrap().as_deref(),
        Some("20240105")
    );
    let prior = PacsStudy {
        study_uid: "OLD".into(),
        date: Some("20230101".into()),
        modalities: vec!["CT".into()],
        ..Default::default()
    };
    store
        .record_pacs_lookup("P1", "PACS1", 100, Ok(&[(prior, 2)]))
        .unwrap();
    store
        .record_pacs_lookup("P1", "PACS2", 100, Err("refused"))
        .unwrap();
    // An answer fresh since 50 and a failure newer than the retry bound: not due.
    assert!(store
        .patients_to_look_up(&pacs, 0, 50, 50, 10)
        .unwrap()
        .is_empty());
    // The failure is older than the retry bound: due again.
    assert_eq!(
        store.patients_to_look_up(&pacs, 0, 50, 150, 10).unwrap(),
        ["P1"]
    );
    // A later failure in PACS1 keeps what it found.
    store
        .record_pacs_lookup("P1", "PACS1", 200, Err("timeout"))
        .unwrap();
    let lookups = store.pacs_lookups(&ids).unwrap();
    assert_eq!(lookups.len(), 2);
    assert_eq!(lookups[0].pacs_id, "PACS1");
    assert_eq!(lookups[0].error.as_deref(), Some("timeout"));
    assert_eq!(lookups[0].found, 1);
    let found = store.pacs_studies(&ids).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].study.study_uid, "OLD");
    assert_eq!(found[0].documents, 2);
    assert_eq!(store.pacs_holding("OLD", &pacs).unwrap(), ["PACS1"]);
});

/// Records an ADT^A40 merging `prior` into `surviving` (CX, with or without authority).
fn merge(store: &Store, surviving: &str, prior: &str, control_id: &str) {
    let text = format!(
        "MSH|^~\\&|ADT|H|RG|R|20240601||ADT^A40|{control_id}|P|2.5\rPID|||{surviving}\r\
         MRG|{prior}\r"
    );
    let config = crate::hl7::Config::default();
    record_accepted(store, text, &config, ("ADT^A40", control_id), 1);
}

// Merges link patient ids both ways; only merges within one assigning authority (or
// between ids without one) are followed when asking the PACS.
on_both_backends!(merged_ids_follow_the_assigning_authority, |store: Store| {
    merge(&store, "1234567^^^TOKYO_GEN", "X-55^^^OLD_SYSTEM", "M1");
    merge(&store, "1234567^^^TOKYO_GEN", "7654321^^^TOKYO_GEN", "M2");
    merge(&store, "A1", "A0", "M3");
    let mut linked = store.linked_patient_ids("1234567").unwrap();
    linked.sort();
    assert_eq!(linked, ["1234567", "7654321", "X-55"]);
    let mut same = store.same_domain_patient_ids("1234567").unwrap();
    same.sort();
    assert_eq!(same, ["1234567", "7654321"]);
    let mut plain = store.same_domain_patient_ids("A0").unwrap();
    plain.sort();
    assert_eq!(plain, ["A0", "A1"]);
});

// Active/active: the first instances of one study reach two nodes at once. The second
// node's insert of the study waits for the first node's commit (PostgreSQL's unique
// index), then the instance joins the study the first node made, instead of failing.
#[test]
fn two_nodes_creating_one_study_at_once_both_index_into_it() {
    let pg = crate::pgtest::TempPostgres::start().unwrap();
    let a = Store::connect(&pg.url(), 4).unwrap();
    let b = Store::connect(&pg.url(), 4).unwrap();
    let watcher = crate::db::Conn::postgres(&pg.url()).unwrap();
    let mut conn = a.conn();
    let tx = conn.transaction().unwrap();
    super::instances::index_in(&tx, &instance("1", "S", 10), false).unwrap();
    let second = std::thread::spawn(move || b.index_instance(&instance("2", "S", 20), false));
    // Node B is inside its insert of the study, waiting for node A's transaction.
    let start = std::time::Instant::now();
    loop {
        let waiting: i64 = watcher
            .query_row(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "node B never waited for node A"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    tx.commit().unwrap();
    drop(conn);
    assert_eq!(second.join().unwrap().unwrap(), Indexed::New);
    let row = a.study_row("S").unwrap().unwrap();
    assert_eq!(row.instance_count, 2);
    assert_eq!(row.calling_aes, "CT01");
    assert_eq!(a.snapshot("S").unwrap().instance_count, 2);
}

on_both_backends!(roster_and_read_events_are_read_as_enums, |store: Store| {
    use crate::model::Employment;
    let entry = |id: &str, employment| RosterEntry {
        ids: vec![id.to_string()],
        name: format!("reader {id}"),
        facility: "RC1".to_string(),
        employment,
        board_certified: true,
        valid_from: Some("2026-04-01".to_string()),
        valid_to: None,
        source: String::new(),
    };
    let entries = [
        entry("1", Employment::FullTime),
        entry("2", Employment::PartTime),
        entry("3", Employment::Trainee),
    ];
    assert_eq!(store.import_roster(&entries, "r.csv", 1_000).unwrap(), 3);
    let back = store.imported_roster().unwrap();
    let kinds: Vec<Employment> = back.iter().map(|e| e.employment).collect();
    assert_eq!(kinds, Employment::ALL);
    assert_eq!(back[0].valid_from.as_deref(), Some("2026-04-01"));

    // A row changed behind readgate's back no longer names an employment: reading the
    // roster fails and says which text it met, instead of leaving the reader out.
    store
        .conn()
        .execute(
            "UPDATE roster SET employment = ?1 WHERE ids = ?2",
            ["boss", "2"],
        )
        .unwrap();
    let e = store.imported_roster().unwrap_err().to_string();
    assert!(e.contains("boss") && e.contains("employment"), "{e}");

    // A read event's action likewise: typed going in and coming out, and a stored text
    // that names no action fails the ledger's read instead of dropping the event.
    use crate::model::ReadAction;
    store.index_received(instance("1", "S", 10), true).unwrap();
    for (at, action) in [(20, ReadAction::Opened), (30, ReadAction::Final)] {
        store
            .record_read_event(&NewReadEvent {
                study_uid: "S".into(),
                accession: None,
                reader_id: "R1".into(),
                action,
                at,
                workstation: None,
                client_ip: None,
                source: "rest:test".into(),
                received_at: at,
                resolved: "{}".into(),
            })
            .unwrap();
    }
    let mut actions: Vec<(i64, ReadAction)> = store
        .ledger_read_events(0, 100)
        .unwrap()
        .into_iter()
        .map(|e| (e.at, e.action))
        .collect();
    actions.sort();
    assert_eq!(actions, [(20, ReadAction::Opened), (30, ReadAction::Final)]);
    store
        .conn()
        .execute(
            "UPDATE read_events SET action = ?1 WHERE at = ?2",
            crate::db::params!["glanced", 20],
        )
        .unwrap();
    let e = store.ledger_read_events(0, 100).unwrap_err().to_string();
    assert!(e.contains("glanced"), "{e}");
});
