//! `oneid import FILE`: bulk registration from CSV or JSON Lines.
//!
//! Rows are validated locally with the server's own rules, sent in big
//! ImportCards batches with several in flight, and acknowledged in file
//! order into a checkpoint file, so an interrupted import resumes where it
//! stopped. Every row has a request id derived from the file and its line
//! number: a batch resent after a crash or a timeout is deduplicated by the
//! cluster, never applied twice. Each row is applied or refused on its own;
//! none is ever half-applied.

use std::collections::{HashSet, VecDeque};
use std::io::{BufRead, BufReader, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use clap::{Args, ValueEnum};
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
    /// Give up on a batch the cluster cannot take (no leader, unreachable,
    /// overloaded) after this many seconds; a refusal stops the import at once.
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

/// A batch sent and not yet completed.
struct InFlight {
    /// The batch, its requests moved into `sent`.
    batch: Batch,
    keys: HashSet<u64>,
    sent: tokio::task::JoinHandle<anyhow::Result<Vec<pb::ImportItemResult>>>,
}

impl InFlight {
    async fn outcome(self) -> anyhow::Result<(Batch, Vec<pb::ImportItemResult>)> {
        let results = self
            .sent
            .await
            .map_err(|e| anyhow!("sending a batch: {e}"))??;
        Ok((self.batch, results))
    }
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
///
/// A batch does not end inside a run of one identity's rows when it can
/// end before the run instead: the run moves to the next batch. Batches
/// that share an identity are never in flight together (see [`touched`]),
/// and most files list each identity's cards together, so a run split at
/// every other batch boundary would leave one batch in flight most of the
/// time.
struct Batcher {
    reader: BufReader<std::fs::File>,
    format: Format,
    fingerprint: String,
    /// The last line read from the file and the offset after it.
    line: u64,
    offset: u64,
    /// Lines read but handed on to the next batch: (line, offset after it,
    /// text), in file order.
    carried: VecDeque<(u64, u64, String)>,
    /// Where the last batch ended: (line, offset after it).
    done: (u64, u64),
    batch: usize,
}

/// The raw identity fields of a request: consecutive rows of one identity
/// repeat them exactly.
fn holder_of(req: &pb::RegisterCardRequest) -> Option<(i32, &str)> {
    req.identity
        .as_ref()
        .map(|i| (i.doc_type, i.number.as_str()))
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
            carried: VecDeque::new(),
            done: (line, offset),
            batch,
        })
    }

    fn next_line(&mut self) -> std::io::Result<Option<(u64, u64, String)>> {
        if let Some(l) = self.carried.pop_front() {
            return Ok(Some(l));
        }
        let mut buf = String::new();
        let n = self.reader.read_line(&mut buf)?;
        if n == 0 {
            return Ok(None);
        }
        self.line += 1;
        self.offset += n as u64;
        buf.truncate(buf.trim_end_matches(['\n', '\r']).len());
        Ok(Some((self.line, self.offset, buf)))
    }

    /// The request of a data line, or why it is bad; `None` for a line
    /// that is no row (blank, the CSV header).
    fn parse(&self, line: u64, text: &str) -> Option<Result<pb::RegisterCardRequest, String>> {
        if text.trim().is_empty() || (line == 1 && self.format == Format::Csv) {
            return None;
        }
        let request_id = format!("imp-{}-{}", self.fingerprint, line);
        Some(parse_line(self.format, text).and_then(|r| r.to_request(request_id)))
    }

    fn next_batch(&mut self) -> anyhow::Result<Option<Batch>> {
        let (start_line, start) = self.done;
        let mut b = Batch {
            lines: Vec::new(),
            requests: Vec::new(),
            bad: Vec::new(),
            last_line: start_line,
            end_offset: start,
        };
        // The lines at the batch's end from the first row of its last
        // identity on (bad and blank lines among them), how many rows and
        // bad rows they hold, and where the batch stood before them.
        let mut run: Vec<(u64, u64, String)> = Vec::new();
        let (mut run_rows, mut run_bad) = (0, 0);
        let mut before_run = (start_line, start);
        while b.requests.len() < self.batch {
            let Some((line, offset, text)) = self.next_line()? else {
                break;
            };
            let before = (b.last_line, b.end_offset);
            b.last_line = line;
            b.end_offset = offset;
            match self.parse(line, &text) {
                Some(Ok(req)) => {
                    if run_rows == 0 || b.requests.last().and_then(holder_of) != holder_of(&req) {
                        run.clear();
                        (run_rows, run_bad) = (0, 0);
                        before_run = before;
                    }
                    run_rows += 1;
                    b.lines.push(line);
                    b.requests.push(req);
                }
                Some(Err(why)) => {
                    b.bad.push((line, why));
                    run_bad += usize::from(run_rows > 0);
                }
                None => {}
            }
            if run_rows > 0 {
                run.push((line, offset, text));
            }
        }
        if b.requests.len() >= self.batch && run_rows < b.requests.len() {
            if let Some((line, offset, text)) = self.next_line()? {
                let continues = matches!(
                    self.parse(line, &text),
                    Some(Ok(next)) if b.requests.last().and_then(holder_of) == holder_of(&next)
                );
                self.carried.push_front((line, offset, text));
                if continues {
                    b.lines.truncate(b.lines.len() - run_rows);
                    b.requests.truncate(b.requests.len() - run_rows);
                    b.bad.truncate(b.bad.len() - run_bad);
                    (b.last_line, b.end_offset) = before_run;
                    for l in run.into_iter().rev() {
                        self.carried.push_front(l);
                    }
                }
            }
        }
        self.done = (b.last_line, b.end_offset);
        Ok((b.end_offset > start).then_some(b))
    }
}

