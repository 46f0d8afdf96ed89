//! Identity documents: normalization and validation per document type.

use super::card::Province;
use super::error::{DomainError, Reason};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DocType {
    ResidentId,
    Passport,
    HkMacauPermit,
    TaiwanPermit,
    ForeignPermanentResident,
    UnifiedSocialCreditCode,
}

impl DocType {
    pub const ALL: [DocType; 6] = [
        DocType::ResidentId,
        DocType::Passport,
        DocType::HkMacauPermit,
        DocType::TaiwanPermit,
        DocType::ForeignPermanentResident,
        DocType::UnifiedSocialCreditCode,
    ];

    /// Matches the proto enum values.
    pub fn code(self) -> u8 {
        match self {
            DocType::ResidentId => 1,
            DocType::Passport => 2,
            DocType::HkMacauPermit => 3,
            DocType::TaiwanPermit => 4,
            DocType::ForeignPermanentResident => 5,
            DocType::UnifiedSocialCreditCode => 6,
        }
    }

    pub fn from_code(c: i32) -> Option<DocType> {
        DocType::ALL.into_iter().find(|d| d.code() as i32 == c)
    }

    pub fn name(self) -> &'static str {
        match self {
            DocType::ResidentId => "resident ID",
            DocType::Passport => "passport",
            DocType::HkMacauPermit => "Hong Kong/Macau residents' permit",
            DocType::TaiwanPermit => "Taiwan residents' permit",
            DocType::ForeignPermanentResident => "foreigner permanent residence ID",
            DocType::UnifiedSocialCreditCode => "unified social credit code",
        }
    }
}

/// A validated identity; the number is normalized (trimmed, upper case).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    doc_type: DocType,
    number: String,
}

fn bad(message: impl Into<String>) -> DomainError {
    DomainError::new(Reason::InvalidId, message)
}

/// ISO 7064 MOD 11-2 check character over 17 digits (GB 11643-1999).
pub fn mod11_2_check(digits17: &[u8]) -> Option<char> {
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    if digits17.len() != 17 {
        return None;
    }
    let mut sum = 0u32;
    for (d, w) in digits17.iter().zip(W) {
        if !d.is_ascii_digit() {
            return None;
        }
        sum += u32::from(d - b'0') * w;
    }
    "10X98765432".chars().nth((sum % 11) as usize)
}

/// GB 32100-2015 alphabet: digits and upper-case letters without I, O, Z, S, V.
const USCC_ALPHABET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";

/// GB 32100-2015 check character over the first 17 characters.
pub fn uscc_check(body17: &[u8]) -> Option<char> {
    const W: [u32; 17] = [
        1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
    ];
    if body17.len() != 17 {
        return None;
    }
    let mut sum = 0u32;
    for (c, w) in body17.iter().zip(W) {
        let v = USCC_ALPHABET.iter().position(|a| a == c)? as u32;
        sum += v * w;
    }
    let check = (31 - sum % 31) % 31;
    Some(USCC_ALPHABET[check as usize] as char)
}

fn is_leap(y: u32) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

/// YYYYMMDD between 1900-01-01 and 2100-12-31 that names a real day.
fn valid_date(s: &str) -> bool {
    let (Ok(y), Ok(m), Ok(d)) = (
        s[0..4].parse::<u32>(),
        s[4..6].parse::<u32>(),
        s[6..8].parse::<u32>(),
    ) else {
        return false;
    };
    if !(1900..=2100).contains(&y) || !(1..=12).contains(&m) {
        return false;
    }
    let days = match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    (1..=days).contains(&d)
}

fn normalize(raw: &str, strip_separators: bool) -> String {
    let raw = raw.trim();
    // Sized once: collected char by char, the string was reallocated two or
    // three times per identity, and every imported row parses one on the
    // client and again on the leader.
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        if !(strip_separators && (c == ' ' || c == '-')) {
            out.push(c.to_ascii_uppercase());
        }
    }
    out
}

fn validate_resident_id(n: &str) -> Result<(), DomainError> {
    if n.len() == 15 && n.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(
            "15-digit first-generation resident IDs are not accepted; use the 18-character number",
        ));
    }
    if n.len() != 18 {
        return Err(bad(format!(
            "resident ID has {} characters, expected 18",
            n.chars().count()
        )));
    }
    let b = n.as_bytes();
    if !b[..17].iter().all(u8::is_ascii_digit) {
        return Err(bad("resident ID: the first 17 characters must be digits"));
    }
    let province = &n[0..2];
    if Province::parse(province).is_err() {
        return Err(bad(format!(
            "resident ID region {} is not a GB/T 2260 province code",
            &n[0..6]
        )));
    }
    if !valid_date(&n[6..14]) {
        return Err(bad(format!(
            "resident ID birth date {} is not a valid date",
            &n[6..14]
        )));
    }
    let expected = mod11_2_check(&b[..17]).ok_or_else(|| bad("resident ID body is not numeric"))?;
    let got = b[17] as char;
    if got != expected {
        return Err(bad(format!(
            "resident ID check character is {got}, expected {expected}"
        )));
    }
    Ok(())
}

