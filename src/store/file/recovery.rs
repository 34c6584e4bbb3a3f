//! Rebuilding the store's memory from its segment files when it opens.
//!
//! Every record of every segment is read and checked. The one damage that is
//! repaired is a torn tail: a bad record at the end of the last segment with
//! no valid record after it, which is what a crash in the middle of a write
//! leaves (the write was never acknowledged). Anything else, a bad record
//! with valid ones after it, a bad record in an earlier segment, or a gap
//! between indexes, is reported as [`StoreError::Corrupt`]: a node must not
//! start on a log with a hole in it.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::index::{EpochRuns, TailCache};
use super::record::{self, BadFrame};
use super::segment::{self, Segment};
use super::{io_at, sync_dir, FileStoreOptions, SyncPolicy};
use crate::store::StoreError;
use crate::types::{Index, Term};

/// What the segment files hold, ready for the store.
pub(crate) struct Recovered {
    /// Never empty: a fresh directory gets one empty segment from index 1.
    pub(crate) segments: Vec<Segment>,
    pub(crate) epochs: EpochRuns,
    pub(crate) cache: TailCache,
}

/// Reads and checks every segment in `dir`, cutting a torn tail away.
///
/// # Errors
/// [`StoreError::Corrupt`] for damage that is not a torn tail, and
/// [`StoreError::Io`] when a file cannot be listed, read or repaired.
pub(crate) fn recover(dir: &Path, options: &FileStoreOptions) -> Result<Recovered, StoreError> {
    let found = list_segments(dir)?;
    let mut out = Recovered {
        segments: Vec::with_capacity(found.len().max(1)),
        epochs: EpochRuns::default(),
        cache: TailCache::new(options.cache_terms),
    };

    let count = found.len();
    for (i, (first, path)) in found.into_iter().enumerate() {
        check_follows(out.segments.last(), first, &path)?;
        let segment = Segment::open(path, first)?;
        let segment = scan(segment, i + 1 == count, options, &mut out)?;
        out.segments.push(segment);
    }

    if out.segments.is_empty() {
        out.segments.push(Segment::create(dir, 1)?);
        if options.sync == SyncPolicy::Always {
            sync_dir(dir)?;
        }
    }
    Ok(out)
}

/// The segment files of `dir` as `(first index, path)`, by index.
fn list_segments(dir: &Path) -> Result<Vec<(Index, PathBuf)>, StoreError> {
    let mut found = Vec::new();
    let entries = fs::read_dir(dir).map_err(io_at("listing directory", dir))?;
    for entry in entries {
        let entry = entry.map_err(io_at("listing directory", dir))?;
        let name = entry.file_name();
        if let Some(first) = name.to_str().and_then(segment::parse_name) {
            found.push((first, entry.path()));
        }
    }
    found.sort_unstable_by_key(|&(first, _)| first);
    Ok(found)
}

/// Refuses a segment that does not start right after the one before it.
fn check_follows(before: Option<&Segment>, first: Index, path: &Path) -> Result<(), StoreError> {
    let expected = before.map_or(first.max(1), Segment::end);
    if first == expected {
        return Ok(());
    }
    let detail = match before {
        Some(b) => format!(
            "segment starts at index {first}, but {} ends at index {}",
            b.path.display(),
            expected - 1
        ),
        None => "a segment cannot start at index 0".to_string(),
    };
    Err(StoreError::Corrupt { path: path.to_path_buf(), offset: 0, detail })
}

/// Reads every record of `segment`, recording them in `out`, and cuts a torn
/// tail when `last` is set.
fn scan(
    mut segment: Segment,
    last: bool,
    options: &FileStoreOptions,
    out: &mut Recovered,
) -> Result<Segment, StoreError> {
    let bytes = read_whole(&segment)?;
    let max = options.max_record_size;

    let mut at = 0;
    while at < bytes.len() {
        match record::parse(&bytes, at, max) {
            Ok((body, next)) => {
                let term = decode_term(&segment, at, body)?;
                out.epochs.push(term.index, term.epoch);
                out.cache.push(term);
                segment.offsets.push(at as u64);
                at = next;
            }
            Err(bad) => return repair_tail(segment, &bytes, at, bad, last, options),
        }
    }
    segment.len = at as u64;
    Ok(segment)
}

fn read_whole(segment: &Segment) -> Result<Vec<u8>, StoreError> {
    let size = segment.file.metadata().map_or(0, |m| m.len());
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    (&segment.file).read_to_end(&mut bytes).map_err(io_at("reading segment", &segment.path))?;
    Ok(bytes)
}

/// Decodes the record at `at`, which must hold the segment's next index.
fn decode_term(segment: &Segment, at: usize, body: &[u8]) -> Result<Term, StoreError> {
    let corrupt =
        |detail| StoreError::Corrupt { path: segment.path.clone(), offset: at as u64, detail };
    let term: Term =
        record::decode(body).map_err(|e| corrupt(format!("undecodable record: {e}")))?;
    if term.index != segment.end() {
        return Err(corrupt(format!(
            "record holds index {} where index {} belongs",
            term.index,
            segment.end()
        )));
    }
    Ok(term)
}

/// Handles the bad record at `at`: cut away when it is a torn tail, reported
/// otherwise.
fn repair_tail(
    mut segment: Segment,
    bytes: &[u8],
    at: usize,
    bad: BadFrame,
    last: bool,
    options: &FileStoreOptions,
) -> Result<Segment, StoreError> {
    let expected = segment.end();
    let detail = if !last {
        format!("{bad} in a segment that is not the last")
    } else if valid_record_after(bytes, at, options.max_record_size, expected) {
        format!("{bad}, with valid records after it")
    } else {
        log::info!(
            "file store recovery: cut torn tail path={} offset={at} dropped_bytes={} cause=\"{bad}\" last_index={}",
            segment.path.display(),
            bytes.len() - at,
            expected - 1
        );
        segment.cut_at(at as u64, options.sync == SyncPolicy::Always)?;
        return Ok(segment);
    };
    Err(StoreError::Corrupt { path: segment.path.clone(), offset: at as u64, detail })
}

/// Whether a valid record of index `expected` or later starts anywhere after
/// the bad record at `bad_at`. Its length may be the damaged part, so every
/// byte offset is tried.
///
/// FIXME: after a power failure (not a process crash) the disk may have
/// kept a later page of the last, never-acknowledged write but not an
/// earlier one. That tail is then a bad record followed by a valid one and
/// is reported as corrupt, although cutting it would lose nothing
/// acknowledged. Telling the two apart needs a marker of the last synced
/// offset, which the segment format does not have yet.
fn valid_record_after(bytes: &[u8], bad_at: usize, max: usize, expected: Index) -> bool {
    (bad_at + 1..bytes.len()).any(|at| {
        record::parse(bytes, at, max)
            .ok()
            .and_then(|(body, _)| record::decode::<Term>(body).ok())
            .is_some_and(|term| term.index >= expected)
    })
}
