//! A durable [`LogStore`] in a directory of files, which survives `kill -9`
//! and torn writes.
//!
//! The directory holds:
//!
//! - `seg-<first index, 20 digits>.log`: append-only segment files of framed
//!   terms (length, CRC32, bincode body); a new one starts once the current
//!   one reaches [`FileStoreOptions::segment_size`];
//! - `hard_state`: the epoch and vote, replaced atomically (written to
//!   `hard_state.tmp`, synced, renamed over, directory synced);
//! - `LOCK`: held while a [`FileStore`] has the directory open.

mod index;
mod record;
mod recovery;
mod segment;

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use self::index::{EpochRuns, TailCache};
use self::record::MAX_RECORD_CEILING;
use self::segment::Segment;
use crate::store::{LogStore, StoreError};
use crate::types::{Epoch, HardState, Index, Term};

const LOCK_FILE: &str = "LOCK";
const HARD_STATE_FILE: &str = "hard_state";
const HARD_STATE_TMP: &str = "hard_state.tmp";

/// When the store asks the operating system to put written data on disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SyncPolicy {
    /// Every writing call syncs before it returns (`fdatasync` for appends,
    /// `fsync` for cuts, the hard state and the directory). What a call
    /// acknowledged survives a power failure. The only safe choice for a
    /// real node.
    #[default]
    Always,
    /// Never sync. **Unsafe: for tests and benchmarks only.** Written data
    /// sits in the operating system's cache, so it survives a crash of the
    /// process but an acknowledged term or vote can be lost on a power
    /// failure or a kernel crash, which breaks Raft's safety.
    Never,
}

/// Settings of a [`FileStore`], with defaults for a node on one disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileStoreOptions {
    /// A new segment file starts once the current one would grow past this
    /// many bytes. A record larger than this goes alone in its own segment.
    /// Default 64 MiB. Opening reads one whole segment at a time, so this
    /// is also about the memory that opening needs.
    pub segment_size: u64,
    /// How many of the most recent terms stay in memory, so that a leader
    /// sending what it just wrote does not read the disk. Default 4096;
    /// 0 turns the cache off.
    pub cache_terms: usize,
    /// The largest encoded term, in bytes. Writing a larger term is refused,
    /// and reading refuses a length header above it before allocating
    /// anything. Default 16 MiB, at most 128 MiB.
    pub max_record_size: usize,
    /// When to sync; see [`SyncPolicy`]. Default [`SyncPolicy::Always`].
    pub sync: SyncPolicy,
}

impl Default for FileStoreOptions {
    fn default() -> Self {
        FileStoreOptions {
            segment_size: 64 << 20,
            cache_terms: 4096,
            max_record_size: 16 << 20,
            sync: SyncPolicy::Always,
        }
    }
}

impl FileStoreOptions {
    /// Checks the options before a store opens with them.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for a zero `segment_size`, or a
    /// `max_record_size` of zero or above 128 MiB.
    pub fn validate(&self) -> Result<(), StoreError> {
        if self.segment_size == 0 {
            return Err(StoreError::Invalid("segment_size must be above zero".into()));
        }
        if self.max_record_size == 0 || self.max_record_size > MAX_RECORD_CEILING {
            return Err(StoreError::Invalid(format!(
                "max_record_size {} must be between 1 and {MAX_RECORD_CEILING}",
                self.max_record_size
            )));
        }
        Ok(())
    }
}

