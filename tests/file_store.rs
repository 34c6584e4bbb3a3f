//! Tests of `FileStore` through its public API: round trips across reopen,
//! recovery from hand-damaged files, the directory lock, I/O failures, and
//! crashes of a real writer process killed at random moments.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use hookraft::{
    Configuration, FileStore, FileStoreOptions, HardState, Index, LogStore, NodeId, StoreError,
    SyncPolicy, Term, TermKind,
};

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("hookraft-{tag}-{}-{n}", std::process::id());
        let path = std::env::temp_dir().join(name);
        let _ = fs::remove_dir_all(&path);
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Opens the store, waiting out a lock held by a process that another test
/// is starting: until it execs, the child shares this process's open files,
/// lock included.
fn open(dir: impl AsRef<Path>, options: FileStoreOptions) -> Result<FileStore, StoreError> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match FileStore::open(dir.as_ref(), options.clone()) {
            Err(StoreError::Locked { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5))
            }
            other => return other,
        }
    }
}

fn small(segment_size: u64) -> FileStoreOptions {
    FileStoreOptions { segment_size, cache_terms: 4, ..FileStoreOptions::default() }
}

/// The term at `index`, with content and epoch derived from the index alone.
fn term(index: Index) -> Term {
    let kind = match index % 7 {
        0 => TermKind::Empty,
        3 => TermKind::Config(Configuration::voters([(1, "a:1"), (index, "b:2")])),
        _ => {
            let len = (index * 37 % 200) as usize;
            TermKind::Content((0..len).map(|i| (i as u64 ^ index) as u8).collect::<Vec<_>>().into())
        }
    };
    Term { index, epoch: 1 + index / 10, kind }
}

fn terms(range: std::ops::RangeInclusive<Index>) -> Vec<Term> {
    range.map(term).collect()
}

fn all(store: &FileStore) -> Vec<Term> {
    if store.last_index() < store.first_index() {
        return Vec::new();
    }
    store.terms(store.first_index(), store.last_index(), usize::MAX).unwrap()
}

/// The segment files of `dir`, oldest first.
fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with("seg-"))
        .collect();
    files.sort();
    files
}

