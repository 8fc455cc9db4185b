//! The language of a message: Japanese (the default everywhere) or English.

/// Language of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    Ja,
    En,
}

impl Lang {
    /// The text form (`ja`, `en`), as in `?lang=`, the `lang` cookie and `<html lang>`.
    pub fn as_str(self) -> &'static str {
        match self {
            Lang::Ja => "ja",
            Lang::En => "en",
        }
    }

    /// Picks the text of this language from a pair.
    pub fn pick<'a>(self, ja: &'a str, en: &'a str) -> &'a str {
        match self {
            Lang::Ja => ja,
            Lang::En => en,
        }
    }
}

impl std::fmt::Display for Lang {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Lang {
    // A plain message: the CLI and the REST API wrap it with the option's name.
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "ja" | "jp" | "japanese" => Ok(Lang::Ja),
            "en" | "english" => Ok(Lang::En),
            other => Err(format!("expected \"ja\" or \"en\", got {other:?}")),
        }
    }
}
