//! HL7 context reaches the decision stage: a held study is evaluated again when an order
//! about it arrives (order after images), and an order that arrived first is on file
//! when the images come (order before images).

mod common;

use common::hl7::send_hl7;
use common::*;
use readgate::decide::context::StudyContext;
use readgate::decide::{Decide, Decision, Verdict};
use readgate::model::{EventKind, StudyState};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Holds every study until it has been evaluated `hold_first` times: stands in for a
/// policy that is satisfied once context arrives.
struct HoldUntilAsked {
    evaluations: AtomicUsize,
    hold_first: usize,
}

impl Decide for HoldUntilAsked {
    fn decide(&self, _study: &StudyContext) -> Decision {
        let n = self.evaluations.fetch_add(1, Ordering::SeqCst);
        let waiting = ("TEST", "waiting for the order", "オーダ待ち");
        if n < self.hold_first {
            rc1_decision("context arrived", Verdict::Hold, Some(waiting))
        } else {
            rc1_decision("context arrived", Verdict::Pass, None)
        }
    }
}

fn order(accession: &str, study_uid: &str, control_id: &str) -> Vec<u8> {
    format!(
        "MSH|^~\\&|RIS|HOSP|READGATE|RAD|20240601090000||ORM^O01|{control_id}|P|2.3.1\r\
         PID|||P-77^^^HOSP^MR||TEST^PATIENT\r\
         ORC|NW|PL-77|FL-77||SC||^^^^^R||20240601090000|||9001^SMITH^JOHN||555-0100\r\
         OBR|1|PL-77|FL-77|CTCHEST^CT chest^LOCAL|||||||||cough for 3 weeks|||9001^SMITH^JOHN|555-0100|{accession}||||||CT|||^^^^^R||||^rule out pneumonia\r\
         ZDS|{study_uid}^100^Application^DICOM\r"
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_order_after_the_images_releases_a_held_study() {
    let (_dir, scp, mut cfg) = reading_site();
    cfg.extra = "[hl7]\nlisten = \"127.0.0.1:0\"\n".into();
    let decider = Arc::new(HoldUntilAsked {
        evaluations: AtomicUsize::new(0),
        hold_first: 1,
    });
    let rg = readgate::serve::start_with(cfg.parse(), Some(decider.clone()))
        .await
        .unwrap();
    let hl7 = rg.hl7_addr.expect("HL7 listener");

    let study = "1.2.826.0.1.3680043.10.1234.99";
    let mut scu = Scu::ct01(cfg.dicom_port).await;
    let sop = format!("{study}.1");
    let ds = synthetic_instance(CT_IMAGE_STORAGE, study, &sop, "CT", 2000);
    scu.store_ct_ok(&sop, &ds).await;
    scu.release().await;
    wait_until("study held", Duration::from_secs(10), || {
        studies_in(&rg.store, StudyState::Held, 10) == 1
    });

    // An unrelated order changes nothing: held studies are re-opened in the transaction
    // that stores the message, before its ACK, so after the ACK the study is still held
    // and has no `context` event.
    let ack = send_hl7(hl7, &order("OTHER-1", "1.2.3.4.5", "C1")).await;
    assert!(ack.contains("MSA|AA|C1"), "{ack}");
    assert_eq!(studies_in(&rg.store, StudyState::Held, 10), 1);
    let events = rg.store.events_of(study).unwrap();
    assert!(
        !events.iter().any(|e| e.kind == EventKind::Context),
        "{events:?}"
    );
    assert_eq!(decider.evaluations.load(Ordering::SeqCst), 1);

    // The order for this study (matched by accession ACC0001 from the image) releases it.
    let ack = send_hl7(hl7, &order("ACC0001", "9.9.9", "C2")).await;
    assert!(ack.contains("MSA|AA|C2"), "{ack}");
    wait_until("study forwarded", Duration::from_secs(20), || {
        scp.received().contains(&sop)
    });
    let kinds = event_kinds(&rg.store, study);
    assert!(kinds.contains(&EventKind::Context), "{kinds:?}");

    // The same message again (same sender, same MSH-10): the same ACK, no second effect.
    let again = send_hl7(hl7, &order("ACC0001", "9.9.9", "C2")).await;
    assert_eq!(again, ack);
    let view = readgate::intake::view::StudyView::load(&rg.store, "ACC0001").unwrap();
    assert_eq!(view.orders.len(), 1);
    assert_eq!(view.study_uid.as_deref(), Some(study));
    rg.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_order_before_the_images_is_on_file_when_they_come() {
    let (_dir, mut cfg) = no_reading_site();
    cfg.extra = "[hl7]\nlisten = \"127.0.0.1:0\"\n".into();
    cfg.stable_after_secs = 3600;
    let rg = readgate::serve::start(cfg.parse()).await.unwrap();
    let hl7 = rg.hl7_addr.unwrap();
    let study = "1.2.826.0.1.3680043.10.1234.100";
    let ack = send_hl7(hl7, &order("ACC-B1", study, "B1")).await;
    assert!(ack.contains("MSA|AA|B1"));
    let before = readgate::intake::view::StudyView::load(&rg.store, "ACC-B1").unwrap();
    assert!(before.study_uid.is_none());
    assert_eq!(before.orders.len(), 1);
    let mut scu = Scu::ct01(cfg.dicom_port).await;
    let sop = format!("{study}.1");
    let ds = synthetic_instance(CT_IMAGE_STORAGE, study, &sop, "CT", 100);
    scu.store_ct_ok(&sop, &ds).await;
    scu.release().await;
    // matched by the study instance UID the order carried (ZDS-1)
    let after = readgate::intake::view::StudyView::load(&rg.store, study).unwrap();
    assert_eq!(after.study_uid.as_deref(), Some(study));
    assert_eq!(after.orders.len(), 1);
    let text = after.to_text();
    assert!(
        text.contains("rule out pneumonia") && text.contains("555-0100"),
        "{text}"
    );
    rg.stop().await;
}
