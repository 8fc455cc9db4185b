//! Why a read study is not claimable: the ledger's reason codes. Codes are stable (stored
//! in reports, matched by the hospital's scripts): never renamed or reused. This catalogue
//! is the single list that `docs/ledger.md`'s table and the reports' texts come from.

pub use crate::model::Lang;

pub const NO_FINAL_REPORT: &str = "NO_FINAL_REPORT";
pub const SIGNER_NOT_FULL_TIME: &str = "SIGNER_NOT_FULL_TIME";
pub const SIGNER_NOT_BOARD_CERTIFIED: &str = "SIGNER_NOT_BOARD_CERTIFIED";
pub const PART_TIME_READ_OUTSIDE: &str = "PART_TIME_READ_OUTSIDE";
pub const TRAINEE_READ_OUTSIDE: &str = "TRAINEE_READ_OUTSIDE";
pub const FULL_TIME_READ_OUTSIDE: &str = "FULL_TIME_READ_OUTSIDE";
pub const FORMAL_CONFIRMATION: &str = "FORMAL_CONFIRMATION";
pub const NOT_RESPONSIBLE_FACILITY: &str = "NOT_RESPONSIBLE_FACILITY";
pub const UNKNOWN_READER: &str = "UNKNOWN_READER";
pub const UNKNOWN_PLACE: &str = "UNKNOWN_PLACE";
pub const FORWARDED_INCOMPLETE: &str = "FORWARDED_INCOMPLETE";
pub const RELEASED_OVERRIDE: &str = "RELEASED_OVERRIDE";
pub const NOT_FORWARDED: &str = "NOT_FORWARDED";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerReason {
    pub code: &'static str,
    pub clause: &'static str,
    pub meaning_en: &'static str,
    pub meaning_ja: &'static str,
    pub todo_en: &'static str,
    pub todo_ja: &'static str,
}

impl LedgerReason {
    pub fn meaning(&self, lang: Lang) -> &'static str {
        match lang {
            Lang::Ja => self.meaning_ja,
            Lang::En => self.meaning_en,
        }
    }
    pub fn todo(&self, lang: Lang) -> &'static str {
        match lang {
            Lang::Ja => self.todo_ja,
            Lang::En => self.todo_en,
        }
    }
}