/// A durable log store in a directory.
///
/// Terms go to append-only segment files, each record framed with its
/// length and a CRC32 checksum. In memory the store keeps where every record
/// is and the epochs as runs, so [`LogStore::epoch_of`] and
/// [`LogStore::last_index`] never touch the disk, and a bounded cache of the
/// most recent terms, so a leader reading back what it just wrote reads
/// memory.
///
/// # Durability and group commit
///
/// With [`SyncPolicy::Always`], `append`, `truncate_from`, `save_hard_state`
/// and `remove_before` return only once their effect is on disk. One
/// `append` call costs one sync however many terms it carries, so the way to
/// many writes per second is batching: the leader appends a whole round of
/// proposals in one call, and all the proposers waiting on that round share
/// one sync. The `file_store` benchmark shows the difference.
///
/// # Recovery
///
/// [`FileStore::open`] reads every record back. A torn record at the very
/// end of the last segment (what a crash during a write leaves) is cut away
/// and logged at `info`; any other damage, or a gap between indexes, is
/// [`StoreError::Corrupt`] naming the file and offset.
///
/// # Locking
///
/// While a store is open it holds an advisory lock on the `LOCK` file of its
/// directory, and a second open, in this process or another, is refused with
/// [`StoreError::Locked`]. Dropping the store releases it. A child process
/// forked while the store is open shares the lock until it execs or exits,
/// so an open right after dropping may briefly meet `Locked` when another
/// thread is spawning processes.
///
/// # Failures
///
/// After a failed write the files may not match what the store holds in
/// memory, so every later write is refused with [`StoreError::Poisoned`];
/// reopening recovers from what is on disk.
///
/// # Example
///
/// ```
/// use hookraft::{FileStore, FileStoreOptions, LogStore, Term, TermKind};
///
/// let dir = std::env::temp_dir().join(format!("hookraft-doc-{}", std::process::id()));
/// let mut store = FileStore::open(&dir, FileStoreOptions::default())?;
/// store.append(&[Term { index: 1, epoch: 1, kind: TermKind::Content("x".into()) }])?;
/// drop(store);
///
/// let store = FileStore::open(&dir, FileStoreOptions::default())?;
/// assert_eq!(store.last_index(), 1);
/// # drop(store);
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), hookraft::StoreError>(())
/// ```
#[derive(Debug)]
pub struct FileStore {
    dir: PathBuf,
    options: FileStoreOptions,
    /// Held for the life of the store; closing it releases the lock.
    _lock: File,
    hard: HardState,
    /// Never empty; the last one is written to.
    segments: Vec<Segment>,
    /// The last index acknowledged to the caller.
    last_index: Index,
    epochs: EpochRuns,
    cache: TailCache,
    /// Why writes are refused, after a write failed part way.
    poisoned: Option<String>,
    /// Whether a deferred append wrote data not yet synced.
    unsynced: bool,
}

impl FileStore {
    /// Opens the store in `dir`, creating the directory if it is missing, and
    /// recovers the log from its files.
    ///
    /// # Errors
    /// - [`StoreError::Invalid`] for bad `options`;
    /// - [`StoreError::Locked`] when another store (in this process or
    ///   another) has the directory open;
    /// - [`StoreError::Corrupt`] for damage other than a torn tail;
    /// - [`StoreError::Io`] when a file cannot be created, read or repaired,
    ///   or `dir` is not a directory.
    pub fn open(dir: impl AsRef<Path>, options: FileStoreOptions) -> Result<Self, StoreError> {
        options.validate()?;
        let dir = dir.as_ref().to_path_buf();
        create_dir(&dir, options.sync)?;
        let lock = lock_dir(&dir)?;

        let hard = read_hard_state(&dir)?;
        let recovered = recovery::recover(&dir, &options)?;
        let last_index = recovered.segments.last().map_or(0, |s| s.end() - 1);
        Ok(FileStore {
            dir,
            options,
            _lock: lock,
            hard,
            segments: recovered.segments,
            last_index,
            epochs: recovered.epochs,
            cache: recovered.cache,
            poisoned: None,
            unsynced: false,
        })
    }

