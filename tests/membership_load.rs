//! Membership 3→5→3 under load, with real processes: writers keep
//! registering cards through whichever members there are while two nodes
//! join as learners and become voters, and two of the original three
//! (the leader first, when it is one of them) are removed. Every
//! acknowledged registration must be counted on every remaining member,
//! and the remaining replicas must hold the same state.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use common::*;
use futures::StreamExt;
use oneid::pb;
use oneid::pb::registry_client::RegistryClient;
use tonic::transport::Channel;

/// Concurrent writers.
const WRITERS: u32 = 6;
/// Bound on each writer's registrations...
const PER_WRITER: u32 = 2_000;
/// ...and on how long the load runs.
const LOAD_LIMIT: Duration = Duration::from_secs(60);
/// Pause between one writer's registrations: the load should keep the
/// cluster busy, not starve two cores of the time to change membership,
/// and not reach PER_WRITER before the changes are done.
const PACE: Duration = Duration::from_millis(20);
/// Cards per identity: under the five-per-carrier-province limit, so every
/// registration is accepted.
const CARDS_PER_ID: u32 = 4;
/// Longest one registration may stay unacknowledged, retries included,
/// before the cluster counts as unavailable.
const WRITE_DEADLINE: Duration = Duration::from_secs(45);
/// Bound on one membership change, retries included.
const CHANGE_DEADLINE: Duration = Duration::from_secs(60);

/// One acknowledged registration.
struct Acked {
    identity: String,
    msisdn: String,
}

/// What the writers share with the test driving the membership changes.
#[derive(Clone)]
struct Load {
    /// Members writes may go to: (id, address).
    targets: Arc<RwLock<Vec<(u64, String)>>>,
    acked: Arc<Mutex<Vec<Acked>>>,
    stop: Arc<AtomicBool>,
}

impl Load {
    fn new(c: &Cluster, members: &[u64]) -> Load {
        let load = Load {
            targets: Arc::default(),
            acked: Arc::default(),
            stop: Arc::default(),
        };
        load.target(c, members);
        load
    }

    fn target(&self, c: &Cluster, members: &[u64]) {
        let list = members
            .iter()
            .map(|id| (*id, c.node(*id).addr.clone()))
            .collect();
        *self.targets.write().unwrap_or_else(|p| p.into_inner()) = list;
    }

    fn pick(&self, n: usize) -> (u64, String) {
        let t = self.targets.read().unwrap_or_else(|p| p.into_inner());
        t[n % t.len()].clone()
    }

