//! Why a read study is not claimable: the ledger's reason codes. Codes are stable (stored
//! in reports, matched by the hospital's scripts): never renamed or reused. This catalogue
//! is the single list that `docs/ledger.md`'s table and the reports' texts come from.

use crate::i18n::{EN, JA};
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
        lang.pick(self.meaning_ja, self.meaning_en)
    }
    pub fn todo(&self, lang: Lang) -> &'static str {
        lang.pick(self.todo_ja, self.todo_en)
    }
}

const CATALOGUE: &[LedgerReason] = &[
    LedgerReason {
        code: NO_FINAL_REPORT,
        clause: "ATS-4",
        meaning_en: EN.ledger_no_final_report_meaning,
        meaning_ja: JA.ledger_no_final_report_meaning,
        todo_en: EN.ledger_no_final_report_todo,
        todo_ja: JA.ledger_no_final_report_todo,
    },
    LedgerReason {
        code: SIGNER_NOT_FULL_TIME,
        clause: "ATS-3",
        meaning_en: EN.ledger_signer_not_full_time_meaning,
        meaning_ja: JA.ledger_signer_not_full_time_meaning,
        todo_en: EN.ledger_signer_not_full_time_todo,
        todo_ja: JA.ledger_signer_not_full_time_todo,
    },
    LedgerReason {
        code: SIGNER_NOT_BOARD_CERTIFIED,
        clause: "JRS-8.1",
        meaning_en: EN.ledger_signer_not_board_certified_meaning,
        meaning_ja: JA.ledger_signer_not_board_certified_meaning,
        todo_en: EN.ledger_signer_not_board_certified_todo,
        todo_ja: JA.ledger_signer_not_board_certified_todo,
    },
    LedgerReason {
        code: PART_TIME_READ_OUTSIDE,
        clause: "ATS-3",
        meaning_en: EN.ledger_part_time_read_outside_meaning,
        meaning_ja: JA.ledger_part_time_read_outside_meaning,
        todo_en: EN.ledger_part_time_read_outside_todo,
        todo_ja: JA.ledger_part_time_read_outside_todo,
    },
    LedgerReason {
        code: TRAINEE_READ_OUTSIDE,
        clause: "ATS-3",
        meaning_en: EN.ledger_trainee_read_outside_meaning,
        meaning_ja: JA.ledger_trainee_read_outside_meaning,
        todo_en: EN.ledger_trainee_read_outside_todo,
        todo_ja: JA.ledger_trainee_read_outside_todo,
    },
    LedgerReason {
        code: FULL_TIME_READ_OUTSIDE,
        clause: "ATS-3",
        meaning_en: EN.ledger_full_time_read_outside_meaning,
        meaning_ja: JA.ledger_full_time_read_outside_meaning,
        todo_en: EN.ledger_full_time_read_outside_todo,
        todo_ja: JA.ledger_full_time_read_outside_todo,
    },
    LedgerReason {
        code: FORMAL_CONFIRMATION,
        clause: "ATS-3-note1",
        meaning_en: EN.ledger_formal_confirmation_meaning,
        meaning_ja: JA.ledger_formal_confirmation_meaning,
        todo_en: EN.ledger_formal_confirmation_todo,
        todo_ja: JA.ledger_formal_confirmation_todo,
    },
    LedgerReason {
        code: NOT_RESPONSIBLE_FACILITY,
        clause: "ATS-4",
        meaning_en: EN.ledger_not_responsible_facility_meaning,
        meaning_ja: JA.ledger_not_responsible_facility_meaning,
        todo_en: EN.ledger_not_responsible_facility_todo,
        todo_ja: JA.ledger_not_responsible_facility_todo,
    },
    LedgerReason {
        code: UNKNOWN_READER,
        clause: "ATS-4",
        meaning_en: EN.ledger_unknown_reader_meaning,
        meaning_ja: JA.ledger_unknown_reader_meaning,
        todo_en: EN.ledger_unknown_reader_todo,
        todo_ja: JA.ledger_unknown_reader_todo,
    },
    LedgerReason {
        code: UNKNOWN_PLACE,
        clause: "ATS-3",
        meaning_en: EN.ledger_unknown_place_meaning,
        meaning_ja: JA.ledger_unknown_place_meaning,
        todo_en: EN.ledger_unknown_place_todo,
        todo_ja: JA.ledger_unknown_place_todo,
    },
    LedgerReason {
        code: FORWARDED_INCOMPLETE,
        clause: "JRS-7.3.1",
        meaning_en: EN.ledger_forwarded_incomplete_meaning,
        meaning_ja: JA.ledger_forwarded_incomplete_meaning,
        todo_en: EN.ledger_forwarded_incomplete_todo,
        todo_ja: JA.ledger_forwarded_incomplete_todo,
    },
    LedgerReason {
        code: RELEASED_OVERRIDE,
        clause: "JRS-7.3.1",
        meaning_en: EN.ledger_released_override_meaning,
        meaning_ja: JA.ledger_released_override_meaning,
        todo_en: EN.ledger_released_override_todo,
        todo_ja: JA.ledger_released_override_todo,
    },
    LedgerReason {
        code: NOT_FORWARDED,
        clause: "ATS-4",
        meaning_en: EN.ledger_not_forwarded_meaning,
        meaning_ja: JA.ledger_not_forwarded_meaning,
        todo_en: EN.ledger_not_forwarded_todo,
        todo_ja: JA.ledger_not_forwarded_todo,
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
