//! The one rewrite neutral SQL needs for PostgreSQL: SQLite's `?1`, `?2` … (and bare `?`)
//! placeholders become `$1`, `$2` …. String literals, quoted identifiers and comments are
//! left alone. Written by hand: it is a small scanner, and no SQL crate does only this.

/// `sql` with PostgreSQL's placeholders.
pub fn to_postgres(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    let mut next_bare = 1;
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                out.push(c);
                for d in chars.by_ref() {
                    out.push(d);
                    if d == c {
                        break;
                    }
                }
            }
            '-' if chars.peek() == Some(&'-') => {
                out.push(c);
                for d in chars.by_ref() {
                    out.push(d);
                    if d == '\n' {
                        break;
                    }
                }
            }
            '?' => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                    digits.push(d);
                    chars.next();
                }
                out.push('$');
                if digits.is_empty() {
                    out.push_str(&next_bare.to_string());
                    next_bare += 1;
                } else {
                    out.push_str(&digits);
                }
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::to_postgres;

    #[test]
    fn placeholders_are_numbered_and_literals_kept() {
        assert_eq!(
            to_postgres("SELECT a FROM t WHERE b = ?1 AND c = ?12 AND d = '?1' AND \"?\" = ?"),
            "SELECT a FROM t WHERE b = $1 AND c = $12 AND d = '?1' AND \"?\" = $1"
        );
        assert_eq!(to_postgres("-- why?\nSELECT ?"), "-- why?\nSELECT $1");
        assert_eq!(to_postgres("a = ? AND b = ?"), "a = $1 AND b = $2");
    }
}
