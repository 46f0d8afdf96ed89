//! Generated sample data: valid identities and numbers in realistic shapes.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::domain::{DocType, Identity, Province};

/// Carriers with rough national market shares (percent).
pub const CARRIERS: [(&str, u32); 4] = [("CMCC", 58), ("CTCC", 24), ("CUCC", 17), ("CBN", 1)];

/// A valid mainland resident ID for the given 17-character body: the check
/// character is found by asking the validator, so sample data can never
/// disagree with the rules.
pub fn complete_resident_id(body17: &str) -> Option<Identity> {
    "0123456789X"
        .chars()
        .find_map(|c| Identity::parse(DocType::ResidentId, &format!("{body17}{c}")).ok())
}

pub struct SampleGen {
    rng: StdRng,
}

impl SampleGen {
    pub fn new(seed: u64) -> SampleGen {
        SampleGen {
            rng: StdRng::seed_from_u64(seed),
        }
    }

    pub fn province(&mut self) -> Province {
        let all = Province::ALL;
        all[self.rng.gen_range(0..all.len())]
    }

    pub fn identity(&mut self) -> Identity {
        loop {
            let p = self.province().code();
            let body = format!(
                "{p:02}{:04}{:04}{:02}{:02}{:03}",
                self.rng.gen_range(100..9999),
                self.rng.gen_range(1950..2006),
                self.rng.gen_range(1..13),
                self.rng.gen_range(1..29),
                self.rng.gen_range(0..1000)
            );
            if let Some(id) = complete_resident_id(&body) {
                return id;
            }
        }
    }

    /// A unit's unified social credit code (an enterprise registered in a
    /// random region), with its GB 32100 check character.
    pub fn unit(&mut self) -> Identity {
        loop {
            let body = format!(
                "91{:02}{:04}{:09}",
                self.province().code(),
                self.rng.gen_range(100..9999),
                self.rng.gen_range(0..1_000_000_000u64)
            );
            if let Some(check) = crate::domain::identity::uscc_check(body.as_bytes()) {
                let code = format!("{body}{check}");
                if let Ok(id) = Identity::parse(DocType::UnifiedSocialCreditCode, &code) {
                    return id;
                }
            }
        }
    }

    pub fn carrier(&mut self) -> &'static str {
        let mut roll = self.rng.gen_range(0..100);
        for (name, share) in CARRIERS {
            if roll < share {
                return name;
            }
            roll -= share;
        }
        CARRIERS[0].0
    }

    /// A mobile number; uniqueness is the caller's business (use `serial`).
    pub fn msisdn(&mut self, serial: u64) -> String {
        let prefixes = [
            "135", "138", "139", "150", "186", "189", "133", "177", "199",
        ];
        let p = prefixes[self.rng.gen_range(0..prefixes.len())];
        format!("{p}{:08}", serial % 100_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_identities_are_valid_and_deterministic() {
        let mut a = SampleGen::new(1);
        let mut b = SampleGen::new(1);
        for _ in 0..200 {
            let x = a.identity();
            assert_eq!(x, b.identity());
            assert_eq!(Identity::parse(DocType::ResidentId, x.number()).unwrap(), x);
        }
    }

    #[test]
    fn known_id_completes() {
        assert_eq!(
            complete_resident_id("11010519491231002").unwrap().number(),
            "11010519491231002X"
        );
    }
}
