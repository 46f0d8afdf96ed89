//! Cards: numbers, carriers, provinces, kinds, channels and statuses.

use super::error::{DomainError, Reason};

/// A mobile (11 digits, 1[3-9]…) or IoT (13 digits, 14…/10…) number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Msisdn(String);

fn msisdn_shape_ok(s: &str) -> bool {
    let b = s.as_bytes();
    if !b.iter().all(u8::is_ascii_digit) {
        return false;
    }
    match b.len() {
        11 => b[0] == b'1' && (b'3'..=b'9').contains(&b[1]),
        13 => b.starts_with(b"14") || b.starts_with(b"10"),
        _ => false,
    }
}

impl Msisdn {
    pub fn parse(raw: &str) -> Result<Msisdn, DomainError> {
        let bad = |m: String| DomainError::new(Reason::InvalidMsisdn, m);
        if raw.len() > 20 {
            return Err(bad("msisdn longer than 20 characters".into()));
        }
        let s = raw.trim();
        if s.is_empty() {
            return Err(bad("msisdn is empty".into()));
        }
        if msisdn_shape_ok(s) {
            return Ok(Msisdn(s.to_string()));
        }
        for prefix in ["+86", "86"] {
            if let Some(rest) = s.strip_prefix(prefix) {
                if msisdn_shape_ok(rest) {
                    return Ok(Msisdn(rest.to_string()));
                }
            }
        }
        Err(bad(format!(
            "msisdn '{s}' is neither an 11-digit mobile number (1[3-9]...) nor a 13-digit IoT number (14.../10...)"
        )))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A stored or requested number shown masked, if it is a number at all.
    pub fn mask(raw: &str) -> Option<String> {
        Msisdn::parse(raw).ok().map(|m| m.masked())
    }

    /// `138****5678`: enough for a person to recognise their number.
    pub fn masked(&self) -> String {
        let s = &self.0;
        format!("{}****{}", &s[..3], &s[s.len() - 4..])
    }
}

/// The basic carriers (基础电信企业), licensed province by province. Every
/// other carrier code is an MVNO (虚拟运营商), which sells nationwide.
pub const BASIC_CARRIERS: [&str; 4] = ["CMCC", "CUCC", "CTCC", "CBN"];

/// Whether the (already parsed) carrier code names an MVNO.
pub fn is_mvno(code: &str) -> bool {
    !BASIC_CARRIERS.contains(&code)
}

/// A carrier or MVNO code, e.g. CMCC, CUCC, CTCC, CBN.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Carrier(String);

impl Carrier {
    pub fn parse(raw: &str) -> Result<Carrier, DomainError> {
        let s = raw.trim().to_ascii_uppercase();
        if !(2..=16).contains(&s.len())
            || !s
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        {
            let shown: String = raw.chars().take(20).collect();
            return Err(DomainError::new(
                Reason::InvalidCarrier,
                format!("carrier '{shown}' must be 2 to 16 letters or digits"),
            ));
        }
        Ok(Carrier(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A province-level division by its GB/T 2260 two-digit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Province(u8);

const PROVINCES: [(u8, &str); 34] = [
    (11, "Beijing"),
    (12, "Tianjin"),
    (13, "Hebei"),
    (14, "Shanxi"),
    (15, "Inner Mongolia"),
    (21, "Liaoning"),
    (22, "Jilin"),
    (23, "Heilongjiang"),
    (31, "Shanghai"),
    (32, "Jiangsu"),
    (33, "Zhejiang"),
    (34, "Anhui"),
    (35, "Fujian"),
    (36, "Jiangxi"),
    (37, "Shandong"),
    (41, "Henan"),
    (42, "Hubei"),
    (43, "Hunan"),
    (44, "Guangdong"),
    (45, "Guangxi"),
    (46, "Hainan"),
    (50, "Chongqing"),
    (51, "Sichuan"),
    (52, "Guizhou"),
    (53, "Yunnan"),
    (54, "Tibet"),
    (61, "Shaanxi"),
    (62, "Gansu"),
    (63, "Qinghai"),
    (64, "Ningxia"),
    (65, "Xinjiang"),
    (71, "Taiwan"),
    (81, "Hong Kong"),
    (82, "Macau"),
];

impl Province {
    pub const ALL: [Province; 34] = {
        let mut out = [Province(0); 34];
        let mut i = 0;
        while i < 34 {
            out[i] = Province(PROVINCES[i].0);
            i += 1;
        }
        out
    };

    pub fn from_code(c: u8) -> Option<Province> {
        PROVINCES
            .iter()
            .any(|(p, _)| *p == c)
            .then_some(Province(c))
    }

    pub fn parse(raw: &str) -> Result<Province, DomainError> {
        let s = raw.trim();
        let bad = || {
            let shown: String = s.chars().take(8).collect();
            DomainError::new(
                Reason::InvalidProvince,
                format!("province '{shown}' is not a GB/T 2260 province code such as 11 or 44"),
            )
        };
        if s.len() != 2 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse::<u8>()
            .ok()
            .and_then(Province::from_code)
            .ok_or_else(bad)
    }

    pub fn code(self) -> u8 {
        self.0
    }

    pub fn name(self) -> &'static str {
        PROVINCES
            .iter()
            .find(|(c, _)| *c == self.0)
            .map(|(_, n)| *n)
            .unwrap_or("unknown")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CardKind {
    Personal,
    Iot,
}

impl CardKind {
    pub fn code(self) -> i32 {
        match self {
            CardKind::Personal => 1,
            CardKind::Iot => 2,
        }
    }

    pub fn from_code(c: i32) -> Option<CardKind> {
        match c {
            1 => Some(CardKind::Personal),
            2 => Some(CardKind::Iot),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    OwnHall,
    Agent,
    Online,
}

impl Channel {
    pub fn code(self) -> i32 {
        match self {
            Channel::OwnHall => 1,
            Channel::Agent => 2,
            Channel::Online => 3,
        }
    }

    pub fn from_code(c: i32) -> Option<Channel> {
        match c {
            1 => Some(Channel::OwnHall),
            2 => Some(Channel::Agent),
            3 => Some(Channel::Online),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_basic_carriers_and_everyone_else() {
        for basic in BASIC_CARRIERS {
            assert!(!is_mvno(Carrier::parse(basic).unwrap().as_str()), "{basic}");
        }
        for mvno in ["XIAOMI", "JD", "CMCC2"] {
            assert!(is_mvno(Carrier::parse(mvno).unwrap().as_str()), "{mvno}");
        }
        // Parsed codes are upper case: a lower-case basic carrier is one.
        assert!(!is_mvno(Carrier::parse("cmcc").unwrap().as_str()));
    }

    #[test]
    fn msisdn_forms() {
        assert_eq!(
            Msisdn::parse(" 13800138000 ").unwrap().as_str(),
            "13800138000"
        );
        assert_eq!(
            Msisdn::parse("+8613800138000").unwrap().as_str(),
            "13800138000"
        );
        assert_eq!(
            Msisdn::parse("8613800138000").unwrap().as_str(),
            "13800138000"
        );
        assert_eq!(
            Msisdn::parse("1440012345678").unwrap().as_str(),
            "1440012345678"
        );
        for bad in [
            "",
            "   ",
            "12800138000",
            "1380013800",
            "1380013800a",
            "23800138000",
            &"1".repeat(21),
        ] {
            let e = Msisdn::parse(bad).unwrap_err();
            assert_eq!(e.reason, Reason::InvalidMsisdn, "{bad}");
        }
        assert!(Msisdn::parse("").unwrap_err().message.contains("empty"));
        assert!(Msisdn::parse(&"1".repeat(40))
            .unwrap_err()
            .message
            .contains("longer"));
    }

    #[test]
    fn carriers_and_provinces() {
        assert_eq!(Carrier::parse(" cmcc ").unwrap().as_str(), "CMCC");
        assert!(Carrier::parse("C").is_err());
        assert!(Carrier::parse("C M").is_err());
        assert!(Carrier::parse(&"A".repeat(17)).is_err());
        assert_eq!(Province::parse("44").unwrap().name(), "Guangdong");
        for bad in ["", "4", "444", "99", "00", "1a", "+1"] {
            assert_eq!(
                Province::parse(bad).unwrap_err().reason,
                Reason::InvalidProvince,
                "{bad}"
            );
        }
        for p in Province::ALL {
            assert_eq!(Province::from_code(p.code()), Some(p));
            assert_eq!(Province::parse(&format!("{:02}", p.code())), Ok(p));
        }
    }

    #[test]
    fn enum_codes_round_trip() {
        for k in [CardKind::Personal, CardKind::Iot] {
            assert_eq!(CardKind::from_code(k.code()), Some(k));
        }
        for c in [Channel::OwnHall, Channel::Agent, Channel::Online] {
            assert_eq!(Channel::from_code(c.code()), Some(c));
        }
        assert_eq!(CardKind::from_code(0), None);
        assert_eq!(Channel::from_code(0), None);
    }

    proptest! {
        #[test]
        fn masked_hides_the_middle(n in "1[3-9][0-9]{9}") {
            let m = Msisdn::parse(&n).unwrap();
            let masked = m.masked();
            prop_assert_eq!(masked.len(), 11);
            prop_assert_eq!(&masked[..3], &n[..3]);
            prop_assert_eq!(&masked[3..7], "****");
            prop_assert_eq!(&masked[7..], &n[7..]);
        }

        #[test]
        fn msisdn_parse_never_panics_and_is_idempotent(s in "\\PC{0,30}") {
            if let Ok(m) = Msisdn::parse(&s) {
                prop_assert_eq!(Msisdn::parse(m.as_str()).unwrap(), m);
            }
        }
    }
}