fn corrupt(result: Result<FileStore, StoreError>) -> (PathBuf, u64, String) {
    match result {
        Err(StoreError::Corrupt { path, offset, detail }) => (path, offset, detail),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn terms_of_every_kind_survive_reopen() {
    let dir = TempDir::new("round-trip");
    let mut store = open(dir.path(), small(512)).unwrap();
    for chunk in terms(1..=60).chunks(5) {
        store.append(chunk).unwrap();
    }
    assert!(store.segment_count() > 3, "segments: {}", store.segment_count());
    drop(store);

    let store = open(dir.path(), small(512)).unwrap();
    assert_eq!((store.first_index(), store.last_index()), (1, 60));
    assert_eq!(all(&store), terms(1..=60));
    assert_eq!(store.epoch_of(0), Some(0));
    assert_eq!(store.epoch_of(35), Some(4));
    assert_eq!(store.epoch_of(61), None);
}

#[test]
fn reads_stop_at_the_byte_budget_across_cache_and_disk() {
    let dir = TempDir::new("budget");
    let mut store = open(dir.path(), small(300)).unwrap();
    store.append(&terms(1..=30)).unwrap();

    let one = store.terms(5, 30, 0).unwrap();
    assert_eq!(one, terms(5..=5));
    let budget: usize = terms(10..=20).iter().map(Term::size_hint).sum();
    assert_eq!(store.terms(10, 30, budget).unwrap(), terms(10..=20));
    assert_eq!(store.terms(20, 30, usize::MAX).unwrap(), terms(20..=30));

    for (from, to) in [(0, 3), (4, 3), (1, 31)] {
        assert!(matches!(store.terms(from, to, usize::MAX), Err(StoreError::Invalid(_))));
    }
}

#[test]
fn appends_that_do_not_follow_are_refused() {
    let dir = TempDir::new("follow");
    let mut store = open(dir.path(), small(512)).unwrap();
    store.append(&terms(1..=3)).unwrap();
    assert!(matches!(store.append(&terms(5..=6)), Err(StoreError::Invalid(_))));
    assert!(matches!(store.append(&[term(4), term(6)]), Err(StoreError::Invalid(_))));

    let huge = Term { index: 4, epoch: 1, kind: TermKind::Content(vec![0; 2000].into()) };
    let opts = FileStoreOptions { max_record_size: 1000, ..small(512) };
    drop(store);
    let mut store = open(dir.path(), opts).unwrap();
    assert!(matches!(store.append(&[huge]), Err(StoreError::Invalid(_))));
    store.append(&terms(4..=4)).unwrap();
    assert_eq!(all(&store), terms(1..=4));
}

#[test]
fn truncate_across_segments_then_append_and_reopen() {
    let dir = TempDir::new("truncate");
    let mut store = open(dir.path(), small(400)).unwrap();
    store.append(&terms(1..=50)).unwrap();
    let before = store.segment_count();

    store.truncate_from(12).unwrap();
    assert_eq!(store.last_index(), 11);
    assert!(store.segment_count() < before);
    assert_eq!(store.epoch_of(12), None);

    let mut replaced = terms(12..=20);
    for t in &mut replaced {
        t.epoch = 9;
    }
    store.append(&replaced).unwrap();
    drop(store);

    let store = open(dir.path(), small(400)).unwrap();
    let mut expected = terms(1..=11);
    expected.extend(replaced);
    assert_eq!(all(&store), expected);
    assert_eq!(store.epoch_of(12), Some(9));
}

#[test]
fn truncate_to_nothing_and_start_again() {
    let dir = TempDir::new("truncate-all");
    let mut store = open(dir.path(), small(300)).unwrap();
    store.append(&terms(1..=20)).unwrap();
    store.truncate_from(0).unwrap();
    assert_eq!((store.first_index(), store.last_index()), (1, 0));
    store.truncate_from(5).unwrap();
    store.append(&terms(1..=3)).unwrap();
    drop(store);

    let store = open(dir.path(), small(300)).unwrap();
    assert_eq!(all(&store), terms(1..=3));
}

#[test]
fn hard_state_survives_reopen() {
    let dir = TempDir::new("hard-state");
    let mut store = open(dir.path(), small(512)).unwrap();
    assert_eq!(store.hard_state(), HardState::default());
    store.save_hard_state(HardState { epoch: 3, vote: Some(NodeId(2)) }).unwrap();
    store.save_hard_state(HardState { epoch: 4, vote: None }).unwrap();
    drop(store);

    let store = open(dir.path(), small(512)).unwrap();
    assert_eq!(store.hard_state(), HardState { epoch: 4, vote: None });
}

#[test]
fn remove_before_deletes_whole_segments_and_survives_reopen() {
    let dir = TempDir::new("remove-before");
    let mut store = open(dir.path(), small(400)).unwrap();
    store.append(&terms(1..=60)).unwrap();

    store.remove_before(30).unwrap();
    let first = store.first_index();
    assert!(first > 1 && first <= 30, "first index {first}");
    assert_eq!(store.epoch_of(first - 1), None);
    assert_eq!(all(&store), terms(first..=60));
    assert!(matches!(store.truncate_from(first - 1), Err(StoreError::Invalid(_))));

    // The segment holding the last term always stays.
    store.remove_before(1000).unwrap();
    assert_eq!(store.epoch_of(60), Some(term(60).epoch));
    let first = store.first_index();
    drop(store);

    let mut store = open(dir.path(), small(400)).unwrap();
    assert_eq!(store.first_index(), first);
    assert_eq!(all(&store), terms(first..=60));
    store.append(&terms(61..=62)).unwrap();
}

#[test]
fn empty_or_missing_directory_starts_fresh() {
    let dir = TempDir::new("fresh");
    fs::create_dir_all(dir.path()).unwrap();
    let store = open(dir.path(), small(512)).unwrap();
    assert_eq!((store.first_index(), store.last_index()), (1, 0));
    assert_eq!(store.epoch_of(0), Some(0));
    assert_eq!(store.epoch_of(1), None);
    drop(store);

    let nested = dir.path().join("a/b");
    let mut store = open(&nested, small(512)).unwrap();
    store.append(&terms(1..=2)).unwrap();
    assert_eq!(all(&store), terms(1..=2));
}

#[test]
fn second_open_is_refused_until_the_first_is_dropped() {
    let dir = TempDir::new("lock");
    let store = open(dir.path(), small(512)).unwrap();
    match FileStore::open(dir.path(), small(512)) {
        Err(StoreError::Locked { path }) => assert!(path.starts_with(dir.path())),
        other => panic!("expected Locked, got {other:?}"),
    }
    drop(store);
    open(dir.path(), small(512)).unwrap();
}

#[test]
fn record_cut_in_half_at_the_tail_recovers_to_the_record_before() {
    let dir = TempDir::new("torn");
    let mut store = open(dir.path(), small(100_000)).unwrap();
    let mut ends = Vec::new();
    let seg = segment_files(dir.path()).pop().unwrap();
    for t in terms(1..=10) {
        store.append(&[t]).unwrap();
        ends.push(fs::metadata(&seg).unwrap().len());
    }
    drop(store);

    let half = (ends[8] + ends[9]) / 2;
    fs::OpenOptions::new().write(true).open(&seg).unwrap().set_len(half).unwrap();

    let mut store = open(dir.path(), small(100_000)).unwrap();
    assert_eq!(all(&store), terms(1..=9));
    assert_eq!(fs::metadata(&seg).unwrap().len(), ends[8]);
    store.append(&terms(10..=11)).unwrap();
    drop(store);
    let store = open(dir.path(), small(100_000)).unwrap();
    assert_eq!(all(&store), terms(1..=11));
}

/// Writes terms 1..=10 one append at a time and returns the segment file
/// and where each record starts.
fn one_segment_of_ten(dir: &Path) -> (PathBuf, Vec<u64>) {
    let mut store = open(dir, small(100_000)).unwrap();
    let seg = segment_files(dir).pop().unwrap();
    let mut starts = Vec::new();
    for t in terms(1..=10) {
        starts.push(fs::metadata(&seg).unwrap().len());
        store.append(&[t]).unwrap();
    }
    (seg, starts)
}

fn patch(path: &Path, offset: u64, bytes: &[u8]) {
    let mut content = fs::read(path).unwrap();
    content[offset as usize..offset as usize + bytes.len()].copy_from_slice(bytes);
    fs::write(path, content).unwrap();
}

#[test]
fn flipped_byte_in_a_middle_record_is_corrupt_with_file_and_offset() {
    let dir = TempDir::new("flip");
    let (seg, starts) = one_segment_of_ten(dir.path());
    let content = fs::read(&seg).unwrap();
    let at = starts[4] + 10;
    patch(&seg, at, &[content[at as usize] ^ 0x20]);

    let (path, offset, detail) = corrupt(open(dir.path(), small(100_000)));
    assert_eq!((path, offset), (seg, starts[4]));
    assert!(detail.contains("checksum"), "{detail}");
}

#[test]
fn huge_length_header_is_refused_without_allocating() {
    let dir = TempDir::new("huge");
    let (seg, starts) = one_segment_of_ten(dir.path());
    patch(&seg, starts[6], &0xffff_fff0u32.to_le_bytes());

    let (path, offset, detail) = corrupt(open(dir.path(), small(100_000)));
    assert_eq!((path, offset), (seg.clone(), starts[6]));
    assert!(detail.contains("exceeds max_record_size"), "{detail}");

    // The same header on the last record is a torn tail.
    let dir = TempDir::new("huge-tail");
    let (seg, starts) = one_segment_of_ten(dir.path());
    patch(&seg, starts[9], &0xffff_fff0u32.to_le_bytes());
    let store = open(dir.path(), small(100_000)).unwrap();
    assert_eq!(all(&store), terms(1..=9));
}

#[test]
fn bad_record_in_an_earlier_segment_is_corrupt() {
    let dir = TempDir::new("early");
    let mut store = open(dir.path(), small(300)).unwrap();
    store.append(&terms(1..=40)).unwrap();
    drop(store);

    let first = segment_files(dir.path()).remove(0);
    let len = fs::metadata(&first).unwrap().len();
    fs::OpenOptions::new().write(true).open(&first).unwrap().set_len(len - 3).unwrap();
    let (path, _, detail) = corrupt(open(dir.path(), small(300)));
    assert_eq!(path, first);
    assert!(detail.contains("not the last"), "{detail}");
}

#[test]
fn missing_segment_is_a_gap_not_a_fresh_start() {
    let dir = TempDir::new("gap");
    let mut store = open(dir.path(), small(300)).unwrap();
    store.append(&terms(1..=40)).unwrap();
    drop(store);

    let files = segment_files(dir.path());
    assert!(files.len() >= 3);
    fs::remove_file(&files[1]).unwrap();
    let (path, offset, detail) = corrupt(open(dir.path(), small(300)));
    assert_eq!((path, offset), (files[2].clone(), 0));
    assert!(detail.contains("ends at index"), "{detail}");
}

#[test]
fn directory_path_that_is_a_file_is_an_io_error() {
    let dir = TempDir::new("not-a-dir");
    fs::create_dir_all(dir.path()).unwrap();
    let file = dir.path().join("plain");
    fs::write(&file, b"x").unwrap();
    match open(&file, small(512)) {
        Err(StoreError::Io { context, .. }) => assert!(context.contains("plain"), "{context}"),
        other => panic!("expected Io, got {other:?}"),
    }
}

#[test]
fn writes_after_a_failed_write_are_refused() {
    let dir = TempDir::new("poison");
    let mut store = open(dir.path(), small(64)).unwrap();
    store.append(&terms(1..=2)).unwrap();

    // With the directory gone, the next segment cannot be created.
    fs::remove_dir_all(dir.path()).unwrap();
    match store.append(&terms(3..=6)) {
        Err(StoreError::Io { context, .. }) => assert!(context.contains("seg-"), "{context}"),
        other => panic!("expected Io, got {other:?}"),
    }
    assert!(matches!(store.append(&terms(3..=3)), Err(StoreError::Poisoned { .. })));
    let vote = HardState { epoch: 1, vote: None };
    assert!(matches!(store.save_hard_state(vote), Err(StoreError::Poisoned { .. })));
    assert!(matches!(store.truncate_from(1), Err(StoreError::Poisoned { .. })));
    assert_eq!(store.last_index(), 2);
}

#[test]
fn never_sync_still_round_trips() {
    let dir = TempDir::new("never");
    let opts = FileStoreOptions { sync: SyncPolicy::Never, ..small(256) };
    let mut store = open(dir.path(), opts.clone()).unwrap();
    store.append(&terms(1..=20)).unwrap();
    store.save_hard_state(HardState { epoch: 2, vote: Some(NodeId(1)) }).unwrap();
    drop(store);

    let store = open(dir.path(), opts).unwrap();
    assert_eq!(all(&store), terms(1..=20));
    assert_eq!(store.hard_state().epoch, 2);
}

/// Set in the environment of a crash-test child: the directory to write to.
const CHILD_DIR: &str = "HOOKRAFT_CRASH_CHILD_DIR";
/// Set in the environment of a crash-test child: its random seed.
const CHILD_SEED: &str = "HOOKRAFT_CRASH_CHILD_SEED";
/// How many seeds the crash test runs, two kills each.
const SEEDS_VAR: &str = "HOOKRAFT_CRASH_SEEDS";

/// The term the crash test writes at `index`: any reader can check it.
fn crash_term(index: Index) -> Term {
    let len = (index.wrapping_mul(2_654_435_761) % 3000) as usize;
    let kind = if index.is_multiple_of(13) {
        TermKind::Empty
    } else {
        TermKind::Content(
            (0..len).map(|i| (index as usize * 31 + i) as u8).collect::<Vec<_>>().into(),
        )
    };
    Term { index, epoch: 1 + index / 50, kind }
}

/// The writer of the crash test, run in a child process by
/// `acknowledged_terms_survive_kill_9`. In a normal test run it does nothing.
///
/// It appends batches of `crash_term`s and prints `ack <index>` once each
/// append has returned, until it is killed (or gives up after a while, should
/// its parent be gone).
#[test]
fn crash_child_writer() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let seed: u64 = std::env::var(CHILD_SEED).unwrap().parse().unwrap();
    let mut rng = SmallRng::seed_from_u64(seed);
    let opts = FileStoreOptions {
        segment_size: rng.random_range(1_000..40_000),
        cache_terms: rng.random_range(0..16),
        ..FileStoreOptions::default()
    };
    let mut store = open(&dir, opts).unwrap();

    let deadline = Instant::now() + Duration::from_secs(10);
    let mut out = std::io::stdout().lock();
    while Instant::now() < deadline {
        let next = store.last_index() + 1;
        let batch: Vec<Term> = (next..next + rng.random_range(1..=8)).map(crash_term).collect();
        store.append(&batch).unwrap();
        writeln!(out, "ack {}", store.last_index()).unwrap();
        out.flush().unwrap();
    }
}

/// Runs the writer child on `dir`, kills it with SIGKILL at a moment chosen
/// by `rng`, and returns the highest index it acknowledged.
fn run_and_kill(dir: &Path, child_seed: u64, rng: &mut SmallRng) -> Result<Index, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new(exe)
        .args(["--exact", "crash_child_writer", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir)
        .env(CHILD_SEED, child_seed.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the writer: {e}"))?;

    // Only whole lines count: a line cut by the kill was never printed.
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout);
        let mut line = String::new();
        while lines.read_line(&mut line).is_ok_and(|n| n > 0) {
            if let Some(ack) = line.strip_suffix('\n').and_then(|l| l.strip_prefix("ack ")) {
                let _ = tx.send(ack.parse::<Index>().unwrap());
            }
            line.clear();
        }
    });

    // Mostly kill while it writes; sometimes while it starts or recovers.
    if rng.random_bool(0.8) {
        rx.recv_timeout(Duration::from_secs(10)).map_err(|_| "the writer acknowledged nothing")?;
    }
    std::thread::sleep(Duration::from_micros(rng.random_range(0..20_000)));
    child.kill().map_err(|e| format!("cannot kill the writer: {e}"))?;
    child.wait().map_err(|e| e.to_string())?;
    reader.join().map_err(|_| "stdout reader panicked")?;
    Ok(rx.try_iter().max().unwrap_or(0))
}

