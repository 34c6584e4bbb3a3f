//! How many terms per second `FileStore` makes durable, printed as one
//! machine-readable line per case:
//!
//! `bench=file_store sync=always payload=64 proposers=64 appends_per_s=... append_calls_per_s=... mean_batch=...`
//!
//! With one proposer every term is its own `append` call, so its own sync.
//! With 64 proposers, each sends a term into a channel and waits for its
//! acknowledgement; one writer drains everything waiting (up to
//! `MAX_BATCH`), appends it in one call and acknowledges each term. This is
//! the group commit a leader gets by appending a whole round at once: many
//! proposers share one sync.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};
use hookraft::{FileStore, FileStoreOptions, LogStore, Payload, SyncPolicy, Term, TermKind};

/// Most terms the writer puts in one `append` call.
const MAX_BATCH: usize = 256;

/// A proposal waiting for its term to be durable.
struct Proposal {
    payload: Payload,
    done: Sender<()>,
}

/// The outcome of one case.
struct Outcome {
    terms: u64,
    calls: u64,
    elapsed: Duration,
}

fn main() {
    for sync in [SyncPolicy::Always, SyncPolicy::Never] {
        let time = match sync {
            SyncPolicy::Always => Duration::from_secs(2),
            SyncPolicy::Never => Duration::from_secs(1),
        };
        for payload in [64, 4096] {
            for proposers in [1, 64] {
                let outcome = run_case(sync, payload, proposers, time);
                report(sync, payload, proposers, &outcome);
            }
        }
    }
}

fn report(sync: SyncPolicy, payload: usize, proposers: usize, o: &Outcome) {
    let secs = o.elapsed.as_secs_f64();
    let sync = match sync {
        SyncPolicy::Always => "always",
        SyncPolicy::Never => "never",
    };
    println!(
        "bench=file_store sync={sync} payload={payload} proposers={proposers} \
         appends_per_s={:.0} append_calls_per_s={:.0} mean_batch={:.1}",
        o.terms as f64 / secs,
        o.calls as f64 / secs,
        o.terms as f64 / o.calls.max(1) as f64
    );
}

fn run_case(sync: SyncPolicy, payload: usize, proposers: usize, time: Duration) -> Outcome {
    let dir = std::env::temp_dir()
        .join(format!("hookraft-bench-{}-{payload}-{proposers}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let options = FileStoreOptions { sync, ..FileStoreOptions::default() };
    let store = FileStore::open(&dir, options).expect("open the bench store");
    let content = Payload::from(vec![0x5a; payload]);

    let outcome = if proposers == 1 {
        one_proposer(store, content, time)
    } else {
        many_proposers(store, content, proposers, time)
    };
    std::fs::remove_dir_all(&dir).expect("remove the bench store");
    outcome
}

fn term(index: u64, payload: Payload) -> Term {
    Term { index, epoch: 1, kind: TermKind::Content(payload) }
}

/// One term per `append` call, back to back.
fn one_proposer(mut store: FileStore, payload: Payload, time: Duration) -> Outcome {
    let start = Instant::now();
    let mut terms = 0;
    while start.elapsed() < time {
        store.append(&[term(store.last_index() + 1, payload.clone())]).expect("append");
        terms += 1;
    }
    Outcome { terms, calls: terms, elapsed: start.elapsed() }
}

/// `proposers` threads waiting on one writer that batches what is waiting.
fn many_proposers(store: FileStore, payload: Payload, proposers: usize, time: Duration) -> Outcome {
    let (tx, rx) = bounded::<Proposal>(proposers * 2);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = thread::Builder::new()
        .name("bench-writer".into())
        .spawn(move || write_batches(store, rx))
        .expect("spawn the writer");

    let start = Instant::now();
    let handles: Vec<_> = (0..proposers)
        .map(|_| {
            let (tx, stop, payload) = (tx.clone(), stop.clone(), payload.clone());
            thread::spawn(move || propose_until(&tx, &stop, payload))
        })
        .collect();
    drop(tx);

    thread::sleep(time);
    stop.store(true, Ordering::Relaxed);
    for handle in handles {
        handle.join().expect("proposer");
    }
    let (terms, calls) = writer.join().expect("writer");
    Outcome { terms, calls, elapsed: start.elapsed() }
}

/// Proposes one term at a time and waits for it to be durable.
fn propose_until(tx: &Sender<Proposal>, stop: &AtomicBool, payload: Payload) {
    let (done, acked) = bounded(1);
    while !stop.load(Ordering::Relaxed) {
        let proposal = Proposal { payload: payload.clone(), done: done.clone() };
        tx.send(proposal).expect("writer alive");
        acked.recv().expect("acknowledged");
    }
}

/// Drains every waiting proposal into one `append`, then acknowledges them.
/// Returns the terms and the calls made, once every proposer is gone.
fn write_batches(mut store: FileStore, rx: Receiver<Proposal>) -> (u64, u64) {
    let (mut terms, mut calls) = (0, 0);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        batch.extend(rx.try_iter().take(MAX_BATCH - 1));

        let next = store.last_index() + 1;
        let round: Vec<Term> = batch
            .iter()
            .enumerate()
            .map(|(i, p)| term(next + i as u64, p.payload.clone()))
            .collect();
        store.append(&round).expect("append");
        terms += batch.len() as u64;
        calls += 1;
        for proposal in batch.drain(..) {
            let _ = proposal.done.send(());
        }
    }
    (terms, calls)
}
