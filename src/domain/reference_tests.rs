//! Every validator against a slow reference written from the standards, not
//! from the code under test: GB 11643-1999 (resident ID, ISO 7064 MOD 11-2),
//! GB 32100-2015 (unified social credit code, MOD 31), the 2023 permanent
//! residence ID, MSISDN numbering, GB/T 2260 province codes and carrier
//! codes. Each reference is a plain reading of its rule; they share nothing
//! with the production code. Normalization must be idempotent: parsing a
//! normalized value gives it back unchanged.

use proptest::prelude::*;

use super::{Carrier, DocType, Identity, Msisdn, Province};

/// GB/T 2260 province-level codes, listed by region block.
fn reference_province(code: &str) -> bool {
    const BLOCKS: [&[u32]; 8] = [
        &[11, 12, 13, 14, 15],
        &[21, 22, 23],
        &[31, 32, 33, 34, 35, 36, 37],
        &[41, 42, 43, 44, 45, 46],
        &[50, 51, 52, 53, 54],
        &[61, 62, 63, 64, 65],
        &[71],
        &[81, 82],
    ];
    let digits: Vec<u32> = code.chars().filter_map(|c| c.to_digit(10)).collect();
    if code.chars().count() != 2 || digits.len() != 2 {
        return false;
    }
    let n = digits[0] * 10 + digits[1];
    BLOCKS.iter().any(|b| b.contains(&n))
}