    fn acked(&self) -> usize {
        self.acked.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Waits until `more` registrations beyond now are acknowledged, so each
    /// step of the change happens under writes.
    async fn wait_more(&self, c: &Cluster, more: usize, during: &str) {
        let want = self.acked() + more;
        eventually(
            c,
            &format!("{more} writes acknowledged {during}"),
            || async {
                match self.acked() {
                    n if n >= want => Ok(()),
                    n => Err(format!("{n} of {want}")),
                }
            },
        )
        .await;
    }
}

fn identity_body(w: u32, k: u32) -> String {
    // Born 1960+w on the first of a month; the sequence number tells the
    // identities of one month apart.
    let group = k / CARDS_PER_ID;
    format!(
        "110105{}{:02}01{:03}",
        1960 + w,
        group / 1000 + 1,
        group % 1000
    )
}

/// A status a client retries with the same request id: no leader, outcome
/// unknown, or the node went away mid-call.
fn retryable(s: &tonic::Status) -> bool {
    matches!(
        s.code(),
        tonic::Code::Unavailable
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Cancelled
            | tonic::Code::Unknown
    )
}

/// Registers up to PER_WRITER cards, retrying each through the next member
/// until acknowledged. Any refusal, or a write that stays unacknowledged past
/// WRITE_DEADLINE, fails the writer.
async fn writer(w: u32, load: Load) -> Result<u32, String> {
    let started = Instant::now();
    let mut clients: BTreeMap<String, RegistryClient<Channel>> = BTreeMap::new();
    let mut retries = 0;
    for k in 0..PER_WRITER {
        if load.stop.load(Ordering::Relaxed) || started.elapsed() > LOAD_LIMIT {
            break;
        }
        let identity = resident_id(&identity_body(w, k));
        let msisdn = format!("139{w:02}{k:06}");
        let req = register_req(&format!("load-{w}-{k}"), &identity, &msisdn);
        let deadline = Instant::now() + WRITE_DEADLINE;
        let mut attempt = w as usize + k as usize;
        loop {
            let (node, addr) = load.pick(attempt);
            let client = clients
                .entry(addr.clone())
                .or_insert_with(|| RegistryClient::new(channel(&addr)));
            match client.register_card(req.clone()).await {
                Ok(_) => break,
                Err(s) if retryable(&s) && Instant::now() < deadline => {
                    retries += 1;
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(s) => {
                    return Err(format!(
                        "writer {w}: load-{w}-{k} through node {node}: {:?} {} ({})",
                        s.code(),
                        s.message(),
                        reason(&s)
                    ))
                }
            }
        }
        load.acked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Acked {
                identity: identity.number,
                msisdn,
            });
        tokio::time::sleep(PACE).await;
    }
    Ok(retries)
}

/// (voters, learners) as node `id` sees them.
async fn membership(c: &Cluster, id: u64) -> Option<(BTreeSet<u64>, BTreeSet<u64>)> {
    let s = c.status(id).await?;
    let voters = s.members.iter().filter(|m| m.voter).map(|m| m.node_id);
    let learners = s.members.iter().filter(|m| !m.voter).map(|m| m.node_id);
    Some((voters.collect(), learners.collect()))
}

/// Runs `oneid member ARGS` against `members` until it succeeds or `done`
/// holds on one of them (a call whose answer was lost, e.g. the removed
/// leader stepping down, may still have taken effect), then waits until
/// every one of them sees the change.
async fn change<F>(c: &Cluster, members: &[u64], args: &[String], done: F)
where
    F: Fn(&BTreeSet<u64>, &BTreeSet<u64>) -> bool,
{
    let endpoints = members
        .iter()
        .map(|id| c.node(*id).addr.clone())
        .collect::<Vec<_>>()
        .join(",");
    let mut argv = vec!["member".to_string()];
    argv.extend(args.iter().cloned());
    argv.extend(["--endpoints".to_string(), endpoints]);
    let deadline = Instant::now() + CHANGE_DEADLINE;
    let mut failures = Vec::new();
    loop {
        let run = argv.clone();
        let out = tokio::task::spawn_blocking(move || {
            oneid_cli(&run.iter().map(String::as_str).collect::<Vec<_>>())
        })
        .await
        .expect("member command");
        if out.status.success() {
            break;
        }
        failures.push(output_text(&out));
        let mut seen = false;
        for id in members {
            if let Some((v, l)) = membership(c, *id).await {
                seen |= done(&v, &l);
            }
        }
        if seen {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "`oneid {}` did not complete: {failures:#?}\n{}",
            args.join(" "),
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for id in members {
        eventually(
            c,
            &format!("node {id} sees `{}`", args.join(" ")),
            || async {
                match membership(c, *id).await {
                    Some((v, l)) if done(&v, &l) => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            },
        )
        .await;
    }
}

/// Every acknowledged card, counted on node `id` (linearizable): each
/// identity must hold exactly the cards acknowledged under it.
async fn check_counts(c: &Cluster, id: u64, acked: &[Acked]) {
    let mut by_identity: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for a in acked {
        by_identity.entry(&a.identity).or_default().push(&a.msisdn);
    }
    let registry = c.registry(id);
    let mut counts = futures::stream::iter(by_identity)
        .map(|(number, msisdns)| {
            let mut r = registry.clone();
            async move {
                let who = pb::Identity {
                    doc_type: pb::DocType::ResidentId as i32,
                    number: number.to_string(),
                };
                let got = r.count_cards(count_req(&who, msisdns[0])).await;
                (number, msisdns, got)
            }
        })
        .buffer_unordered(8);
    while let Some((number, msisdns, got)) = counts.next().await {
        let total = got
            .unwrap_or_else(|s| panic!("count of {number} on node {id}: {s:?}"))
            .into_inner()
            .total;
        assert_eq!(
            total as usize,
            msisdns.len(),
            "node {id} lost an acknowledged card of {number}: has {total}, acknowledged {msisdns:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grow_three_to_five_and_shrink_back_under_load() {
    let mut c = Cluster::start_with_http(3, &[]);
    let originals = [1u64, 2, 3];
    c.wait_leader(&originals).await;
    let mut members = originals.to_vec();

    let load = Load::new(&c, &members);
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| tokio::spawn(writer(w, load.clone())))
        .collect();
    load.wait_more(&c, 40, "before any change").await;
    let before_changes = load.acked();

    // Grow: two learners, then two voters.
    let mut joined = Vec::new();
    for _ in 0..2 {
        let id = c.add_node();
        let addr = c.node(id).addr.clone();
        change(
            &c,
            &members,
            &["add".into(), id.to_string(), addr],
            |v, l| l.contains(&id) || v.contains(&id),
        )
        .await;
        joined.push(id);
        load.wait_more(&c, 20, &format!("after adding node {id}"))
            .await;
    }
    for &id in &joined {
        change(&c, &members, &["promote".into(), id.to_string()], |v, _| {
            v.contains(&id)
        })
        .await;
        members.push(id);
        load.target(&c, &members);
        load.wait_more(&c, 20, &format!("after promoting node {id}"))
            .await;
    }

    // Shrink: two of the original three, the leader whenever it is one.
    let mut removed_leader = false;
    for _ in 0..2 {
        let leader = c.wait_leader(&members).await;
        let victim = if originals.contains(&leader) {
            removed_leader = true;
            leader
        } else {
            *members.iter().find(|id| originals.contains(id)).unwrap()
        };
        members.retain(|id| *id != victim);
        // Writes stop going to it before it leaves, as a client that
        // follows the membership would.
        load.target(&c, &members);
        change(
            &c,
            &members,
            &["remove".into(), victim.to_string()],
            |v, l| !v.contains(&victim) && !l.contains(&victim),
        )
        .await;
        load.wait_more(&c, 20, &format!("after removing node {victim}"))
            .await;
    }

    load.stop.store(true, Ordering::Relaxed);
    let mut retries = 0;
    for w in writers {
        retries += w
            .await
            .expect("writer task")
            .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    }
    let acked = std::mem::take(&mut *load.acked.lock().unwrap_or_else(|p| p.into_inner()));
    eprintln!(
        "{} registrations acknowledged ({} before the first change), {retries} retries; \
         the leader was {}removed",
        acked.len(),
        before_changes,
        if removed_leader { "" } else { "never " }
    );
    assert!(acked.len() > before_changes);

    // A removed node stops calling itself ready: the removed leader steps
    // down to a learner outside the membership, a removed follower that
    // missed the final configuration finds no leader.
    for id in originals.into_iter().filter(|id| !members.contains(id)) {
        eventually(
            &c,
            &format!("removed node {id}'s /ready turns 503"),
            || async {
                match http_get(&c, id, "/ready").await {
                    Some((503, _)) => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            },
        )
        .await;
    }

    // Exactly the expected three voters, as every one of them sees it.
    c.wait_leader(&members).await;
    let expected: BTreeSet<u64> = members.iter().copied().collect();
    for &id in &members {
        let seen = membership(&c, id).await;
        assert_eq!(seen, Some((expected.clone(), BTreeSet::new())), "node {id}");
    }

    for &id in &members {
        check_counts(&c, id, &acked).await;
    }
    eventually(&c, "the remaining replicas' digests agree", || async {
        let digests = futures::future::join_all(members.iter().map(|id| c.digest(*id))).await;
        if digests.iter().all(|d| d == &digests[0]) {
            Ok(())
        } else {
            Err(format!("{digests:?}"))
        }
    })
    .await;
}