/// What a batch's rows touch: their identities and numbers, hashed. A batch
/// is not sent while another that touches one of them is in flight, so the
/// rows of one identity or number apply in file order at any concurrency:
/// rules such as "a sixth card at one carrier and province needs strict
/// verification" decide by what was registered before. (Two batches in
/// flight together can interleave on the leader: a 10 M-card import refused
/// one row in one run and none in another.)
fn touched(requests: &[pb::RegisterCardRequest]) -> HashSet<u64> {
    use std::hash::{Hash, Hasher};
    fn hash_of(v: impl Hash) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        v.hash(&mut h);
        h.finish()
    }
    let mut out = HashSet::with_capacity(requests.len() * 2);
    for r in requests {
        // A row the server cannot parse is refused without touching
        // anything; normalised forms catch one identity written two ways.
        if let Ok(id) = crate::api::convert::identity(r.identity.as_ref()) {
            out.insert(hash_of((0u8, &id)));
        }
        if let Ok(n) = crate::api::convert::msisdn(&r.msisdn) {
            out.insert(hash_of((1u8, n.as_str())));
        }
    }
    out
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

/// How long batches reuse one connection before asking again who leads:
/// leadership can move without any batch failing (a handover), and a
/// follower would forward every batch.
const LEADER_RECHECK: Duration = Duration::from_secs(1);

/// The connection batches go over, shared by the batches in flight. Looking
/// the leader up for every batch cost two new connections and a status call
/// per batch (two TLS handshakes with certificates).
struct Connection {
    target: Target,
    current: tokio::sync::Mutex<Option<(Channel, Instant)>>,
}

impl Connection {
    fn new(target: Target) -> Self {
        Connection {
            target,
            current: tokio::sync::Mutex::new(None),
        }
    }

    async fn channel(&self) -> anyhow::Result<Channel> {
        // Held while connecting: batches waiting here use the new one.
        let mut current = self.current.lock().await;
        match &*current {
            Some((ch, since)) if since.elapsed() < LEADER_RECHECK => Ok(ch.clone()),
            _ => {
                let ch = leader_channel(&self.target).await?;
                *current = Some((ch.clone(), Instant::now()));
                Ok(ch)
            }
        }
    }

    /// After a failed attempt: the next one looks the leader up again.
    async fn forget(&self) {
        *self.current.lock().await = None;
    }
}

