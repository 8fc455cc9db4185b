//! readgate in-process, driven by a dicom-ul SCU, forwarding to DCMTK storescp: the
//! receiving side's handling of what real SCUs send, good and bad.

mod common;

use common::*;
use readgate::model::{EventKind, StudyState};
use std::time::Duration;

async fn start(cfg: &TestConfig) -> readgate::serve::Running {
    readgate::serve::start(cfg.parse())
        .await
        .expect("readgate starts")
}

fn uid(n: u32) -> String {
    format!("1.2.826.0.1.3680043.10.1234.{n}")
}

#[tokio::test(flavor = "multi_thread")]
async fn every_packing_is_stored_and_forwarded_byte_identical() {
    let (_dir, scp, cfg) = reading_site();
    let rg = start(&cfg).await;
    let mut scu = Scu::ct01(cfg.dicom_port).await;
    assert_eq!(scu.echo().await.unwrap(), 0x0000);
    let study = uid(1);
    let mut sent = Vec::new();
    for (i, packing) in [
        Packing::Separate,
        Packing::SamePdu,
        Packing::FragmentedCommand,
    ]
    .into_iter()
    .enumerate()
    {
        let sop = format!("{study}.{}", i + 1);
        let ds = synthetic_instance(CT_IMAGE_STORAGE, &study, &sop, "CT", 40_000 + i * 1000);
        let (status, comment) = scu
            .store(CT_IMAGE_STORAGE, &sop, &ds, packing)
            .await
            .unwrap();
        assert_eq!(status, 0x0000, "{packing:?}: {comment:?}");
        sent.push((sop, ds));
    }
    scu.release().await;
    wait_until("study forwarded", Duration::from_secs(20), || {
        !rg.store
            .list_studies(Some(StudyState::Forwarded), 10)
            .unwrap()
            .is_empty()
    });
    for (sop, ds) in &sent {
        let file = scp.file_of(sop).expect("storescp received it");
        let (meta, received) = dataset_of(&file);
        assert_eq!(meta.transfer_syntax, EXPLICIT_LE);
        // everything but readgate's accountability tags arrives byte for byte
        let sent = common::elements::unchanged_elements(ds, EXPLICIT_LE);
        let got = common::elements::unchanged_elements(&received, EXPLICIT_LE);
        assert!(sent == got, "data set of {sop} changed on the way");
        assert!(
            received
                .windows(23)
                .any(|w| w == b"READGATE ACCOUNTABILITY"),
            "not tagged"
        );
    }
    let row = &rg.store.list_studies(None, 10).unwrap()[0];
    assert_eq!((row.instance_count, row.instances_forwarded), (3, 3));
    assert_eq!(row.facility.as_deref(), Some("RC1"));
    // The study's path is in the audit trail, hash-chained and intact. The forward's
    // entry is written just after the state turns Forwarded, so it is waited for.
    let kinds = || -> Vec<String> {
        rg.audit
            .search(&readgate::audit::Query {
                study: Some(study.clone()),
                ..Default::default()
            })
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect()
    };
    wait_until("study_forwarded audited", Duration::from_secs(10), || {
        kinds().iter().any(|k| k == "study_forwarded")
    });
    let kinds = kinds();
    for kind in ["instance_received", "study_released", "study_forwarded"] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "{kind} missing from {kinds:?}"
        );
    }
    let v = rg.audit.verify().unwrap();
    assert!(v.finding.is_none(), "{:?}", v.finding);
    // and the forwarded instances cite the decision's audit entry
    let file = scp.file_of(&sent[0].0).unwrap();
    let (_, received) = dataset_of(&file);
    assert!(
        received.windows(20).any(|w| w == b"readgate:gw-test:aud"),
        "audit reference tagged"
    );
    rg.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_data_sets_get_failure_statuses_and_the_association_goes_on() {
    let (dir, cfg) = no_reading_site();
    let rg = start(&cfg).await;
    let mut scu = Scu::connect(
        cfg.dicom_port,
        "CT01",
        &[CT_IMAGE_STORAGE, MR_IMAGE_STORAGE],
    )
    .await
    .unwrap();
    let study = uid(2);

    // truncated: the pixel data element claims more bytes than were sent
    let sop = format!("{study}.1");
    let mut ds = synthetic_instance(CT_IMAGE_STORAGE, &study, &sop, "CT", 5000);
    ds.truncate(ds.len() - 100);
    let (status, comment) = scu
        .store(CT_IMAGE_STORAGE, &sop, &ds, Packing::Separate)
        .await
        .unwrap();
    assert_answer(status, &comment, 0xC000, "truncated");

    // the data set says MR while the command and context say CT
    let sop = format!("{study}.2");
    let ds = synthetic_instance(MR_IMAGE_STORAGE, &study, &sop, "MR", 100);
    let (status, comment) = scu
        .store(CT_IMAGE_STORAGE, &sop, &ds, Packing::Separate)
        .await
        .unwrap();
    assert_answer(status, &comment, 0xA900, "SOP Class");

    // command says CT but it is sent on the MR context
    let sop = format!("{study}.3");
    let ds = synthetic_instance(CT_IMAGE_STORAGE, &study, &sop, "CT", 100);
    let mr_pc = scu.context_for(MR_IMAGE_STORAGE);
    let (status, _) = scu
        .store_on(mr_pc, CT_IMAGE_STORAGE, &sop, &ds, Packing::SamePdu)
        .await
        .unwrap();
    assert_eq!(status, 0xA900);

    // SOP Instance UID of the data set differs from the command's
    let ds = synthetic_instance(CT_IMAGE_STORAGE, &study, "1.2.3.999", "CT", 100);
    let (status, _) = scu
        .store(
            CT_IMAGE_STORAGE,
            &format!("{study}.4"),
            &ds,
            Packing::Separate,
        )
        .await
        .unwrap();
    assert_eq!(status, 0xA900);

    // garbage bytes
    let (status, comment) = scu
        .store(
            CT_IMAGE_STORAGE,
            &format!("{study}.5"),
            b"\x08\x00\x16\x00XXgarbage",
            Packing::Separate,
        )
        .await
        .unwrap();
    assert_eq!(status, 0xC000, "{comment:?}");

    // no Study Instance UID: A900 naming it
    let sop = format!("{study}.7");
    let mut ds = Vec::new();
    element(&mut ds, 0x0008, 0x0016, b"UI", &padded(CT_IMAGE_STORAGE, 0));
    element(&mut ds, 0x0008, 0x0018, b"UI", &padded(&sop, 0));
    element(&mut ds, 0x0008, 0x0060, b"CS", b"CT");
    let (status, comment) = scu
        .store(CT_IMAGE_STORAGE, &sop, &ds, Packing::Separate)
        .await
        .unwrap();
    assert_answer(status, &comment, 0xA900, "Study Instance UID");

    // a command readgate does not provide (C-FIND): 0211 after its data set is read
    use readgate::dicom::dimse;
    let find = dimse::CommandBuilder::new()
        .uid(dimse::TAG_AFFECTED_SOP_CLASS, CT_IMAGE_STORAGE)
        .u16(dimse::TAG_COMMAND_FIELD, 0x0020)
        .u16(dimse::TAG_MESSAGE_ID, 77)
        .u16(dimse::TAG_PRIORITY, 0)
        .u16(dimse::TAG_DATA_SET_TYPE, 0x0001)
        .encode();
    let pc = scu.context_for(CT_IMAGE_STORAGE);
    let pdv = |value_type, data: Vec<u8>| dicom_ul::Pdu::PData {
        data: vec![dicom_ul::pdu::PDataValue {
            presentation_context_id: pc,
            value_type,
            is_last: true,
            data,
        }],
    };
    scu.send_raw(&pdv(dicom_ul::pdu::PDataValueType::Command, find))
        .await
        .unwrap();
    let mut identifier = Vec::new();
    element(&mut identifier, 0x0008, 0x0052, b"CS", b"STUDY ");
    scu.send_raw(&pdv(dicom_ul::pdu::PDataValueType::Data, identifier))
        .await
        .unwrap();
    let (status, comment) = scu.response().await.unwrap();
    assert_eq!(status, 0x0211, "{comment:?}");
    assert!(comment.is_some(), "0211 without an Error Comment");

    // and a good one on the same association still works
    let sop = format!("{study}.6");
    let ds = synthetic_instance(CT_IMAGE_STORAGE, &study, &sop, "CT", 100);
    scu.store_ct_ok(&sop, &ds).await;
    scu.release().await;
    let rows = rg.store.list_studies(None, 10).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0].instance_count, 1,
        "only the good instance is indexed"
    );
    // no partial files were left behind
    assert_eq!(partial_instances(&dir.path().join("var")), 0);
    rg.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_calling_ae_and_wrong_called_ae_are_rejected() {
    let (_dir, mut cfg) = no_reading_site();
    cfg.peers = Some("[[dicom.peers]]\nae_title = \"CT01\"\n[[dicom.peers]]\nae_title = \"FAR01\"\nhosts = [\"10.9.9.9\"]\n".into());
    let rg = start(&cfg).await;
    assert!(Scu::connect(cfg.dicom_port, "EVIL", &[CT_IMAGE_STORAGE])
        .await
        .is_err());
    assert!(
        Scu::connect(cfg.dicom_port, "FAR01", &[CT_IMAGE_STORAGE])
            .await
            .is_err(),
        "wrong host"
    );
    // A known calling AE that calls another AE title: refused as "called AE title not
    // recognized" (DCMTK says so), not accepted.
    let port = cfg.dicom_port;
    let echo = |calling: &'static str, called: &'static str| {
        tokio::task::spawn_blocking(move || {
            let out = std::process::Command::new(common::dcmtk("echoscu"))
                .args([
                    "-aet",
                    calling,
                    "-aec",
                    called,
                    "127.0.0.1",
                    &port.to_string(),
                ])
                .output()
                .expect("echoscu");
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        })
    };
    let (ok, err) = echo("CT01", "NOTREADGATE").await.unwrap();
    assert!(!ok, "a wrong called AE was accepted");
    assert!(err.contains("Called AE Title Not Recognized"), "{err}");
    let (ok, err) = echo("EVIL", "READGATE").await.unwrap();
    assert!(!ok);
    assert!(err.contains("Calling AE Title Not Recognized"), "{err}");
    let (ok, err) = echo("CT01", "READGATE").await.unwrap();
    assert!(ok, "{err}");
    let ok = Scu::ct01(cfg.dicom_port).await;
    ok.release().await;
    rg.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_peers_are_dropped_and_do_not_block_others() {
    let (dir, mut cfg) = no_reading_site();
    cfg.extra_dicom = "association_timeout_secs = 1\nidle_timeout_secs = 2".into();
    let rg = start(&cfg).await;
    // a TCP connection that never sends A-ASSOCIATE-RQ
    let mut raw = tokio::net::TcpStream::connect(("127.0.0.1", cfg.dicom_port))
        .await
        .unwrap();
    // an association that goes silent in the middle of a data set
    let mut silent = Scu::ct01(cfg.dicom_port).await;
    let pc = silent.context_for(CT_IMAGE_STORAGE);
    let cmd = readgate::dicom::dimse::c_store_rq(1, CT_IMAGE_STORAGE, "1.2.3.4");
    silent
        .send_raw(&dicom_ul::Pdu::PData {
            data: vec![dicom_ul::pdu::PDataValue {
                presentation_context_id: pc,
                value_type: dicom_ul::pdu::PDataValueType::Command,
                is_last: true,
                data: cmd,
            }],
        })
        .await
        .unwrap();
    // meanwhile another modality stores normally
    let mut other = Scu::connect(cfg.dicom_port, "CT02", &[CT_IMAGE_STORAGE])
        .await
        .unwrap();
    let study = uid(3);
    let ds = synthetic_instance(CT_IMAGE_STORAGE, &study, &format!("{study}.1"), "CT", 1000);
    other.store_ct_ok(&format!("{study}.1"), &ds).await;
    other.release().await;
    // the raw connection is closed by readgate (read returns 0) within the ARTIM time
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), raw.read(&mut buf))
        .await
        .expect("closed in time");
    assert!(matches!(n, Ok(0) | Err(_)));
    // the silent association is aborted (A-ABORT PDU) after the idle timeout
    let r = tokio::time::timeout(Duration::from_secs(6), silent.response())
        .await
        .expect("aborted in time");
    assert!(r.is_err(), "expected an abort, got {r:?}");
    assert_eq!(partial_instances(&dir.path().join("var")), 0);
    rg.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn low_disk_space_answers_a700_with_a_comment() {
    let (_dir, mut cfg) = no_reading_site();
    cfg.min_free_mb = 1 << 40; // more than any disk has: the spool counts as full
    let rg = start(&cfg).await;
    let mut scu = Scu::ct01(cfg.dicom_port).await;
    let study = uid(4);
    let sop = format!("{study}.1");
    let ds = synthetic_instance(CT_IMAGE_STORAGE, &study, &sop, "CT", 70_000);
    let (status, comment) = scu
        .store(CT_IMAGE_STORAGE, &sop, &ds, Packing::Separate)
        .await
        .unwrap();
    assert_answer(status, &comment, 0xA700, "full");
    // the association is still usable
    assert_eq!(scu.echo().await.unwrap(), 0);
    scu.release().await;
    rg.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicates_follow_the_configured_policy() {
    for (policy, expect_kept_first) in [("keep_first", true), ("replace", false)] {
        let (dir, mut cfg) = no_reading_site();
        cfg.extra_dicom = format!("duplicate_policy = \"{policy}\"");
        cfg.stable_after_secs = 3600;
        let rg = start(&cfg).await;
        let mut scu = Scu::ct01(cfg.dicom_port).await;
        let study = uid(5);
        let sop = format!("{study}.1");
        let first = synthetic_instance(CT_IMAGE_STORAGE, &study, &sop, "CT", 100);
        let second = synthetic_instance(CT_IMAGE_STORAGE, &study, &sop, "CT", 200);
        scu.store_ct_ok(&sop, &first).await;
        scu.store_ct_ok(&sop, &second).await;
        scu.release().await;
        let inst = &rg.store.instances_of(&study).unwrap();
        assert_eq!(inst.len(), 1, "{policy}");
        let path = dir.path().join("var/spool").join(&inst[0].path);
        let (_, ds) = dataset_of(&path);
        assert_eq!(ds == first, expect_kept_first, "{policy}");
        let files: usize = walk_count(&dir.path().join("var/spool/objects"));
        assert_eq!(files, 1, "{policy}: the unused copy is deleted");
        rg.stop().await;
    }
}

fn walk_count(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            if e.path().is_dir() {
                walk_count(&e.path())
            } else {
                1
            }
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_late_instance_reopens_its_study_and_is_forwarded_too() {
    let (_dir, scp, cfg) = reading_site();
    let rg = start(&cfg).await;
    let study = uid(6);
    let send = |n: u32| {
        let study = study.clone();
        async move {
            let mut scu = Scu::ct01(cfg.dicom_port).await;
            let sop = format!("{study}.{n}");
            let ds = synthetic_instance(CT_IMAGE_STORAGE, &study, &sop, "CT", 500);
            scu.store_ct_ok(&sop, &ds).await;
            scu.release().await;
        }
    };
    send(1).await;
    wait_until("first instance forwarded", Duration::from_secs(20), || {
        scp.received().len() == 1
    });
    wait_until("study forwarded", Duration::from_secs(20), || {
        studies_in(&rg.store, StudyState::Forwarded, 10) == 1
    });
    send(2).await;
    assert_eq!(
        studies_in(&rg.store, StudyState::Receiving, 10),
        1,
        "re-opened"
    );
    wait_until("late instance forwarded", Duration::from_secs(20), || {
        scp.received().len() == 2
    });
    let events = event_kinds(&rg.store, &study);
    assert!(events.contains(&EventKind::Reopened), "{events:?}");
    rg.stop().await;
}

/// Receiving streams each PDU to the spool: a 200 MB instance from DCMTK storescu costs
/// readgate a few MB, not the instance (the README's "memory is bounded by one PDU").
#[test]
fn receiving_a_200_mb_instance_keeps_memory_bounded() {
    let big = big_instance(200);
    let (_dir, cfg) = no_reading_site();
    let mut daemon = Daemon::start(&cfg.write(), cfg.dicom_port);
    daemon.wait_for_port(cfg.dicom_port);
    std::thread::sleep(Duration::from_millis(200));
    let before = vm_hwm_kib(daemon.child.id());
    let mut storescu = dcmtk_scu("storescu", "CT01", &[], cfg.dicom_port);
    storescu.arg(&big);
    run_ok(&mut storescu, "storescu of a 200 MB instance");
    let after = vm_hwm_kib(daemon.child.id());
    daemon.assert_running();
    eprintln!("readgate VmHWM {before} KiB before, {after} KiB after a 200 MB instance");
    assert!(
        after < before + 16 * 1024,
        "peak RSS grew from {before} to {after} KiB receiving 200 MB"
    );
}