    /// The directory the store lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &FileStoreOptions {
        &self.options
    }

    /// How many segment files the log spans.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Deletes the segment files whose terms are all below `index`, for log
    /// compaction; [`LogStore::first_index`] then moves up to the first term
    /// left. Only whole segments go, so some terms below `index` may stay,
    /// and the segment holding the last term always stays, so the log never
    /// forgets its last index and epoch.
    ///
    /// # Errors
    /// [`StoreError::Poisoned`] after an earlier failed write, and
    /// [`StoreError::Io`] when a file cannot be deleted or the directory
    /// synced.
    pub fn remove_before(&mut self, index: Index) -> Result<(), StoreError> {
        self.check_writable()?;
        let result = self.remove_segments_before(index);
        self.poison_on_err(result)
    }

    fn remove_segments_before(&mut self, index: Index) -> Result<(), StoreError> {
        let bound = index.min(self.last_index);
        let count = self.segments.iter().take_while(|s| s.end() <= bound).count();
        if count == 0 {
            return Ok(());
        }

        // Oldest first: a crash part way leaves a contiguous log.
        for _ in 0..count {
            let segment = self.segments.remove(0);
            fs::remove_file(&segment.path).map_err(io_at("deleting segment", &segment.path))?;
        }
        self.sync_dir()?;
        self.epochs.remove_before(self.first_index());
        Ok(())
    }

    fn syncs(&self) -> bool {
        self.options.sync == SyncPolicy::Always
    }

    fn sync_dir(&self) -> Result<(), StoreError> {
        if self.syncs() {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    fn check_writable(&self) -> Result<(), StoreError> {
        match &self.poisoned {
            Some(cause) => Err(StoreError::Poisoned { cause: cause.clone() }),
            None => Ok(()),
        }
    }

    fn poison_on_err<T>(&mut self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(e) = &result {
            self.poisoned = Some(e.to_string());
        }
        result
    }

    fn tail(&mut self) -> &mut Segment {
        self.segments.last_mut().expect("a file store always has a segment")
    }

    /// The segment holding `index`, which the caller knows is held.
    fn segment_of(&self, index: Index) -> &Segment {
        let after = self.segments.partition_point(|s| s.first <= index);
        &self.segments[after - 1]
    }

    /// Refuses terms that do not follow the last index one by one.
    fn check_follows(&self, terms: &[Term]) -> Result<(), StoreError> {
        for (i, term) in terms.iter().enumerate() {
            let expected = self.last_index + 1 + i as Index;
            if term.index != expected {
                return Err(StoreError::Invalid(format!(
                    "append of index {} where index {expected} is next",
                    term.index
                )));
            }
        }
        Ok(())
    }

    /// Frames every term into one buffer; returns it and where each frame
    /// starts.
    fn encode_all(&self, terms: &[Term]) -> Result<(Vec<u8>, Vec<usize>), StoreError> {
        let mut bytes = Vec::with_capacity(terms.iter().map(|t| t.size_hint() + 16).sum());
        let mut starts = Vec::with_capacity(terms.len() + 1);
        for term in terms {
            starts.push(bytes.len());
            record::encode(term, self.options.max_record_size, &mut bytes)
                .map_err(|e| StoreError::Invalid(format!("index {}: {e}", term.index)))?;
        }
        starts.push(bytes.len());
        Ok((bytes, starts))
    }

    /// Writes the framed terms, rolling segments as they fill, and syncs.
    /// `starts` has one more entry than there are frames: the end.
    fn write_frames(
        &mut self,
        bytes: &[u8],
        starts: &[usize],
        sync_now: bool,
    ) -> Result<(), StoreError> {
        let frames = starts.len() - 1;
        let mut from = 0;
        while from < frames {
            let fit = self.frames_fitting(starts, from);
            if fit == 0 {
                self.roll()?;
                continue;
            }
            let chunk = &bytes[starts[from]..starts[from + fit]];
            let rel: Vec<usize> =
                starts[from..from + fit].iter().map(|s| s - starts[from]).collect();
            self.tail().write_frames(chunk, &rel)?;
            from += fit;
        }
        if self.syncs() {
            if sync_now {
                self.tail().sync()?;
            }
            self.unsynced = !sync_now;
        }
        Ok(())
    }

    /// How many frames from `from` on fit in the current segment; at least
    /// one when it is empty.
    fn frames_fitting(&self, starts: &[usize], from: usize) -> usize {
        let tail = self.segments.last().expect("a file store always has a segment");
        let room = self.options.segment_size.saturating_sub(tail.len);
        let fit = starts[from + 1..]
            .iter()
            .take_while(|&&end| (end - starts[from]) as u64 <= room)
            .count();
        if fit == 0 && tail.len == 0 {
            1
        } else {
            fit
        }
    }

    /// Writes `terms` after the last one, syncing them at once when
    /// `sync_now`, else leaving that to [`LogStore::sync`].
    fn write_terms(&mut self, terms: &[Term], sync_now: bool) -> Result<(), StoreError> {
        if terms.is_empty() {
            return Ok(());
        }
        self.check_writable()?;
        self.check_follows(terms)?;
        let (bytes, starts) = self.encode_all(terms)?;

        let result = self.write_frames(&bytes, &starts, sync_now);
        self.poison_on_err(result)?;
        for term in terms {
            self.epochs.push(term.index, term.epoch);
            self.cache.push(term.clone());
        }
        self.last_index += terms.len() as Index;
        Ok(())
    }

    /// Syncs the current segment and starts a new one after it.
    fn roll(&mut self) -> Result<(), StoreError> {
        if self.syncs() {
            self.tail().sync()?;
            self.unsynced = false;
        }
        let first = self.tail().end();
        let next = Segment::create(&self.dir, first)?;
        self.segments.push(next);
        self.sync_dir()
    }

    /// Removes `index` and every later term from the files.
    fn cut_files_from(&mut self, index: Index) -> Result<(), StoreError> {
        let keep = self.segments.partition_point(|s| s.first <= index);

        // Newest first: a crash part way leaves a contiguous log.
        let removed = self.segments.len() > keep;
        while self.segments.len() > keep {
            let segment = self.segments.pop().expect("more segments than kept");
            fs::remove_file(&segment.path).map_err(io_at("deleting segment", &segment.path))?;
        }
        if removed {
            self.sync_dir()?;
        }
        let sync = self.syncs();
        self.tail().cut_from(index, sync)
    }

    /// Reads from disk the terms from `from` to `to` held in one segment,
    /// stopping once about `budget` bytes are read (at least one term).
    fn read_terms(&self, from: Index, to: Index, budget: usize) -> Result<Vec<Term>, StoreError> {
        let segment = self.segment_of(from);
        let last = to.min(segment.end() - 1);
        let (start, mut end) = segment.span(from);
        let mut upto = from;
        while upto < last && end - start < budget as u64 {
            upto += 1;
            end = segment.span(upto).1;
        }

        let bytes = segment.read(start, end)?;
        decode_region(segment, start, &bytes, from)
    }
}

impl LogStore for FileStore {
    fn hard_state(&self) -> HardState {
        self.hard
    }

    fn save_hard_state(&mut self, state: HardState) -> Result<(), StoreError> {
        self.check_writable()?;
        let result = write_hard_state(&self.dir, state, self.syncs());
        self.poison_on_err(result)?;
        self.hard = state;
        Ok(())
    }

    fn append(&mut self, terms: &[Term]) -> Result<(), StoreError> {
        self.write_terms(terms, true)
    }

    fn append_deferred(&mut self, terms: &[Term]) -> Result<bool, StoreError> {
        self.write_terms(terms, false)?;
        Ok(self.unsynced)
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        if !self.unsynced {
            return Ok(());
        }
        self.check_writable()?;
        let result = self.tail().sync();
        self.poison_on_err(result)?;
        self.unsynced = false;
        Ok(())
    }

    fn truncate_from(&mut self, index: Index) -> Result<(), StoreError> {
        let index = index.max(1);
        if index > self.last_index {
            return Ok(());
        }
        if index < self.first_index() {
            return Err(StoreError::Invalid(format!(
                "truncate from {index} would remove terms before the first index {}",
                self.first_index()
            )));
        }
        self.check_writable()?;

        let result = self.cut_files_from(index);
        self.poison_on_err(result)?;
        // Cutting syncs the segment, and with it any deferred append.
        self.unsynced &= !self.syncs();
        self.last_index = index - 1;
        self.epochs.truncate_from(index);
        self.cache.truncate_from(index);
        Ok(())
    }

    fn first_index(&self) -> Index {
        self.segments.first().map_or(1, |s| s.first)
    }

    fn last_index(&self) -> Index {
        self.last_index
    }

    fn epoch_of(&self, index: Index) -> Option<Epoch> {
        if index == 0 {
            return Some(0);
        }
        if index < self.first_index() || index > self.last_index {
            return None;
        }
        self.epochs.get(index)
    }

    fn terms(&self, from: Index, to: Index, max_bytes: usize) -> Result<Vec<Term>, StoreError> {
        if from == 0 || from < self.first_index() || from > to || to > self.last_index {
            return Err(StoreError::Invalid(format!(
                "read of {from}..={to} outside {}..={}",
                self.first_index(),
                self.last_index
            )));
        }

        let mut out = Budget { terms: Vec::new(), bytes: 0, max: max_bytes, full: false };
        let cached_from = self.cache.first_index().unwrap_or(Index::MAX);
        let mut index = from;
        while index <= to && !out.full() {
            let batch = match self.cache.get(index) {
                Some(term) => vec![term.clone()],
                None => self.read_terms(index, to.min(cached_from - 1), out.left())?,
            };
            index += batch.len() as Index;
            for term in batch {
                if !out.take(term) {
                    break;
                }
            }
        }
        Ok(out.terms)
    }
}

/// Terms gathered up to a byte budget of [`Term::size_hint`], never fewer
/// than one.
struct Budget {
    terms: Vec<Term>,
    bytes: usize,
    max: usize,
    full: bool,
}

impl Budget {
    /// Takes `term` unless it would pass the budget (and is not the first).
    fn take(&mut self, term: Term) -> bool {
        let bytes = self.bytes + term.size_hint();
        if !self.terms.is_empty() && bytes > self.max {
            self.full = true;
            return false;
        }
        self.bytes = bytes;
        self.terms.push(term);
        true
    }

    fn full(&self) -> bool {
        self.full
    }

    fn left(&self) -> usize {
        self.max.saturating_sub(self.bytes)
    }
}

/// Decodes the frames of `bytes`, read from `segment` at `start`, which hold
/// consecutive terms from `first` on.
fn decode_region(
    segment: &Segment,
    start: u64,
    bytes: &[u8],
    first: Index,
) -> Result<Vec<Term>, StoreError> {
    let mut terms = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let expected = first + terms.len() as Index;
        let corrupt = |detail: String| StoreError::Corrupt {
            path: segment.path.clone(),
            offset: start + at as u64,
            detail: format!("{detail} (changed since the store opened)"),
        };
        let (body, next) =
            record::parse(bytes, at, usize::MAX).map_err(|e| corrupt(e.to_string()))?;
        let term: Term = record::decode(body).map_err(corrupt)?;
        if term.index != expected {
            return Err(corrupt(format!("index {} where index {expected} belongs", term.index)));
        }
        terms.push(term);
        at = next;
    }
    Ok(terms)
}

