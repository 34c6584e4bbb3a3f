//! One segment file: consecutive terms in frames, appended to and cut only at
//! its end. Its name holds the index of its first term, so that the order of
//! the segments and any gap between them show without reading them.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::io_at;
use crate::store::StoreError;
use crate::types::Index;

const PREFIX: &str = "seg-";
const SUFFIX: &str = ".log";

/// A segment and where each of its records starts.
#[derive(Debug)]
pub(crate) struct Segment {
    /// The index of its first term (also when it holds none yet).
    pub(crate) first: Index,
    pub(crate) path: PathBuf,
    pub(crate) file: File,
    /// Bytes of whole records; the file is never longer once opened.
    pub(crate) len: u64,
    /// Byte offset of each record, the record of `first` at position 0.
    pub(crate) offsets: Vec<u64>,
}

/// The file name of the segment whose first term is `first`.
pub(crate) fn file_name(first: Index) -> String {
    format!("{PREFIX}{first:020}{SUFFIX}")
}

/// The first index named by a segment file name, `None` for other files.
pub(crate) fn parse_name(name: &str) -> Option<Index> {
    let digits = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

impl Segment {
    /// Creates an empty segment for terms from `first` on, replacing any
    /// stray file of that name.
    ///
    /// # Errors
    /// The file cannot be created.
    pub(crate) fn create(dir: &Path, first: Index) -> Result<Self, StoreError> {
        let path = dir.join(file_name(first));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(io_at("creating segment", &path))?;
        Ok(Segment { first, path, file, len: 0, offsets: Vec::new() })
    }

    /// Opens an existing segment for reading and writing, with no record
    /// known yet.
    ///
    /// # Errors
    /// The file cannot be opened.
    pub(crate) fn open(path: PathBuf, first: Index) -> Result<Self, StoreError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_at("opening segment", &path))?;
        Ok(Segment { first, path, file, len: 0, offsets: Vec::new() })
    }

    /// The index after its last term.
    pub(crate) fn end(&self) -> Index {
        self.first + self.offsets.len() as Index
    }

    /// The byte span `start..end` of the record of `index`, which it holds.
    pub(crate) fn span(&self, index: Index) -> (u64, u64) {
        let at = (index - self.first) as usize;
        let end = self.offsets.get(at + 1).copied().unwrap_or(self.len);
        (self.offsets[at], end)
    }

    /// Writes whole frames after the last record. `starts` are the offsets of
    /// the frames inside `bytes`. Nothing is durable until [`Segment::sync`].
    ///
    /// # Errors
    /// The write fails; the segment then knows none of the new records.
    pub(crate) fn write_frames(
        &mut self,
        bytes: &[u8],
        starts: &[usize],
    ) -> Result<(), StoreError> {
        let path = &self.path;
        self.file.seek(SeekFrom::Start(self.len)).map_err(io_at("seeking in segment", path))?;
        self.file.write_all(bytes).map_err(io_at("writing segment", path))?;

        let base = self.len;
        self.offsets.extend(starts.iter().map(|&s| base + s as u64));
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Makes the written data durable (fdatasync).
    ///
    /// # Errors
    /// The operating system cannot make it durable.
    pub(crate) fn sync(&self) -> Result<(), StoreError> {
        self.file.sync_data().map_err(io_at("syncing segment", &self.path))
    }

    /// Removes the record of `index` and every later one, durably when
    /// `sync` is set. `index` may be [`Segment::end`] (nothing to remove).
    ///
    /// # Errors
    /// The file cannot be cut or synced.
    pub(crate) fn cut_from(&mut self, index: Index, sync: bool) -> Result<(), StoreError> {
        let keep = (index - self.first) as usize;
        let len = self.offsets.get(keep).copied().unwrap_or(self.len);
        self.cut_at(len, sync)?;
        self.offsets.truncate(keep);
        Ok(())
    }

    /// Cuts the file at byte `len`, durably when `sync` is set.
    ///
    /// # Errors
    /// The file cannot be cut or synced.
    pub(crate) fn cut_at(&mut self, len: u64, sync: bool) -> Result<(), StoreError> {
        self.file.set_len(len).map_err(io_at("cutting segment", &self.path))?;
        if sync {
            self.file.sync_all().map_err(io_at("syncing segment", &self.path))?;
        }
        self.len = len;
        Ok(())
    }

    /// Reads `end - start` bytes from `start`.
    ///
    /// # Errors
    /// The read fails or the file is shorter than it was when written.
    pub(crate) fn read(&self, start: u64, end: u64) -> Result<Vec<u8>, StoreError> {
        let mut buf = vec![0; (end - start) as usize];
        read_exact_at(&self.file, &mut buf, start).map_err(io_at("reading segment", &self.path))?;
        Ok(buf)
    }
}

#[cfg(unix)]
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(not(unix))]
fn read_exact_at(mut file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    use std::io::Read;
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_refuse_strangers() {
        assert_eq!(parse_name(&file_name(42)), Some(42));
        assert_eq!(parse_name(&file_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_name("seg-1.log"), None);
        assert_eq!(parse_name("seg-0000000000000000000x.log"), None);
        assert_eq!(parse_name("LOCK"), None);
    }
}
