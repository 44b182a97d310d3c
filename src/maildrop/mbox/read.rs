//! Reading an mbox into the scanner, under the delivery locks: the whole file, or only what follows
//! the last message of an index that still describes it; and a message's header, when its unique-id
//! needs a digest of it. The format rules are `scan`'s; whether the file still holds what was scanned
//! is `verify`'s.

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use md5::{Digest, Md5};

use memchr::memmem;

use super::scan::{MIN_FRAGMENT, SEPARATOR, ScannedMessage, Scanner};
use super::stamp::Stamp;
use super::verify::from_line_intact;
use super::{Mbox, index};
use crate::lock::{DeliveryLock, SessionLock};
use crate::maildrop::{FileRange, MaildropError, read_some_at};

/// Read size while scanning: large sequential reads.
pub(super) const READ_CHUNK: usize = 1 << 20;

impl Mbox {
    /// Scans all of the mbox, under the delivery locks; with the messages and the octets scanned, the
    /// stamp that lets UPDATE skip scanning it again, if it counts. The session lock's file is touched
    /// first, then the mbox's metadata read, both before the scan (see `stamp`).
    pub(super) fn scan_whole(
        &self,
        file: &File,
        lock: &DeliveryLock,
    ) -> Result<(Vec<ScannedMessage>, u64, Option<Stamp>), MaildropError> {
        let clock = self._session.as_ref().map(SessionLock::touch);
        let before = file
            .metadata()
            .map_err(|e| MaildropError::io(&self.path, e))?;
        let (scanned, size) =
            scan_file(&self.path, file, None, self.want_x_uidl, lock, READ_CHUNK)?;
        let stamp = match clock {
            Some(Ok(clock)) if size == before.len() => Stamp::taken(&before, &clock),
            _ => None,
        };
        Ok((scanned, size, stamp))
    }
}

/// The messages from the mbox's index where it still describes the file (see `index`): then only the
/// last indexed message and what follows it are read. Returns the messages, the octets scanned, and
/// whether the index must be written again (mail was appended); `None` when the index cannot be used
/// and the whole mbox must be scanned.
pub(super) fn scan_from_index(
    path: &Path,
    file: &File,
    want_x_uidl: bool,
    lock: &DeliveryLock,
) -> Result<Option<(Vec<ScannedMessage>, u64, bool)>, MaildropError> {
    let Some((key, mut messages)) = indexed_prefix(path, file, want_x_uidl)? else {
        return Ok(None);
    };
    let last = messages.pop().expect("an index holds at least one message");
    let scan = Scan {
        path,
        file,
        want_x_uidl,
        lock,
        chunk: READ_CHUNK,
    };
    match scan.range(last.from_offset, None) {
        Ok((tail, size))
            if tail
                .first()
                .is_some_and(|t| t.from_digest == last.from_digest) =>
        {
            let stale = size != key.size || tail.len() != 1 || tail[0] != last;
            messages.extend(tail);
            Ok(Some((messages, size, stale)))
        }
        Ok(_) | Err(_) => {
            log::debug!(
                "{}: the last indexed message moved; scanning it all",
                path.display()
            );
            Ok(None)
        }
    }
}

/// The index's key and messages when it passes every check against the mbox but the last rescan.
fn indexed_prefix(
    path: &Path,
    file: &File,
    want_x_uidl: bool,
) -> Result<Option<(index::Key, Vec<ScannedMessage>)>, MaildropError> {
    let meta = file.metadata().map_err(|e| MaildropError::io(path, e))?;
    let Some((key, messages)) = index::load(path, meta.uid()) else {
        return Ok(None);
    };
    let mut intact = key.admits(&meta, want_x_uidl);
    for i in index::sample_indexes(messages.len()) {
        if !intact {
            break;
        }
        intact = from_line_intact(file, &messages[i]).map_err(|e| MaildropError::io(path, e))?;
    }
    if !intact {
        log::debug!(
            "{}: index out of date; scanning the whole mbox",
            path.display()
        );
        return Ok(None);
    }
    Ok(Some((key, messages)))
}

/// Scans `file` from the start to its end, or to `limit`. Returns the messages and the octets scanned.
pub(super) fn scan_file(
    path: &Path,
    file: &File,
    limit: Option<u64>,
    want_x_uidl: bool,
    lock: &DeliveryLock,
    chunk: usize,
) -> Result<(Vec<ScannedMessage>, u64), MaildropError> {
    let scan = Scan {
        path,
        file,
        want_x_uidl,
        lock,
        chunk,
    };
    scan.range(0, limit)
}

/// One scan of an mbox: what its pieces share.
#[derive(Clone, Copy)]
struct Scan<'a> {
    path: &'a Path,
    file: &'a File,
    want_x_uidl: bool,
    /// The delivery locks, kept fresh while the scan reads.
    lock: &'a DeliveryLock,
    /// Read size.
    chunk: usize,
}