#[test]
fn open_is_refused_while_another_process_holds_the_store() {
    let dir = TempDir::new("lock-process");
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["--exact", "crash_child_writer", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir.path())
        .env(CHILD_SEED, "7")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    // Once the writer has acknowledged a term, it holds the store.
    let mut first = String::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap());
    while !first.starts_with("ack ") {
        first.clear();
        assert!(lines.read_line(&mut first).unwrap() > 0, "the writer stopped");
    }
    let refused = FileStore::open(dir.path(), FileStoreOptions::default());
    child.kill().unwrap();
    child.wait().unwrap();

    assert!(matches!(refused, Err(StoreError::Locked { .. })), "{refused:?}");
    open(dir.path(), FileStoreOptions::default()).unwrap();
}

/// Checks that the store in `dir` opens, holds every index up to `acked`,
/// and serves nothing but the expected terms.
fn check_recovered(dir: &Path, acked: Index) -> Result<Index, String> {
    let store =
        open(dir, FileStoreOptions::default()).map_err(|e| format!("reopen failed: {e}"))?;
    let last = store.last_index();
    if last < acked {
        return Err(format!("acknowledged index {acked} lost, last index {last}"));
    }
    if last == 0 {
        return Ok(0);
    }
    let read = store.terms(1, last, usize::MAX).map_err(|e| format!("read failed: {e}"))?;
    if read.len() as Index != last {
        return Err(format!("read {} terms of {last}", read.len()));
    }
    for term in read {
        let expected = crash_term(term.index);
        if term != expected || store.epoch_of(term.index) != Some(expected.epoch) {
            return Err(format!("index {} served malformed: {term:?}", term.index));
        }
    }
    Ok(last)
}