/// Whether YYYYMMDD names a day from 1900-01-01 to 2100-12-31, found by
/// walking the Gregorian calendar day by day (slow, but obviously right).
fn reference_date(s: &str) -> bool {
    use std::collections::HashSet;
    use std::sync::OnceLock;
    static DAYS: OnceLock<HashSet<String>> = OnceLock::new();
    DAYS.get_or_init(|| {
        let mut all = HashSet::new();
        for y in 1900..=2100u32 {
            // February has 29 days in years divisible by 4, except
            // centuries, except centuries divisible by 400.
            let feb = if y % 400 == 0 {
                29
            } else if y % 100 == 0 {
                28
            } else if y % 4 == 0 {
                29
            } else {
                28
            };
            let lengths = [31, feb, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
            for (m, len) in lengths.iter().enumerate() {
                for d in 1..=*len {
                    all.insert(format!("{y:04}{:02}{d:02}", m + 1));
                }
            }
        }
        all
    })
    .contains(s)
}

/// ISO 7064 MOD 11-2: weights 2^(17-i) mod 11 from the left; the check
/// value c makes the weighted sum plus c ≡ 1 (mod 11); 10 is written X.
fn reference_mod11_2(body: &[u32]) -> char {
    let mut sum = 0;
    for (i, d) in body.iter().enumerate() {
        sum += d * (2u32.pow(17 - i as u32) % 11);
    }
    let c = (0..11).find(|c| (sum + c) % 11 == 1).unwrap_or(0);
    if c == 10 {
        'X'
    } else {
        char::from_digit(c, 10).unwrap_or('?')
    }
}

fn digits(s: &str) -> Option<Vec<u32>> {
    s.chars().map(|c| c.to_digit(10)).collect()
}

fn reference_resident_id(raw: &str) -> bool {
    let s = raw.trim().to_uppercase();
    let chars: Vec<char> = s.chars().collect();
    if chars.len() != 18 {
        return false;
    }
    let body: String = chars[..17].iter().collect();
    let Some(body_digits) = digits(&body) else {
        return false;
    };
    reference_province(&body[..2])
        && reference_date(&body[6..14])
        && reference_mod11_2(&body_digits) == chars[17]
}

/// GB 32100-2015: 31 characters (digits, then capitals without I O S V Z)
/// valued 0..30; weights 3^(i-1) mod 31; check value 31 - (sum mod 31),
/// with 31 written as 0.
fn reference_uscc(raw: &str) -> bool {
    let alphabet: Vec<char> = ('0'..='9')
        .chain(('A'..='Z').filter(|c| !"IOSVZ".contains(*c)))
        .collect();
    let s = raw.trim().to_uppercase();
    let values: Option<Vec<u32>> = s
        .chars()
        .map(|c| alphabet.iter().position(|a| *a == c).map(|p| p as u32))
        .collect();
    let Some(values) = values else {
        return false;
    };
    if values.len() != 18 {
        return false;
    }
    let sum: u32 = (0..17).map(|i| values[i] * (3u32.pow(i as u32) % 31)).sum();
    let check = match 31 - sum % 31 {
        31 => 0,
        c => c,
    };
    values[17] == check
}

/// Permanent residence ID: 2017 format, 3 letters and 12 digits; 2023
/// format, 18 characters starting with 9, MOD 11-2 checked. Spaces and
/// dashes are separators.
fn reference_permanent_resident(raw: &str) -> bool {
    let s: String = raw
        .trim()
        .chars()
        .filter(|c| *c != ' ' && *c != '-')
        .collect::<String>()
        .to_uppercase();
    let chars: Vec<char> = s.chars().collect();
    match chars.len() {
        15 => {
            chars[..3].iter().all(|c| c.is_ascii_uppercase())
                && chars[3..].iter().all(|c| c.is_ascii_digit())
        }
        18 => {
            let body: String = chars[..17].iter().collect();
            match digits(&body) {
                Some(d) => d[0] == 9 && reference_mod11_2(&d) == chars[17],
                None => false,
            }
        }
        _ => false,
    }
}

/// The national number a raw MSISDN names: 11-digit mobile (1, then 3-9)
/// or 13-digit IoT (14 or 10), optionally after +86 or 86; at most 20
/// characters as sent.
fn reference_msisdn(raw: &str) -> Option<String> {
    if raw.len() > 20 {
        return None;
    }
    let national = |s: &str| -> bool {
        let Some(d) = digits(s) else {
            return false;
        };
        match d.len() {
            11 => d[0] == 1 && (3..=9).contains(&d[1]),
            13 => d[0] == 1 && (d[1] == 4 || d[1] == 0),
            _ => false,
        }
    };
    let s = raw.trim();
    // The number as written first, then with one country code removed.
    std::iter::once(s)
        .chain(s.strip_prefix("+86"))
        .chain(s.strip_prefix("86"))
        .find(|c| national(c))
        .map(str::to_string)
}

fn reference_carrier(raw: &str) -> Option<String> {
    let s = raw.trim().to_uppercase();
    let n = s.chars().count();
    let ok = (2..=16).contains(&n)
        && s.chars()
            .all(|c| "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789".contains(c));
    ok.then_some(s)
}

/// A resident ID from parts, with the check character either right (by the
/// reference) or arbitrary, padded with spaces and maybe lower case.
fn resident_id_candidates() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            prop::sample::select(vec![11u32, 31, 44, 54, 65, 71, 82]),
            0u32..100
        ],
        0u32..10_000,
        1890u32..2110,
        0u32..14,
        0u32..33,
        0u32..1000,
        prop_oneof![Just(None), "[0-9xX]".prop_map(Some)],
        "[ ]{0,2}",
    )
        .prop_map(|(p, region, y, m, d, seq, check, pad)| {
            let body = format!("{p:02}{region:04}{y:04}{m:02}{d:02}{seq:03}");
            let body = &body[body.len() - 17..];
            let check = check.unwrap_or_else(|| match digits(body) {
                Some(ds) => reference_mod11_2(&ds).to_string().to_lowercase(),
                None => "0".into(),
            });
            format!("{pad}{body}{check}{pad}")
        })
}