impl Scan<'_> {
    /// Scans from `start`, where a `From ` line must begin, to the end of the file or to `limit`. A
    /// large range is cut in two at a message boundary near its middle and the halves scanned at once,
    /// the second in a helper thread: a first login to a large mbox waits for the scan, and the scan
    /// is CPU-bound (MD5 of headers, searches through bodies) once the file is in the page cache.
    fn range(
        self,
        start: u64,
        limit: Option<u64>,
    ) -> Result<(Vec<ScannedMessage>, u64), MaildropError> {
        let io_err = |e| MaildropError::io(self.path, e);
        // Under the delivery locks the file does not grow, so its size now is where the scan ends.
        let end = match limit {
            Some(limit) => limit,
            None => self.file.metadata().map_err(io_err)?.len(),
        };
        let split = if end.saturating_sub(start) >= SPLIT_MIN {
            boundary_after(self.file, start + (end - start) / 2, end).map_err(io_err)?
        } else {
            None
        };
        let Some(split) = split else {
            return self.piece(start, limit);
        };
        let halves = std::thread::scope(|s| {
            let tail = std::thread::Builder::new()
                .name("mbox-scan".into())
                .stack_size(crate::maildrop::HELPER_STACK)
                .spawn_scoped(s, || self.piece(split, limit));
            // No thread to be had (a process or memory limit): one scan, as for a small mbox.
            let tail = tail.ok()?;
            let head = self.piece(start, Some(split));
            let tail = tail
                .join()
                .unwrap_or_else(|panicked| std::panic::resume_unwind(panicked));
            Some((head, tail))
        });
        let Some((head, tail)) = halves else {
            return self.piece(start, limit);
        };
        let ((mut messages, head_end), (tail, size)) = (head?, tail?);
        // The head stops where the tail's first `From ` line begins, so the two join as one scan
        // would have; unless a writer that ignores the locks changed the file meanwhile: then one
        // scan decides.
        if head_end != split || tail.first().map(|m| m.from_offset) != Some(split) {
            log::debug!(
                "{}: changed during the scan; scanning it again",
                self.path.display()
            );
            return self.piece(start, limit);
        }
        messages.extend(tail);
        #[cfg(test)]
        JOINED_HALVES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok((messages, size))
    }

    /// Scans from `start`, where a `From ` line must begin, to the end of the file or to `limit`, in
    /// this thread.
    fn piece(
        self,
        start: u64,
        limit: Option<u64>,
    ) -> Result<(Vec<ScannedMessage>, u64), MaildropError> {
        let io_err = |e| MaildropError::io(self.path, e);
        let mut scanner = Scanner::starting_at(start, self.want_x_uidl);
        // The scanner leaves fewer than MIN_FRAGMENT octets unconsumed, so this buffer never grows.
        let mut buf = vec![0u8; self.chunk + MIN_FRAGMENT];
        let (mut kept, mut read_pos) = (0usize, start);
        let limit = limit.unwrap_or(u64::MAX);
        loop {
            let room = self
                .chunk
                .min((limit - read_pos).try_into().unwrap_or(usize::MAX));
            let n =
                read_some_at(self.file, &mut buf[kept..kept + room], read_pos).map_err(io_err)?;
            read_pos += n as u64;
            let eof = n == 0;
            let used = scanner
                .feed(&buf[..kept + n], eof)
                .map_err(|_| not_mbox(self.path))?;
            buf.copy_within(used..kept + n, 0);
            kept = kept + n - used;
            if eof {
                break;
            }
            self.lock.refresh().map_err(io_err)?;
        }
        Ok((scanner.finish(), read_pos))
    }
}

/// Ranges at least this large are scanned in two halves at once (see `Scan::range`). Below it a scan
/// takes a few milliseconds (a first login to the bench's 100,000-message mbox of about 100 MB, scan
/// and UIDL listing, took 0.08-0.09 s in one thread), too little to start a thread for at every login
/// that scans.
pub(super) const SPLIT_MIN: u64 = 8 << 20;
/// Scans whose two halves were scanned at once and joined: a test checks that a large scan really is
/// shared (its results alone cannot tell, one scan giving the same).
#[cfg(test)]
pub(super) static JOINED_HALVES: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);
/// How far past the middle a message boundary is looked for before the range is scanned whole.
pub(super) const BOUNDARY_SEARCH: u64 = 4 << 20;

/// The offset of the first `From ` line that begins a message at or after `from` (it follows an empty
/// line: see `scan`), if one begins before `end` and within `BOUNDARY_SEARCH` of `from`.
pub(super) fn boundary_after(file: &File, from: u64, end: u64) -> io::Result<Option<u64>> {
    const WINDOW: usize = 64 * 1024;
    let finder = memmem::Finder::new(SEPARATOR);
    let stop = end.min(from.saturating_add(BOUNDARY_SEARCH));
    // The window starts two octets early, so that `\n\n` just before `from` counts too, and each
    // next window overlaps the last by the separator's length less one.
    let mut at = from.saturating_sub(2);
    let mut buf = vec![0u8; WINDOW];
    while at < stop {
        let want = usize::try_from(stop - at).unwrap_or(WINDOW).min(WINDOW);
        let n = read_some_at(file, &mut buf[..want], at)?;
        if n == 0 {
            break;
        }
        if let Some(i) = finder.find(&buf[..n]) {
            let split = at + i as u64 + 2;
            return Ok((split >= from && split < end).then_some(split));
        }
        if at + (n as u64) >= stop {
            break;
        }
        at += n.saturating_sub(SEPARATOR.len() - 1).max(1) as u64;
    }
    Ok(None)
}

fn not_mbox(path: &Path) -> MaildropError {
    let e = io::Error::new(
        io::ErrorKind::InvalidData,
        "not an mbox: it does not begin with a \"From \" line",
    );
    MaildropError::io(path, e)
}

/// MD5 of a message's `From ` line and header, for the unique-id suffix (see `uidl`).
pub(super) fn header_md5(file: &File, m: &ScannedMessage) -> io::Result<[u8; 16]> {
    let mut md5 = Md5::new();
    io::copy(
        &mut FileRange::new(file, m.from_offset, m.header_end),
        &mut Md5Writer(&mut md5),
    )?;
    Ok(md5.finalize().into())
}

struct Md5Writer<'a>(&'a mut Md5);

impl io::Write for Md5Writer<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
