//! Hashes, tokens and their hex form: SHA-256 digests of API tokens, report files and
//! audit entries are all written as lower-case hex. A foundation module: it imports
//! nothing of readgate.

use sha2::{Digest, Sha256};

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The 32 bytes that exactly 64 hex digits (either case) stand for; `None` for anything
/// else, blanks and signs included.
pub fn parse_sha256_hex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Hex SHA-256 of `bytes` (a token, a report file).
pub fn sha256_hex(bytes: impl AsRef<[u8]>) -> String {
    hex(&Sha256::digest(bytes.as_ref()))
}

/// `N` bytes from the OS's random source: tokens, session ids, salts.
pub fn random_bytes<const N: usize>() -> std::io::Result<[u8; N]> {
    use std::io::Read;
    let mut bytes = [0u8; N];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// A new random token (`rg_` and 32 bytes from the OS, hex) and its SHA-256.
pub fn new_token() -> std::io::Result<(String, String)> {
    let bytes: [u8; 32] = random_bytes()?;
    let token = format!("rg_{}", hex(&bytes));
    let hash = sha256_hex(&token);
    Ok((token, hash))
}

/// Constant-time equality of two digests.
pub fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let mut d = 0u8;
    for i in 0..32 {
        d |= a[i] ^ b[i];
    }
    std::hint::black_box(d) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let h = sha256_hex("abc");
        assert_eq!(
            h,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(parse_sha256_hex(&h).map(|b| hex(&b)), Some(h.clone()));
        assert_eq!(parse_sha256_hex("xyz"), None);
        assert_eq!(parse_sha256_hex(&format!("+{}", &h[1..])), None);
        assert_eq!(
            parse_sha256_hex(&h.to_uppercase()).map(|b| hex(&b)),
            Some(h.clone())
        );
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let (a, ha) = new_token().unwrap();
        let (b, _) = new_token().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("rg_") && a.len() == 67);
        assert_eq!(sha256_hex(&a), ha);
        assert!(ct_eq(&[7; 32], &[7; 32]) && !ct_eq(&[7; 32], &[8; 32]));
    }
}
