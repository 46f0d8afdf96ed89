//! Waiting a few scheduler turns for work already on its way.
//!
//! When the group-commit pipe frees or a read barrier round is about to
//! start, some clients' requests are still being decoded by tasks that are
//! already runnable. Yielding to the scheduler a few times lets them queue
//! and join, at no timer's latency. Both callers wait only while they hold
//! less than they expect from their last batch or round, so a lone caller
//! never waits. (The proposer then waits on its queue for up to a
//! millisecond more; oneid's batch-stream client uses the turns too: when
//! it sends a message, callers just answered are queueing their next call.)

/// Most scheduler turns a batch or round waits.
///
/// At 64 registering clients entries held ~35 commands instead of ~29, and
/// in four alternating pairs 11.1-12.3 k instead of 9.7-12.2 k
/// registrations/s went through at 105-117 instead of 109-138 µs of node
/// CPU each; 32 turns grew batches no further, and a 1 ms timer grew them a
/// little (~38 commands) and was no faster. Read rounds gathered this way
/// served 25.9-26.7 k instead of 23.8-25.5 k counts/s at 54-56 instead of
/// 57-61 µs each (session 23).
pub const TURNS: u32 = 8;

/// Yields to the scheduler until `ready` holds, checking after each turn;
/// at least one turn and at most [`TURNS`].
pub async fn yield_until(mut ready: impl FnMut() -> bool) {
    for _ in 0..TURNS {
        tokio::task::yield_now().await;
        if ready() {
            return;
        }
    }
}

/// Runs `f` after `turns` scheduler turns, as a request handler that is
/// still decoding would.
#[cfg(test)]
pub(crate) fn after_turns(turns: u32, f: impl FnOnce() + Send + 'static) {
    tokio::spawn(async move {
        for _ in 0..turns {
            tokio::task::yield_now().await;
        }
        f();
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    #[tokio::test(flavor = "current_thread")]
    async fn it_waits_for_what_arrives_within_the_turns_and_no_longer() {
        let arrived = Arc::new(AtomicU32::new(0));
        let count = |n: u32| {
            let arrived = arrived.clone();
            after_turns(n, move || {
                arrived.fetch_add(1, Ordering::SeqCst);
            })
        };
        count(0);
        count(3);
        yield_until(|| arrived.load(Ordering::SeqCst) >= 2).await;
        assert_eq!(arrived.load(Ordering::SeqCst), 2);

        // Already ready: one turn only, so a task runnable now gets in but
        // a later one does not.
        count(0);
        count(3);
        yield_until(|| true).await;
        assert_eq!(arrived.load(Ordering::SeqCst), 3);

        // Never ready: bounded.
        count(TURNS + 5);
        yield_until(|| false).await;
        assert_eq!(arrived.load(Ordering::SeqCst), 4, "the 3-turn one came");
    }
}
