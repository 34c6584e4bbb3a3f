//! Micro-benchmarks of the core's hot paths, with criterion: a change that
//! slows building a round, storing an append on a follower, or advancing
//! the commit index shows here.
//!
//! Run: `cargo bench --bench core`.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use hookraft::{
    AppendReply, Body, Config, Configuration, Core, MemStore, Message, NodeId, Output, Term,
    TermKind,
};

const BATCH: u64 = 64;

fn config(id: u64) -> Config {
    Config::new(id, Configuration::voters((1..=3).map(|i| (i, format!("n{i}")))))
}

/// A leader of three whose followers acknowledged everything so far.
fn leader() -> Core<MemStore> {
    let mut c = Core::new(&config(1), MemStore::new(), 1, Duration::ZERO).unwrap();
    let t = c.next_deadline().unwrap();
    c.tick(t).unwrap();
    for v in [2, 3] {
        let vote = Message {
            from: NodeId(v),
            to: NodeId(1),
            epoch: 1,
            body: Body::VoteReply { granted: true },
        };
        c.step(vote, t).unwrap();
    }
    acknowledge(&mut c, t);
    c
}

/// Both followers report everything stored.
fn acknowledge(c: &mut Core<MemStore>, now: Duration) -> Vec<Output> {
    let last = c.last_index();
    let mut out = Vec::new();
    for v in [2, 3] {
        let reply = AppendReply::Stored { match_index: last };
        let m =
            Message { from: NodeId(v), to: NodeId(1), epoch: 1, body: Body::AppendReply(reply) };
        out.extend(c.step(m, now).unwrap());
    }
    out
}

fn contents() -> Vec<TermKind> {
    (0..BATCH).map(|_| TermKind::Content(vec![7u8; 64].into())).collect()
}

fn build_round(c: &mut Criterion) {
    let mut g = c.benchmark_group("leader");
    g.throughput(Throughput::Elements(BATCH));
    let mut core = leader();
    g.bench_function("round_of_64_terms", |b| {
        b.iter_batched(
            contents,
            |kinds| {
                let draft = core.draft_round(kinds).unwrap();
                core.send_round(draft, true, Duration::ZERO).unwrap()
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("advance_commit", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let draft = core.draft_round(contents()).unwrap();
                core.send_round(draft, true, Duration::ZERO).unwrap();
                let start = Instant::now();
                std::hint::black_box(acknowledge(&mut core, Duration::ZERO));
                spent += start.elapsed();
            }
            spent
        })
    });
    g.finish();
}

fn follower_append(c: &mut Criterion) {
    let mut g = c.benchmark_group("follower");
    g.throughput(Throughput::Elements(BATCH));
    let mut core = Core::new(&config(2), MemStore::new(), 2, Duration::ZERO).unwrap();
    g.bench_function("append_64_terms", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let m = next_append(&core);
                let start = Instant::now();
                std::hint::black_box(core.step(m, Duration::ZERO).unwrap());
                spent += start.elapsed();
            }
            spent
        })
    });
    g.finish();
}

/// The leader's next request to a follower: 64 new terms after its log.
fn next_append(core: &Core<MemStore>) -> Message {
    let prev = core.last_index();
    let prev_epoch = if prev <= 1 { 0 } else { 1 };
    let terms = (1..=BATCH)
        .map(|k| Term { index: prev + k, epoch: 1, kind: TermKind::Content(vec![7u8; 64].into()) })
        .collect();
    let body = Body::AppendTerms { prev_index: prev, prev_epoch, commit: prev, terms };
    Message { from: NodeId(1), to: NodeId(2), epoch: 1, body }
}

criterion_group!(benches, build_round, follower_append);
criterion_main!(benches);
