//! `oneid gen`: realistic national-scale import files. Carriers follow
//! market shares, most cards sit in the holder's home province, most people
//! hold one to three cards, and nobody exceeds the limit of 5 per
//! carrier-province except through the carrier's own hall with strict
//! verification, as the rule requires.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{anyhow, Context};
use clap::Args;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::rows::{Format, Row, CSV_HEADER};
use super::sample::SampleGen;

#[derive(Args, Debug)]
pub struct GenArgs {
    /// Output file: .csv or .jsonl.
    #[arg(long)]
    pub out: PathBuf,
    /// Cards to generate.
    #[arg(long, default_value_t = 1_000_000)]
    pub cards: u64,
    /// Cards per identity on average (10 M cards over ~4 M IDs is 2.5).
    #[arg(long, default_value_t = 2.5)]
    pub cards_per_id: f64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Serial of the first phone number; files meant to be imported into one
    /// cluster need disjoint serial ranges (numbers are unique per serial).
    #[arg(long, default_value_t = 0)]
    pub first_serial: u64,
}

/// How many cards one person holds: mostly 1-3, a long thin tail.
fn cards_for_person(rng: &mut StdRng, mean: f64) -> u64 {
    // Geometric with the requested mean (>= 1).
    let p = 1.0 / mean.max(1.0);
    let mut n = 1;
    while n < 12 && rng.gen_bool(1.0 - p) {
        n += 1;
    }
    n
}

pub fn run(a: GenArgs) -> anyhow::Result<()> {
    let format =
        Format::from_path(&a.out).ok_or_else(|| anyhow!("--out must end in .csv or .jsonl"))?;
    anyhow::ensure!(a.cards_per_id >= 1.0, "--cards-per-id must be at least 1");
    let file = std::fs::File::create(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    if format == Format::Csv {
        writeln!(out, "{CSV_HEADER}")?;
    }
    let mut sample = SampleGen::new(a.seed);
    let mut rng = StdRng::seed_from_u64(a.seed ^ 0x5eed);
    let (mut written, mut ids) = (0u64, 0u64);
    while written < a.cards {
        let identity = sample.identity();
        let home = identity.number()[..2].to_string();
        ids += 1;
        let mut held: HashMap<(&'static str, String), u32> = HashMap::new();
        for _ in 0..cards_for_person(&mut rng, a.cards_per_id).min(a.cards - written) {
            let carrier = sample.carrier();
            let province = if rng.gen_bool(0.9) {
                home.clone()
            } else {
                format!("{:02}", sample.province().code())
            };
            let n = held.entry((carrier, province.clone())).or_default();
            let roll = rng.gen_range(0..100);
            let (channel, strict) = if *n >= 5 || roll < 45 {
                ("own_hall", true)
            } else if roll < 80 {
                ("agent", false)
            } else {
                ("online", false)
            };
            *n += 1;
            let iot = rng.gen_bool(0.03);
            let row = Row {
                doc_type: "RESIDENT_ID".into(),
                number: identity.number().to_string(),
                msisdn: sample.msisdn(a.first_serial + written),
                carrier: carrier.into(),
                province,
                kind: if iot { "iot" } else { "personal" }.into(),
                channel: channel.into(),
                strict,
                unit: if iot {
                    sample.unit().number().to_string()
                } else {
                    String::new()
                },
            };
            match format {
                Format::Csv => writeln!(out, "{}", row.to_csv())?,
                Format::Jsonl => {
                    serde_json::to_writer(&mut out, &row)?;
                    out.write_all(b"\n")?;
                }
            }
            written += 1;
        }
    }
    out.flush()?;
    println!(
        "gen: {written} cards over {ids} identities -> {}",
        a.out.display()
    );
    Ok(())
}