fn validate(doc_type: DocType, n: &str) -> Result<(), DomainError> {
    let all = |f: fn(&u8) -> bool| n.as_bytes().iter().all(f);
    match doc_type {
        DocType::ResidentId => validate_resident_id(n),
        DocType::Passport => {
            if !(5..=17).contains(&n.len()) || !all(u8::is_ascii_alphanumeric) {
                return Err(bad("passport number must be 5 to 17 letters or digits"));
            }
            Ok(())
        }
        DocType::HkMacauPermit => {
            let b = n.as_bytes();
            let ok = (n.len() == 9 || n.len() == 11)
                && (b[0] == b'H' || b[0] == b'M')
                && b[1..].iter().all(u8::is_ascii_digit);
            if !ok {
                return Err(bad(
                    "Hong Kong/Macau permit number must be H or M followed by 8 or 10 digits",
                ));
            }
            Ok(())
        }
        DocType::TaiwanPermit => {
            if !((n.len() == 8 || n.len() == 10) && all(u8::is_ascii_digit)) {
                return Err(bad("Taiwan permit number must be 8 or 10 digits"));
            }
            Ok(())
        }
        DocType::ForeignPermanentResident => {
            let b = n.as_bytes();
            if n.len() == 15 {
                if !(b[..3].iter().all(u8::is_ascii_uppercase)
                    && b[3..].iter().all(u8::is_ascii_digit))
                {
                    return Err(bad(
                        "2017-format permanent residence ID must be 3 letters and 12 digits",
                    ));
                }
                return Ok(());
            }
            if n.len() == 18 {
                if b[0] != b'9' || !b[..17].iter().all(u8::is_ascii_digit) {
                    return Err(bad("2023-format permanent residence ID must start with 9 and have 17 digits before the check character"));
                }
                let expected = mod11_2_check(&b[..17]).ok_or_else(|| bad("not numeric"))?;
                if b[17] as char != expected {
                    return Err(bad(format!(
                        "permanent residence ID check character is {}, expected {expected}",
                        b[17] as char
                    )));
                }
                return Ok(());
            }
            Err(bad(format!(
                "permanent residence ID has {} characters, expected 15 or 18",
                n.chars().count()
            )))
        }
        DocType::UnifiedSocialCreditCode => {
            if n.len() != 18 {
                return Err(bad(format!(
                    "credit code has {} characters, expected 18",
                    n.chars().count()
                )));
            }
            let b = n.as_bytes();
            if let Some(c) = b.iter().find(|c| !USCC_ALPHABET.contains(c)) {
                return Err(bad(format!(
                    "credit code contains '{}', outside the GB 32100 alphabet",
                    *c as char
                )));
            }
            let expected = uscc_check(&b[..17]).ok_or_else(|| bad("credit code body invalid"))?;
            if b[17] as char != expected {
                return Err(bad(format!(
                    "credit code check character is {}, expected {expected}",
                    b[17] as char
                )));
            }
            Ok(())
        }
    }
}

impl Identity {
    pub fn parse(doc_type: DocType, raw: &str) -> Result<Identity, DomainError> {
        if raw.len() > 64 {
            return Err(bad("identity number longer than 64 bytes"));
        }
        let strip = !matches!(
            doc_type,
            DocType::ResidentId | DocType::UnifiedSocialCreditCode
        );
        let number = normalize(raw, strip);
        if number.is_empty() {
            return Err(bad("identity number is empty"));
        }
        if !number.is_ascii() {
            return Err(bad(format!(
                "{} number must be ASCII letters and digits",
                doc_type.name()
            )));
        }
        validate(doc_type, &number)?;
        Ok(Identity { doc_type, number })
    }

    pub fn doc_type(&self) -> DocType {
        self.doc_type
    }

    pub fn number(&self) -> &str {
        &self.number
    }

    pub fn last6(&self) -> &str {
        &self.number[self.number.len().saturating_sub(6)..]
    }