/// A closure turning an I/O error into [`StoreError::Io`] that names the
/// operation and the file.
pub(crate) fn io_at<'a>(op: &'a str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io { context: format!("{op} {}", path.display()), source }
}

/// Makes the creation, renaming and deletion of files in `dir` durable.
///
/// # Errors
/// The directory cannot be opened or synced.
#[cfg(unix)]
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_at("syncing directory", dir))
}

/// Directory entries are durable with their files on this platform.
#[cfg(not(unix))]
pub(crate) fn sync_dir(_dir: &Path) -> Result<(), StoreError> {
    Ok(())
}

/// Creates `dir` when it is missing, and makes its entry durable.
fn create_dir(dir: &Path, sync: SyncPolicy) -> Result<(), StoreError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(io_at("creating directory", dir))?;
    match dir.parent() {
        Some(parent) if sync == SyncPolicy::Always && !parent.as_os_str().is_empty() => {
            sync_dir(parent)
        }
        _ => Ok(()),
    }
}

/// Takes the lock file of `dir`, refused while another store holds it.
fn lock_dir(dir: &Path) -> Result<File, StoreError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_at("opening lock file", &path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(StoreError::Locked { path }),
        Err(TryLockError::Error(e)) => Err(io_at("locking", &path)(e)),
    }
}

