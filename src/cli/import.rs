//! `oneid import FILE`: bulk registration from CSV or JSON Lines.
//!
//! Rows are validated locally with the server's own rules, sent in big
//! ImportCards batches with several in flight, and acknowledged in file
//! order into a checkpoint file, so an interrupted import resumes where it
//! stopped. Every row has a request id derived from the file and its line
//! number: a batch resent after a crash or a timeout is deduplicated by the
//! cluster, never applied twice. Each row is applied or refused on its own;
//! none is ever half-applied.

use std::io::{BufRead, BufReader, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use clap::{Args, ValueEnum};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tonic::transport::Channel;

use super::client::{leader_target, Target};
use super::rows::{Format, Row, CSV_HEADER, CSV_HEADER_PERSONAL};
use crate::api::error::reason_of;
use crate::pb;
use crate::pb::registry_client::RegistryClient;

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Report bad rows (with line numbers) and import the rest.
    Skip,
    /// Check the whole file first; any bad row aborts before anything is sent.
    Abort,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum FormatArg {
    Csv,
    Jsonl,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// CSV (with header) or JSON Lines file.
    pub file: PathBuf,
    /// File format (default: from the extension).
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    /// Rows per ImportCards request (at most 10000).
    #[arg(long, default_value_t = 5000)]
    pub batch: usize,
    /// Requests in flight.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// What to do with rows that fail validation.
    #[arg(long, value_enum, default_value = "skip")]
    pub on_error: OnError,
    /// Checkpoint file (default: FILE.checkpoint). Removed when done.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Ignore an existing checkpoint and start from the first row.
    #[arg(long)]
    pub restart: bool,
    /// Give up on a batch the cluster keeps refusing after this many seconds.
    #[arg(long, default_value_t = 120)]
    pub retry_for_s: u64,
    #[command(flatten)]
    pub target: Target,
}

/// What the checkpoint file holds: the first line not yet acknowledged, for
/// one particular file.
#[derive(Serialize, Deserialize, Debug, Default, Clone)]
struct Checkpoint {
    fingerprint: String,
    next_line: u64,
    next_offset: u64,
    imported: u64,
    replayed: u64,
    refused: u64,
    bad: u64,
}

struct Batch {
    lines: Vec<u64>,
    requests: Vec<pb::RegisterCardRequest>,
    /// Bad rows found while building this batch: (line, why).
    bad: Vec<(u64, String)>,
    last_line: u64,
    end_offset: u64,
}

/// Identifies the file's contents cheaply (size plus a CRC of the first
/// MiB); also returns the size.
fn fingerprint(path: &Path) -> anyhow::Result<(String, u64)> {
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let len = f.metadata()?.len();
    let mut head = vec![0u8; 1 << 20];
    let n = f.read(&mut head)?;
    Ok((format!("{len:x}-{:08x}", crc32fast::hash(&head[..n])), len))
}

fn parse_line(format: Format, line: &str) -> Result<Row, String> {
    match format {
        Format::Csv => Row::parse_csv(line),
        Format::Jsonl => Row::parse_json(line),
    }
}

/// Reads rows from `offset` (a line start) and groups them into batches.
struct Batcher {
    reader: BufReader<std::fs::File>,
    format: Format,
    fingerprint: String,
    line: u64,
    offset: u64,
    batch: usize,
}

impl Batcher {
    /// Reads `path` from `offset`, the start of the line after `line`.
    fn open(
        path: &Path,
        format: Format,
        fingerprint: &str,
        (line, offset): (u64, u64),
        batch: usize,
    ) -> anyhow::Result<Batcher> {
        let mut file = std::fs::File::open(path)?;
        file.seek(std::io::SeekFrom::Start(offset))?;
        Ok(Batcher {
            reader: BufReader::with_capacity(1 << 20, file),
            format,
            fingerprint: fingerprint.to_string(),
            line,
            offset,
            batch,
        })
    }

    fn next_batch(&mut self) -> anyhow::Result<Option<Batch>> {
        let mut b = Batch {
            lines: Vec::new(),
            requests: Vec::new(),
            bad: Vec::new(),
            last_line: self.line,
            end_offset: self.offset,
        };
        let start = self.offset;
        let mut buf = String::new();
        while b.requests.len() < self.batch {
            buf.clear();
            let n = self.reader.read_line(&mut buf)?;
            if n == 0 {
                break;
            }
            self.line += 1;
            self.offset += n as u64;
            b.last_line = self.line;
            b.end_offset = self.offset;
            let text = buf.trim_end_matches(['\n', '\r']);
            if text.trim().is_empty() || (self.line == 1 && self.format == Format::Csv) {
                continue;
            }
            let request_id = format!("imp-{}-{}", self.fingerprint, self.line);
            match parse_line(self.format, text).and_then(|r| r.to_request(request_id)) {
                Ok(req) => {
                    b.lines.push(self.line);
                    b.requests.push(req);
                }
                Err(why) => b.bad.push((self.line, why)),
            }
        }
        Ok((b.end_offset > start).then_some(b))
    }
}

/// The leader if a node names it, else the first endpoint that answers:
/// followers forward, so any node works, the leader saves a hop.
async fn leader_channel(target: &Target) -> anyhow::Result<Channel> {
    let ch = super::client::connect(target).await?;
    let status = pb::cluster_client::ClusterClient::new(ch.clone())
        .status(pb::StatusRequest::default())
        .await;
    match status
        .ok()
        .and_then(|s| leader_target(&s.into_inner(), target))
    {
        Some(leader) => super::client::connect(&leader).await,
        None => Ok(ch),
    }
}

/// Sends one batch until the cluster gives a definite answer per row.
async fn send(
    target: &Target,
    requests: Vec<pb::RegisterCardRequest>,
    retry_for: Duration,
) -> anyhow::Result<Vec<pb::ImportItemResult>> {
    let deadline = Instant::now() + retry_for;
    let mut delay = Duration::from_millis(100);
    loop {
        let attempt = async {
            let ch = leader_channel(target).await?;
            RegistryClient::new(ch)
                .max_decoding_message_size(64 << 20)
                .max_encoding_message_size(64 << 20)
                .import_cards(pb::ImportCardsRequest {
                    cards: requests.clone(),
                })
                .await
                .map_err(|s| {
                    let reason = reason_of(&s).unwrap_or_default();
                    anyhow!("{:?} {reason}: {}", s.code(), s.message())
                })
        };
        match attempt.await {
            Ok(r) => return Ok(r.into_inner().results),
            Err(e) if Instant::now() < deadline => {
                eprintln!("import: batch not acknowledged ({e}); retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(e.context("the cluster did not accept a batch in time")),
        }
    }
}

fn save(path: &Path, cp: &Checkpoint) -> anyhow::Result<()> {
    let tmp = path.with_extension("checkpoint.tmp");
    std::fs::write(&tmp, serde_json::to_vec(cp)?)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn load(path: &Path) -> anyhow::Result<Option<Checkpoint>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "checkpoint {} is unreadable; remove it or pass --restart",
                path.display()
            )
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Checks every row without sending anything (for --on-error abort), with
/// the same reading and validation the import itself does.
fn validate_all(
    path: &Path,
    format: Format,
    fingerprint: &str,
) -> anyhow::Result<Vec<(u64, String)>> {
    let mut batcher = Batcher::open(
        path,
        format,
        fingerprint,
        (0, 0),
        crate::api::registry::MAX_IMPORT_BATCH,
    )?;
    let mut bad = Vec::new();
    while let Some(b) = batcher.next_batch()? {
        bad.extend(b.bad);
    }
    Ok(bad)
}

pub async fn run(a: ImportArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=crate::api::registry::MAX_IMPORT_BATCH).contains(&a.batch),
        "--batch must be 1..={}",
        crate::api::registry::MAX_IMPORT_BATCH
    );
    anyhow::ensure!(a.concurrency >= 1, "--concurrency must be at least 1");
    let format = match a.format {
        Some(FormatArg::Csv) => Format::Csv,
        Some(FormatArg::Jsonl) => Format::Jsonl,
        None => Format::from_path(&a.file).ok_or_else(|| {
            anyhow!(
                "cannot tell the format of {} from its name; pass --format",
                a.file.display()
            )
        })?,
    };
    let (fp, total_bytes) = fingerprint(&a.file)?;
    let cp_path = a
        .checkpoint
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.checkpoint", a.file.display())));
    let mut cp = match load(&cp_path)? {
        Some(_) if a.restart => Checkpoint::default(),
        Some(cp) if cp.fingerprint != fp => anyhow::bail!(
            "checkpoint {} belongs to a different file (or this file changed); remove it or pass --restart",
            cp_path.display()
        ),
        Some(cp) => {
            eprintln!("import: resuming at line {}", cp.next_line + 1);
            cp
        }
        None => Checkpoint::default(),
    };
    cp.fingerprint = fp.clone();
    if a.on_error == OnError::Abort {
        let bad = validate_all(&a.file, format, &fp)?;
        if !bad.is_empty() {
            for (line, why) in bad.iter().take(20) {
                eprintln!("{}:{line}: {why}", a.file.display());
            }
            anyhow::bail!(
                "{} bad rows; nothing was imported (--on-error abort)",
                bad.len()
            );
        }
    }
    if format == Format::Csv {
        let mut first = String::new();
        BufReader::new(std::fs::File::open(&a.file)?).read_line(&mut first)?;
        anyhow::ensure!(
            first.trim() == CSV_HEADER || first.trim() == CSV_HEADER_PERSONAL,
            "{}:1: the first line must be the header {CSV_HEADER} (the unit column may be left out)",
            a.file.display()
        );
    }
    let mut batcher = Batcher::open(
        &a.file,
        format,
        &fp,
        (cp.next_line, cp.next_offset),
        a.batch,
    )?;
    let rejects_path = PathBuf::from(format!("{}.rejects", a.file.display()));
    // A resumed import keeps the rejects of its earlier part.
    let resuming = cp.next_offset > 0;
    let mut rejects = std::io::BufWriter::new(
        std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(resuming)
            .truncate(!resuming)
            .open(&rejects_path)?,
    );
    let bar = indicatif::ProgressBar::new(total_bytes);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {percent}% {msg}")
            .map_err(|e| anyhow!("progress template: {e}"))?
            .progress_chars("=> "),
    );
    bar.set_position(cp.next_offset);
    let started = Instant::now();
    let start_rows = cp.imported + cp.replayed + cp.refused;
    let retry_for = Duration::from_secs(a.retry_for_s);
    let target = &a.target;
    // Batches are read lazily, sent `concurrency` at a time, and completed
    // in file order, so the checkpoint only ever covers acknowledged rows.
    let batches = futures::stream::iter(std::iter::from_fn(|| batcher.next_batch().transpose()))
        .map(|b| async move {
            let b = b?;
            let results = if b.requests.is_empty() {
                Vec::new()
            } else {
                send(target, b.requests.clone(), retry_for).await?
            };
            anyhow::ensure!(
                results.len() == b.requests.len(),
                "the server answered {} of {} rows",
                results.len(),
                b.requests.len()
            );
            Ok::<_, anyhow::Error>((b, results))
        })
        .buffered(a.concurrency);
    futures::pin_mut!(batches);
    let mut failure = None;
    while let Some(done) = batches.next().await {
        let (b, results) = match done {
            Ok(x) => x,
            Err(e) => {
                failure = Some(e);
                break;
            }
        };
        for (line, why) in &b.bad {
            writeln!(rejects, "{line}: BAD_ROW: {why}")?;
            cp.bad += 1;
        }
        for (line, r) in b.lines.iter().zip(&results) {
            match (r.ok, r.replayed) {
                (true, false) => cp.imported += 1,
                (true, true) => cp.replayed += 1,
                (false, _) => {
                    cp.refused += 1;
                    // The message already starts with the reason code.
                    writeln!(rejects, "{line}: {}", r.message)?;
                }
            }
        }
        rejects.flush()?;
        cp.next_line = b.last_line;
        cp.next_offset = b.end_offset;
        save(&cp_path, &cp)?;
        bar.set_position(cp.next_offset);
        let rate = (cp.imported + cp.replayed + cp.refused - start_rows) as f64
            / started.elapsed().as_secs_f64().max(1e-3);
        bar.set_message(format!(
            "{} imported, {} refused, {} bad, {rate:.0} rows/s",
            cp.imported + cp.replayed,
            cp.refused,
            cp.bad
        ));
    }
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    let sent = cp.imported + cp.replayed + cp.refused - start_rows;
    println!(
        "import: {} cards registered ({} were already), {} refused, {} bad rows, {sent} rows in {secs:.1} s ({:.0} rows/s)",
        cp.imported + cp.replayed,
        cp.replayed,
        cp.refused,
        cp.bad,
        sent as f64 / secs.max(1e-3)
    );
    if let Some(e) = failure {
        return Err(e.context(format!(
            "import stopped at line {}; run the same command again to resume",
            cp.next_line + 1
        )));
    }
    std::fs::remove_file(&cp_path).ok();
    if cp.refused + cp.bad > 0 {
        println!(
            "import: refused and bad rows are listed in {}",
            rejects_path.display()
        );
    } else {
        std::fs::remove_file(&rejects_path).ok();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batcher(path: &Path, line: u64, offset: u64, batch: usize) -> Batcher {
        let (fp, _) = fingerprint(path).unwrap();
        Batcher::open(path, Format::Csv, &fp, (line, offset), batch).unwrap()
    }

    #[test]
    fn batches_resume_exactly_where_the_checkpoint_points() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.csv");
        let mut body = format!("{CSV_HEADER}\n");
        for i in 0..7 {
            body.push_str(&format!(
                "RESIDENT_ID,11010519491231002X,1380000000{i},CMCC,11,personal,agent,false\n"
            ));
            if i == 3 {
                body.push_str("not,a,row\n");
            }
        }
        std::fs::write(&path, &body).unwrap();

        let mut all = batcher(&path, 0, 0, 3);
        let first = all.next_batch().unwrap().unwrap();
        assert_eq!(first.lines, vec![2, 3, 4]);
        let second = all.next_batch().unwrap().unwrap();
        assert_eq!(second.lines, vec![5, 7, 8]);
        assert_eq!(second.bad.len(), 1);
        assert_eq!(second.bad[0].0, 6);
        let third = all.next_batch().unwrap().unwrap();
        assert_eq!(third.lines, vec![9]);
        assert!(all.next_batch().unwrap().is_none());
        assert_eq!(third.end_offset, body.len() as u64);

        // A checkpoint after the first batch resumes with the second, with
        // the same request ids (so resent rows are deduplicated).
        let mut resumed = batcher(&path, first.last_line, first.end_offset, 3);
        let again = resumed.next_batch().unwrap().unwrap();
        assert_eq!(again.lines, second.lines);
        let ids = |b: &Batch| {
            b.requests
                .iter()
                .map(|r| r.request_id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&again), ids(&second));
    }

    #[test]
    fn fingerprint_changes_with_contents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.csv");
        std::fs::write(&path, "a\n").unwrap();
        let a = fingerprint(&path).unwrap();
        std::fs::write(&path, "b\n").unwrap();
        assert_ne!(a.0, fingerprint(&path).unwrap().0);
    }
}