const CATALOGUE: &[LedgerReason] = &[
    LedgerReason {
        code: NO_FINAL_REPORT,
        clause: "ATS-4",
        meaning_en: "No final (F) or corrected (C) report and no `final`/`confirmed` read event: the reading is not finished, so nothing can be claimed yet.",
        meaning_ja: "確定報告（F/C）も確定の読影イベントもありません。読影が完了していないため、まだ算定できません。",
        todo_en: "Wait for the final report; if it was signed, make the reading system send the ORU^R01 with OBR-25 = F (or the `final` event).",
        todo_ja: "確定報告を待ってください。確定済みなら、読影システムから OBR-25 = F の ORU^R01（または final イベント）を送らせてください。",
    },
    LedgerReason {
        code: SIGNER_NOT_FULL_TIME,
        clause: "ATS-3",
        meaning_en: "The final report was signed by a part-time reader or a trainee: the add-on requires the receiving facility's full-time (常勤) radiologists.",
        meaning_ja: "確定報告の署名者が常勤医ではありません（非常勤医・研修医）。加算には受信側の常勤放射線科医による読影が必要です。",
        todo_en: "Have a full-time radiologist of the responsible facility confirm the report substantively (ATS-3-note1), or do not claim the add-on.",
        todo_ja: "責任施設の常勤医が実質的に確認・確定する（ATS-3 注1）か、加算を請求しないでください。",
    },
    LedgerReason {
        code: SIGNER_NOT_BOARD_CERTIFIED,
        clause: "JRS-8.1",
        meaning_en: "The signer is not recorded as a board-certified diagnostic radiologist (放射線診断専門医).",
        meaning_ja: "署名者が放射線診断専門医として登録されていません。",
        todo_en: "Check the roster (`board_certified`); if the signer is certified, correct it and run the report again; otherwise the report must be signed by a certified radiologist.",
        todo_ja: "名簿（board_certified）を確認してください。専門医なら名簿を修正して再集計し、そうでなければ専門医の署名が必要です。",
    },
    LedgerReason {
        code: PART_TIME_READ_OUTSIDE,
        clause: "ATS-3",
        meaning_en: "A part-time reader took part in reading this study from outside the receiving facility (network or workstation not listed as inside).",
        meaning_ja: "非常勤医が受信施設の外（施設内として登録されていないネットワーク・端末）から読影に関与しました。",
        todo_en: "Not claimable. Part-time readers must read inside the receiving facility; check the reading system's remote access.",
        todo_ja: "算定できません。非常勤医は受信施設内で読影する必要があります。読影システムの院外アクセスを確認してください。",
    },
    LedgerReason {
        code: TRAINEE_READ_OUTSIDE,
        clause: "ATS-3",
        meaning_en: "A trainee took part in reading this study from outside the receiving facility.",
        meaning_ja: "研修医（専攻医）が受信施設の外から読影に関与しました。",
        todo_en: "Not claimable. Trainees' reports count only when written inside the facility's own work and confirmed by a full-time radiologist.",
        todo_ja: "算定できません。研修医の報告書は施設内の自施設業務として作成され、常勤医が確定した場合に限り認められます。",
    },
    LedgerReason {
        code: FULL_TIME_READ_OUTSIDE,
        clause: "ATS-3",
        meaning_en: "A full-time radiologist read from outside the facility and the policy (`ledger.full_time_remote_eligible = false`) does not count such reads.",
        meaning_ja: "常勤医が施設外から読影しました。ポリシー（ledger.full_time_remote_eligible = false）では施設外読影を算定対象としていません。",
        todo_en: "If the read met the conditions for remote reading by full-time staff (e.g. night/holiday), the hospital may set `full_time_remote_eligible = true` after review.",
        todo_ja: "夜間・休日等、常勤医の院外読影の要件を満たす場合は、確認の上で full_time_remote_eligible = true とできます。",
    },
    LedgerReason {
        code: FORMAL_CONFIRMATION,
        clause: "ATS-3-note1",
        meaning_en: "Another reader's report was confirmed formally: text unchanged and the confirmer had the images open too briefly (or not at all), or the sign-off was one of a burst.",
        meaning_ja: "他の読影医の報告書が形式的に確定されました（本文の変更がなく画像の閲覧がない・短すぎる、または短時間の連続確定）。",
        todo_en: "Not claimable as it stands. The confirmer must compare images and report and be able to prove it with logs (opened/closed events).",
        todo_ja: "このままでは算定できません。確定医が画像と報告書を照合し、ログ（開始・終了イベント）で証明できる必要があります。",
    },
    LedgerReason {
        code: NOT_RESPONSIBLE_FACILITY,
        clause: "ATS-4",
        meaning_en: "A reader of a facility other than the one the study's route made responsible took part in reading it.",
        meaning_ja: "ルートで責任施設とされた施設以外の読影医が読影に関与しました。",
        todo_en: "Clarify the responsibility split between receiving facilities (routes) or correct the roster's facility.",
        todo_ja: "受信施設間の責任分担（ルート）を明確にするか、名簿の所属施設を修正してください。",
    },
    LedgerReason {
        code: UNKNOWN_READER,
        clause: "ATS-4",
        meaning_en: "A reader id (OBR-32/33 or a read event) is not in the roster valid on that day: who read, as what, cannot be shown.",
        meaning_ja: "読影医IDが当日有効な名簿にありません。誰がどの立場で読影したかを示せません。",
        todo_en: "Add the reader to the roster (`[[ledger.readers]]` or `readgate roster import`) with employment, facility and validity, then run the report again.",
        todo_ja: "名簿に読影医（雇用形態・所属・有効期間）を追加（[[ledger.readers]] または readgate roster import）して再集計してください。",
    },
    LedgerReason {
        code: UNKNOWN_PLACE,
        clause: "ATS-3",
        meaning_en: "For a reader who wrote or signed the report, no read event says where the reading happened: inside cannot be proven.",
        meaning_ja: "報告書の作成・署名者について、読影場所を示すイベントがありません。施設内であることを証明できません。",
        todo_en: "Make the reading system send read events with `client_ip`/`workstation`, and list the facility's networks and workstations in `[[ledger.places]]`.",
        todo_ja: "読影システムから client_ip / workstation 付きの読影イベントを送らせ、[[ledger.places]] に施設のネットワークと端末を登録してください。",
    },
    LedgerReason {
        code: FORWARDED_INCOMPLETE,
        clause: "JRS-7.3.1",
        meaning_en: "The study was forwarded without the full clinical context (STAT, forwarded flagged): the reader did not have what the guideline requires.",
        meaning_ja: "臨床情報が揃わないまま送信されました（緊急のため送信）。指針が求める情報が読影医に提供されていません。",
        todo_en: "Review the case; supply the missing context to the reader and document it before claiming.",
        todo_ja: "症例を確認し、不足情報を読影医に提供して記録してから請求を検討してください。",
    },
    LedgerReason {
        code: RELEASED_OVERRIDE,
        clause: "JRS-7.3.1",
        meaning_en: "The study was held for missing context and released by an operator override (who and why are listed).",
        meaning_ja: "臨床情報不足で保留された検査が、操作者の判断で送信されました（実施者と理由を記載）。",
        todo_en: "Review the override's justification; claim only when the context was in fact available to the reader.",
        todo_ja: "送信理由を確認し、読影医が実際に情報を得られた場合に限り請求してください。",
    },
    LedgerReason {
        code: NOT_FORWARDED,
        clause: "ATS-4",
        meaning_en: "Read events or reports exist, but readgate has not delivered the study to the reading facility (held, rejected, failed or still queued).",
        meaning_ja: "読影記録がありますが、readgate から読影施設への送信が完了していません（保留・却下・失敗・送信待ち）。",
        todo_en: "Check `readgate studies`: how did the reading facility get the images?",
        todo_ja: "readgate studies で状態を確認してください。読影施設はどの経路で画像を得たのでしょうか。",
    },
];

pub fn catalogue() -> &'static [LedgerReason] {
    CATALOGUE
}

pub fn find(code: &str) -> Option<&'static LedgerReason> {
    CATALOGUE.iter().find(|r| r.code == code)
}

/// The reason table of `docs/ledger.md` (a unit test keeps the doc in sync).
pub fn markdown_table() -> String {
    let mut out =
        String::from("| code | clause | meaning | what to do | 意味 |\n|---|---|---|---|---|\n");
    for r in CATALOGUE {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            r.code, r.clause, r.meaning_en, r.todo_en, r.meaning_ja
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn docs_table_is_current() {
        let doc = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/ledger.md"),
        )
        .unwrap_or_default();
        if !doc.contains(&super::markdown_table()) {
            eprintln!("{}", super::markdown_table());
        }
        assert!(
            doc.contains(&super::markdown_table()),
            "docs/ledger.md is out of date: paste reasons::markdown_table() into it"
        );
    }

    #[test]
    fn codes_are_unique() {
        let mut codes: Vec<_> = super::catalogue().iter().map(|r| r.code).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), super::catalogue().len());
    }
}