fn uscc_candidates() -> impl Strategy<Value = String> {
    ("[0-9A-Za-z]{17}", "[0-9A-Z]", any::<bool>()).prop_map(|(body, any_check, right)| {
        if !right {
            return format!("{body}{any_check}");
        }
        // Try every possible check character; keep the one the reference
        // accepts (if the body is in the alphabet at all).
        let alphabet = "0123456789ABCDEFGHJKLMNPQRTUWXY";
        alphabet
            .chars()
            .map(|c| format!("{body}{c}"))
            .find(|s| reference_uscc(s))
            .unwrap_or(format!("{body}{any_check}"))
    })
}

fn parses(doc: DocType, s: &str) -> bool {
    Identity::parse(doc, s).is_ok()
}

/// Parsing a normalized number gives it back unchanged.
fn idempotent(doc: DocType, s: &str) -> Result<(), TestCaseError> {
    if let Ok(id) = Identity::parse(doc, s) {
        let again = Identity::parse(doc, id.number());
        prop_assert_eq!(again.as_ref().ok(), Some(&id), "{}", s);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn resident_ids_match_gb_11643(s in resident_id_candidates()) {
        prop_assert_eq!(parses(DocType::ResidentId, &s), reference_resident_id(&s), "{:?}", s);
        idempotent(DocType::ResidentId, &s)?;
    }

    #[test]
    fn credit_codes_match_gb_32100(s in uscc_candidates()) {
        prop_assert_eq!(
            parses(DocType::UnifiedSocialCreditCode, &s),
            reference_uscc(&s),
            "{:?}", s
        );
        idempotent(DocType::UnifiedSocialCreditCode, &s)?;
    }

    #[test]
    fn permanent_residence_ids_match_the_spec(
        s in prop_oneof![
            "[A-Za-z]{3}[0-9]{12}",
            "9[0-9]{16}[0-9X]",
            "[0-9]{3}[ -]?[0-9]{6}[ -]?[0-9]{9}",
            "[0-9A-Z -]{10,20}",
        ],
    ) {
        prop_assert_eq!(
            parses(DocType::ForeignPermanentResident, &s),
            reference_permanent_resident(&s),
            "{:?}", s
        );
        idempotent(DocType::ForeignPermanentResident, &s)?;
    }

    #[test]
    fn other_documents_normalize_idempotently(
        doc in prop::sample::select(vec![DocType::Passport, DocType::HkMacauPermit, DocType::TaiwanPermit]),
        s in "[ ]?[HMhm]?[0-9A-Za-z -]{4,16}[ ]?",
    ) {
        idempotent(doc, &s)?;
    }

    #[test]
    fn msisdns_match_the_numbering_plan(
        s in prop_oneof![
            "[ ]?(\\+86|86)?1[0-9][0-9]{9}[ ]?",
            "(\\+86|86)?1[04][0-9]{11}",
            "[+0-9 ]{0,22}",
        ],
    ) {
        let got = Msisdn::parse(&s).ok().map(|m| m.as_str().to_string());
        prop_assert_eq!(&got, &reference_msisdn(&s), "{:?}", s);
        if let Some(n) = got {
            prop_assert_eq!(Msisdn::parse(&n).ok().map(|m| m.as_str().to_string()), Some(n));
        }
    }

    #[test]
    fn carriers_match_the_spec(s in "[ ]?[A-Za-z0-9_é]{0,18}[ ]?") {
        let got = Carrier::parse(&s).ok().map(|c| c.as_str().to_string());
        prop_assert_eq!(&got, &reference_carrier(&s), "{:?}", s);
        if let Some(c) = got {
            prop_assert_eq!(Carrier::parse(&c).ok().map(|c| c.as_str().to_string()), Some(c));
        }
    }

    #[test]
    fn provinces_match_gb_t_2260(s in "[ ]?[0-9a]{1,3}[ ]?") {
        let got = Province::parse(&s).ok();
        prop_assert_eq!(got.is_some(), reference_province(s.trim()), "{:?}", s);
        if let Some(p) = got {
            prop_assert_eq!(Province::parse(&format!("{:02}", p.code())).ok(), Some(p));
        }
    }
}