    /// `[doc type code] ‖ normalized number`: the input of the keyed hash.
    pub fn hash_input(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(1 + self.number.len());
        v.push(self.doc_type.code());
        v.extend_from_slice(self.number.as_bytes());
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Independent MOD 11-2: the check value c satisfies
    /// sum(a_i * 2^(18-i)) + c ≡ 1 (mod 11), with 2^k computed iteratively.
    fn reference_mod11_2(body: &str) -> char {
        let mut sum = 0u64;
        for (i, ch) in body.chars().enumerate() {
            let mut p = 1u64;
            for _ in 0..(17 - i) {
                p = p * 2 % 11;
            }
            sum += u64::from(ch.to_digit(10).unwrap()) * p;
        }
        let c = (12 - sum % 11) % 11;
        if c == 10 {
            'X'
        } else {
            char::from_digit(c as u32, 10).unwrap()
        }
    }

    #[test]
    fn known_resident_id() {
        let id = Identity::parse(DocType::ResidentId, " 11010519491231002x ").unwrap();
        assert_eq!(id.number(), "11010519491231002X");
        assert_eq!(id.last6(), "31002X");
        assert_eq!(id.hash_input()[0], 1);
    }

    #[test]
    fn resident_id_failures_say_why() {
        let cases = [
            ("110105194912310021", "check character is 1, expected X"),
            ("1101051949123100", "expected 18"),
            ("110105491231002", "15-digit"),
            ("110105194913310026", "birth date"),
            ("990105194912310021", "province"),
            ("11010519491231002A", "check character"),
            ("1101051949123100XX", "first 17"),
        ];
        for (n, want) in cases {
            let e = Identity::parse(DocType::ResidentId, n).unwrap_err();
            assert_eq!(e.reason, Reason::InvalidId);
            assert!(e.message.contains(want), "{n}: {}", e.message);
        }
    }

    #[test]
    fn leap_days() {
        assert!(valid_date("20000229"));
        assert!(!valid_date("19000229"));
        assert!(valid_date("20240229"));
        assert!(!valid_date("20230229"));
        assert!(!valid_date("18991231"));
    }

    #[test]
    fn other_documents() {
        assert!(Identity::parse(DocType::Passport, "e1234567-8").is_ok());
        assert!(Identity::parse(DocType::Passport, "E12").is_err());
        assert!(Identity::parse(DocType::HkMacauPermit, "H12345678").is_ok());
        assert!(Identity::parse(DocType::HkMacauPermit, "m1234567890").is_ok());
        assert!(Identity::parse(DocType::HkMacauPermit, "X12345678").is_err());
        assert!(Identity::parse(DocType::TaiwanPermit, "12345678").is_ok());
        assert!(Identity::parse(DocType::TaiwanPermit, "1234567").is_err());
        assert!(Identity::parse(DocType::ForeignPermanentResident, "USA123456789012").is_ok());
        let body = "91101519880101001";
        let full = format!("{body}{}", mod11_2_check(body.as_bytes()).unwrap());
        assert!(Identity::parse(DocType::ForeignPermanentResident, &full).is_ok());
        // A real-shaped credit code with its computed check character.
        let body = "91350100M000100Y4";
        let code = format!("{body}{}", uscc_check(body.as_bytes()).unwrap());
        assert!(Identity::parse(DocType::UnifiedSocialCreditCode, &code).is_ok());
        let e =
            Identity::parse(DocType::UnifiedSocialCreditCode, "91350100M000100YI3").unwrap_err();
        assert!(e.message.contains("alphabet"), "{}", e.message);
    }

    #[test]
    fn doc_type_codes() {
        for d in DocType::ALL {
            assert_eq!(DocType::from_code(d.code() as i32), Some(d));
        }
        assert_eq!(DocType::from_code(0), None);
        assert_eq!(DocType::from_code(7), None);
    }

    proptest! {
        #[test]
        fn resident_ids_agree_with_reference(region in 0usize..34, seq in 0u32..1000, year in 1900u32..2100, month in 1u32..13, day in 1u32..29, tail in "[0-9]{4}") {
            let p = Province::ALL[region].code();
            let body = format!("{p:02}{tail}{year:04}{month:02}{day:02}{seq:03}");
            let check = reference_mod11_2(&body);
            prop_assert_eq!(mod11_2_check(body.as_bytes()), Some(check));
            let id = Identity::parse(DocType::ResidentId, &format!("{body}{check}")).unwrap();
            // Normalization is idempotent.
            prop_assert_eq!(Identity::parse(DocType::ResidentId, id.number()).unwrap(), id.clone());
            // Any other check character is refused.
            for c in "0123456789X".chars().filter(|c| *c != check) {
                let wrong = format!("{body}{c}");
                prop_assert!(Identity::parse(DocType::ResidentId, &wrong).is_err());
            }
        }

        #[test]
        fn parse_never_panics(doc in 1i32..7, s in "\\PC{0,80}") {
            let _ = Identity::parse(DocType::from_code(doc).unwrap(), &s);
        }
    }
}