/// Two kills of a writer on one directory, checked after each.
fn crash_rounds(seed: u64) -> Result<Index, String> {
    let dir = TempDir::new("crash");
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut acked = 0;
    for round in 0..2 {
        acked = acked.max(run_and_kill(dir.path(), seed * 2 + round, &mut rng)?);
        check_recovered(dir.path(), acked).map_err(|e| format!("round {round}: {e}"))?;
    }
    Ok(acked)
}

#[test]
fn acknowledged_terms_survive_kill_9() {
    let seeds: u64 = std::env::var(SEEDS_VAR).map_or(100, |s| s.parse().unwrap());
    let start = Instant::now();
    let mut acked = 0;
    for seed in 0..seeds {
        match crash_rounds(seed) {
            Ok(a) => acked += a,
            Err(e) => panic!("crash test failed with seed {seed}: {e}"),
        }
    }
    println!(
        "crash test: {} kills, {acked} terms acknowledged, in {:?}",
        seeds * 2,
        start.elapsed()
    );
}

#[test]
fn a_deferred_append_needs_a_sync_and_survives_reopen_after_it() {
    let dir = TempDir::new("deferred");
    let mut store = open(dir.path(), FileStoreOptions::default()).unwrap();
    let terms = terms(1..=3);
    assert!(store.append_deferred(&terms).unwrap(), "a syncing store defers the sync");
    assert_eq!(store.last_index(), 3);
    store.sync().unwrap();
    assert!(store.append_deferred(&[]).is_ok_and(|pending| !pending), "nothing is left to sync");
    drop(store);
    let store = open(dir.path(), FileStoreOptions::default()).unwrap();
    assert_eq!(all(&store), terms);
}