/// The saved hard state of `dir`, the default one when none was saved. A
/// temporary file left by a crash during a save is removed.
fn read_hard_state(dir: &Path) -> Result<HardState, StoreError> {
    let tmp = dir.join(HARD_STATE_TMP);
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_at("deleting", &tmp)(e)),
        _ => {}
    }

    let path = dir.join(HARD_STATE_FILE);
    let bytes = match fs::read(&path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(HardState::default()),
        other => other.map_err(io_at("reading", &path))?,
    };
    let corrupt = |detail: String| StoreError::Corrupt { path: path.clone(), offset: 0, detail };
    let (body, end) = record::parse(&bytes, 0, bytes.len()).map_err(|e| corrupt(e.to_string()))?;
    if end != bytes.len() {
        return Err(corrupt(format!("{} bytes after the hard state", bytes.len() - end)));
    }
    record::decode(body).map_err(corrupt)
}

/// Replaces the hard state of `dir` atomically, durably when `sync` is set.
fn write_hard_state(dir: &Path, state: HardState, sync: bool) -> Result<(), StoreError> {
    let mut bytes = Vec::new();
    record::encode(&state, MAX_RECORD_CEILING, &mut bytes).map_err(StoreError::Invalid)?;

    let tmp = dir.join(HARD_STATE_TMP);
    let mut file = File::create(&tmp).map_err(io_at("creating", &tmp))?;
    file.write_all(&bytes).map_err(io_at("writing", &tmp))?;
    if sync {
        file.sync_all().map_err(io_at("syncing", &tmp))?;
    }
    drop(file);

    let path = dir.join(HARD_STATE_FILE);
    fs::rename(&tmp, &path).map_err(io_at("renaming over", &path))?;
    if sync {
        sync_dir(dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::TermKind;

    struct Dir(PathBuf);

    impl Dir {
        fn new(tag: &str) -> Self {
            let name = format!("hookraft-unit-{tag}-{}", std::process::id());
            let path = std::env::temp_dir().join(name);
            let _ = fs::remove_dir_all(&path);
            Dir(path)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn content(index: Index, len: usize) -> Term {
        Term { index, epoch: 1, kind: TermKind::Content(vec![index as u8; len].into()) }
    }

    #[test]
    fn options_are_checked() {
        assert!(FileStoreOptions::default().validate().is_ok());
        for bad in [
            FileStoreOptions { segment_size: 0, ..Default::default() },
            FileStoreOptions { max_record_size: 0, ..Default::default() },
            FileStoreOptions { max_record_size: MAX_RECORD_CEILING + 1, ..Default::default() },
        ] {
            assert!(matches!(bad.validate(), Err(StoreError::Invalid(_))));
        }
    }

    #[test]
    fn a_term_larger_than_a_segment_goes_alone() {
        let dir = Dir::new("alone");
        let options = FileStoreOptions { segment_size: 100, cache_terms: 0, ..Default::default() };
        let mut store = FileStore::open(&dir.0, options).unwrap();
        let terms = [content(1, 10), content(2, 500), content(3, 10)];
        store.append(&terms).unwrap();

        assert_eq!(store.segment_count(), 3);
        assert!(store.segments.iter().all(|s| s.offsets.len() == 1));
        assert_eq!(store.terms(1, 3, usize::MAX).unwrap(), terms);
    }

    #[test]
    fn damage_after_opening_is_reported_on_read() {
        let dir = Dir::new("late-damage");
        let options = FileStoreOptions { cache_terms: 1, ..Default::default() };
        let mut store = FileStore::open(&dir.0, options).unwrap();
        store.append(&[content(1, 50), content(2, 50)]).unwrap();

        let segment = &store.segments[0];
        let mut bytes = fs::read(&segment.path).unwrap();
        bytes[20] ^= 0xff;
        fs::write(&segment.path, bytes).unwrap();

        // Index 2 is cached; index 1 comes from the damaged file.
        assert_eq!(store.terms(2, 2, usize::MAX).unwrap(), [content(2, 50)]);
        match store.terms(1, 2, usize::MAX) {
            Err(StoreError::Corrupt { offset: 0, detail, .. }) => {
                assert!(detail.contains("checksum"), "{detail}")
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }
}