/// Whether a failed import request may succeed if sent again: the cluster
/// was unreachable, busy, between leaders or handing leadership over, or
/// the outcome is unknown (request ids make a resend safe). A refusal of
/// the request itself (a certificate that may not act for a row's carrier,
/// a batch over the size limit) would be refused again, so the import
/// stops at once and says why.
fn worth_retrying(status: &tonic::Status) -> bool {
    use tonic::Code;
    match status.code() {
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::Cancelled
        | Code::Unknown
        | Code::Aborted
        | Code::ResourceExhausted => true,
        Code::FailedPrecondition => reason_of(status).as_deref() == Some("LEADERSHIP_TRANSFER"),
        // Without a reason it came from HTTP/2, not the server: a node
        // going away mid-request (GOAWAY) reads as INTERNAL.
        Code::Internal => reason_of(status).is_none(),
        _ => false,
    }
}

/// Sends one batch until the cluster gives a definite answer per row.
async fn send(
    conn: &Connection,
    requests: Vec<pb::RegisterCardRequest>,
    retry_for: Duration,
) -> anyhow::Result<Vec<pb::ImportItemResult>> {
    let deadline = Instant::now() + retry_for;
    let mut delay = Duration::from_millis(100);
    loop {
        // Not connecting is always worth another try: a node may be
        // restarting.
        let attempt = match conn.channel().await {
            Ok(ch) => RegistryClient::new(ch)
                .max_decoding_message_size(64 << 20)
                .max_encoding_message_size(64 << 20)
                .import_cards(pb::ImportCardsRequest {
                    cards: requests.clone(),
                })
                .await
                .map_err(|s| {
                    let reason = reason_of(&s).unwrap_or_default();
                    let e = anyhow!("{:?} {reason}: {}", s.code(), s.message());
                    (e, worth_retrying(&s))
                }),
            Err(e) => Err((e, true)),
        };
        match attempt {
            Ok(r) => return Ok(r.into_inner().results),
            Err((e, false)) => return Err(e.context("the cluster refused a batch")),
            Err((e, true)) if Instant::now() < deadline => {
                eprintln!("import: batch not acknowledged ({e}); retrying");
                conn.forget().await;
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err((e, true)) => return Err(e.context("the cluster did not accept a batch in time")),
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
    let conn = std::sync::Arc::new(Connection::new(a.target.clone()));
    // Batches are read lazily, sent up to `concurrency` at a time (one that
    // touches what another in flight touches waits for it), and completed
    // in file order, so the checkpoint only ever covers acknowledged rows.
    let mut complete = |b: Batch, results: Vec<pb::ImportItemResult>| -> anyhow::Result<()> {
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
        Ok(())
    };
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    let mut failure = None;
    // A file that cannot be read further still completes what was sent.
    let mut read_error = None;
    'reading: loop {
        let mut b = match batcher.next_batch() {
            Ok(Some(b)) => b,
            Ok(None) => break,
            Err(e) => {
                read_error = Some(e);
                break;
            }
        };
        let keys = touched(&b.requests);
        while in_flight.len() >= a.concurrency
            || in_flight.iter().any(|f| !f.keys.is_disjoint(&keys))
        {
            let Some(f) = in_flight.pop_front() else {
                break;
            };
            match f.outcome().await {
                Ok((done, results)) => complete(done, results)?,
                Err(e) => {
                    failure = Some(e);
                    break 'reading;
                }
            }
        }
        let requests = std::mem::take(&mut b.requests);
        let (conn, expected) = (conn.clone(), requests.len());
        let sent = tokio::spawn(async move {
            if requests.is_empty() {
                return Ok(Vec::new());
            }
            let results = send(&conn, requests, retry_for).await?;
            anyhow::ensure!(
                results.len() == expected,
                "the server answered {} of {expected} rows",
                results.len(),
            );
            Ok(results)
        });
        in_flight.push_back(InFlight {
            batch: b,
            keys,
            sent,
        });
    }
    while failure.is_none() {
        let Some(f) = in_flight.pop_front() else {
            break;
        };
        match f.outcome().await {
            Ok((done, results)) => complete(done, results)?,
            Err(e) => failure = Some(e),
        }
    }
    // After a failure the rest is abandoned, as when the import is killed:
    // the checkpoint does not cover it and request ids make resending safe.
    for f in in_flight {
        f.sent.abort();
    }
    let failure = failure.or(read_error);
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
    fn a_batch_ends_before_a_run_of_one_identity_rather_than_inside_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let mut body = format!("{CSV_HEADER}\n");
        let holders = [
            ("143589196009172405", 2),
            ("445497200212049177", 3),
            ("526016197401274361", 2),
        ];
        let mut i = 0;
        for (number, cards) in holders {
            for _ in 0..cards {
                body.push_str(&format!(
                    "RESIDENT_ID,{number},1390000000{i},CMCC,11,personal,agent,false\n"
                ));
                i += 1;
                if i == 3 {
                    // A bad row inside a run moves with it.
                    body.push_str("not,a,row\n");
                }
            }
        }
        std::fs::write(&path, &body).unwrap();
        let line_end = |line: usize| -> u64 {
            body.split_inclusive('\n')
                .take(line)
                .map(str::len)
                .sum::<usize>() as u64
        };

        let mut all = batcher(&path, 0, 0, 4);
        let batches: Vec<Batch> = std::iter::from_fn(|| all.next_batch().unwrap()).collect();
        let lines: Vec<Vec<u64>> = batches.iter().map(|b| b.lines.clone()).collect();
        assert_eq!(lines, vec![vec![2, 3], vec![4, 6, 7], vec![8, 9]]);
        let bad: Vec<Vec<u64>> = batches
            .iter()
            .map(|b| b.bad.iter().map(|(l, _)| *l).collect())
            .collect();
        assert_eq!(bad, vec![vec![], vec![5], vec![]]);
        for b in &batches {
            assert_eq!(b.requests.len(), b.lines.len());
            assert_eq!(b.end_offset, line_end(b.last_line as usize));
        }
        assert_eq!(batches[2].end_offset, body.len() as u64);
        // No two batches touch the same identity or number.
        let keys: Vec<HashSet<u64>> = batches.iter().map(|b| touched(&b.requests)).collect();
        assert!(keys[0].is_disjoint(&keys[1]) && keys[1].is_disjoint(&keys[2]));

        // Resuming after the first batch reads the same second batch.
        let first = &batches[0];
        let mut resumed = batcher(&path, first.last_line, first.end_offset, 4);
        assert_eq!(resumed.next_batch().unwrap().unwrap().lines, lines[1]);
    }

    #[test]
    fn touched_names_identities_and_numbers_however_written() {
        let row = |number: &str, msisdn: &str| pb::RegisterCardRequest {
            identity: Some(pb::Identity {
                doc_type: pb::DocType::ResidentId as i32,
                number: number.into(),
            }),
            msisdn: msisdn.into(),
            ..Default::default()
        };
        let a = touched(&[row("11010519491231002X", "13800000000")]);
        assert_eq!(a.len(), 2);
        // The same identity with a lower-case check character, another number.
        let b = touched(&[row("11010519491231002x", "13800000001")]);
        assert_eq!(a.intersection(&b).count(), 1);
        let c = touched(&[row("143589196009172405", "13800000002")]);
        assert!(a.is_disjoint(&c));
        // Unparseable fields touch nothing.
        assert!(touched(&[row("bad", "bad")]).is_empty());
    }

    #[test]
    fn only_requests_that_may_go_through_next_time_are_retried() {
        use tonic::{Code, Status};
        for code in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::Cancelled,
            Code::Unknown,
            Code::Aborted,
            Code::ResourceExhausted,
        ] {
            assert!(worth_retrying(&Status::new(code, "")), "{code:?}");
        }
        for code in [
            Code::PermissionDenied,
            Code::Unauthenticated,
            Code::InvalidArgument,
            Code::FailedPrecondition,
            Code::DataLoss,
            Code::Unimplemented,
        ] {
            assert!(!worth_retrying(&Status::new(code, "")), "{code:?}");
        }
        let handover: Status = crate::api::error::ApiError::Transfer("handing over".into()).into();
        assert!(worth_retrying(&handover));
        assert!(worth_retrying(&Status::internal("h2 protocol error")));
        let server_fault: Status = crate::api::error::ApiError::Internal("a bug".into()).into();
        assert!(!worth_retrying(&server_fault));
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
