//! What the user has: the `Maildrop` trait over Maildir and mbox, the message list it yields, and errors
//! that carry their path and know their response code.

pub mod cache;
pub mod location;
pub mod maildir;
pub mod maildir_uidl;
pub mod mbox;
pub mod uidl_format;

use std::borrow::Borrow;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::libc;

use crate::proto::reply::RespCode;
use location::Format;

/// Stack of the helper threads a session starts to share its work on a large maildrop (the mbox scan of
/// a first login, Maildir counting, steps of an mbox expunge), so the session thread's own stays as small
/// as it is. Helpers keep their buffers on the heap: 32 KiB is enough even for a debug build printing a
/// panic's backtrace; this is twice that.
pub const HELPER_STACK: usize = 64 * 1024;

/// RFC 1939 section 7: "The unique-id of a message ... consists of one to 70 characters in the range
/// 0x21 to 0x7E".
pub const MAX_UID: usize = 70;

/// Whether `id` may be announced as a unique-id as it is (RFC 1939 section 7). Every source of ids
/// (mbox `X-UIDL:`, Maildir base names, `dovecot-uidlist`) is judged by this one rule.
pub fn is_valid_uid(id: &[u8]) -> bool {
    (1..=MAX_UID).contains(&id.len()) && id.iter().all(|b| (0x21..=0x7e).contains(b))
}

/// One message as the session lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageInfo {
    /// Octets exactly as RETR sends them (RFC 1939 section 5).
    pub octets: u64,
    /// The unique-id listing (RFC 1939 section 7): 1 to 70 octets in 0x21..=0x7E, stable across sessions.
    pub uid: Box<str>,
}

/// A maildrop opened and locked for one session. Dropping it releases the locks and changes nothing.
pub trait Maildrop: Send {
    /// The messages in delivery order; index 0 is message number 1.
    fn messages(&self) -> &[MessageInfo];
    /// The stored bytes of one message (LF or CRLF line ends, no mbox `From ` line), streamed.
    fn open_message(&mut self, index: usize) -> Result<Box<dyn Read + '_>, MaildropError>;
    /// After the last octet RETR or TOP reads of the message at `index`, before the terminator goes
    /// out: whether what was read since `open_message` is still the message listed, or a
    /// `MaildropError::Changed` saying why not. Holds no lock and costs a few small reads at most: it
    /// runs at every RETR. The default, Maildir's, is yes: a Maildir message file is never written
    /// in place, and one replaced by another is found when it is opened.
    fn check_still_listed(&mut self, _index: usize) -> Result<(), MaildropError> {
        Ok(())
    }
    /// UPDATE: removes the messages at `deleted` (0-based, ascending) and nothing else. Consumes the
    /// maildrop: nothing is removed unless the session reached UPDATE. When this returns, the removal
    /// is on disk; the returned `Tidy` holds what is left that the client need not wait for.
    fn expunge(self: Box<Self>, deleted: &[usize]) -> Result<Tidy, MaildropError>;
}

/// Work an UPDATE leaves for after its reply: removing an mbox's crash-recovery file, writing its
/// index, freeing the message lists, and only then releasing the session lock. Dropping it does the
/// work (the session keeps it until the reply has left and the connection is closed). None of it
/// decides what the maildrop holds: if it never runs, the next session finds a recovery file of a
/// completed expunge, or no index, and copes.
#[must_use = "dropping it at once does the work before the reply"]
pub struct Tidy(Option<Box<dyn FnOnce() + Send>>);

impl Tidy {
    pub fn nothing() -> Tidy {
        Tidy(None)
    }

    pub fn later(work: impl FnOnce() + Send + 'static) -> Tidy {
        Tidy(Some(Box::new(work)))
    }
}

impl Drop for Tidy {
    fn drop(&mut self) {
        if let Some(work) = self.0.take() {
            work();
        }
    }
}

impl fmt::Debug for Tidy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Tidy(pending)"
        } else {
            "Tidy(nothing)"
        })
    }
}

/// A maildrop failure. `Display` is for the log (path and errno); the client gets `client_text`.
#[derive(Debug)]
pub enum MaildropError {
    /// Another session holds the maildrop's lock.
    InUse { path: PathBuf },
    /// An I/O error on `path`.
    Io { path: PathBuf, source: io::Error },
    /// The maildrop changed under us (e.g. an mbox rewritten by a mail reader) or is malformed.
    Changed { path: PathBuf, reason: String },
    /// The user name or template cannot give a safe path.
    BadPath { reason: String },
}

impl MaildropError {
    pub fn io(path: &Path, source: io::Error) -> MaildropError {
        MaildropError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// RFC 2449/3206 response code for this failure.
    pub fn resp_code(&self) -> RespCode {
        match self {
            MaildropError::InUse { .. } => RespCode::InUse,
            MaildropError::Io { source, .. } if is_permanent(source) => RespCode::SysPerm,
            MaildropError::Io { .. } | MaildropError::Changed { .. } => RespCode::SysTemp,
            MaildropError::BadPath { .. } => RespCode::SysPerm,
        }
    }

    /// The message (or file) is no longer there: another program removed it.
    pub fn is_gone(&self) -> bool {
        matches!(self, MaildropError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }

    /// A terse reason for the client, without paths.
    pub fn client_text(&self) -> &'static str {
        match self {
            MaildropError::InUse { .. } => "maildrop already locked by another session",
            MaildropError::Io { .. } => "cannot access the maildrop",
            MaildropError::Changed { .. } => "maildrop changed during the session, nothing deleted",
            MaildropError::BadPath { .. } => "no maildrop for this user",
        }
    }
}

/// A maildrop that does not exist is empty (a new user, no mail yet), but one whose directory does
/// not exist either is more likely a mail location that names the wrong place (a typo in the
/// template, a home directory not made): every user would see an empty maildrop, so it is logged.
#[cold]
#[inline(never)]
pub(crate) fn warn_if_directory_missing(maildrop: &Path) {
    if let Some(parent) = maildrop.parent().filter(|p| !p.as_os_str().is_empty())
        && !parent.exists()
    {
        log::warn!(
            "{}: no such directory, so an empty maildrop at {} (is the mail location right?)",
            parent.display(),
            maildrop.display()
        );
    }
}

fn is_permanent(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::PermissionDenied
            | io::ErrorKind::InvalidData
            | io::ErrorKind::IsADirectory
            | io::ErrorKind::NotADirectory
    )
}

impl fmt::Display for MaildropError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaildropError::InUse { path } => {
                write!(f, "{}: locked by another session", path.display())
            }
            MaildropError::Io { path, source } => write!(f, "{}: {}", path.display(), source),
            MaildropError::Changed { path, reason } => write!(f, "{}: {}", path.display(), reason),
            MaildropError::BadPath { reason } => f.write_str(reason),
        }
    }
}

impl std::error::Error for MaildropError {}

/// Settings that change how a backend reads a maildrop (from the configuration).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Options {
    /// mbox only: where unique-ids come from (`mbox-uidl`).
    pub mbox_uidl: mbox::UidlSource,
    /// Maildir only: where unique-ids come from (`maildir-uidl`).
    pub maildir_uidl: maildir_uidl::MaildirUidl,
    /// Maildir only: the `pop3_uidl_format` of Dovecot's ids (`dovecot-uidl-format`).
    pub dovecot_uidl_format: uidl_format::UidlFormat,
}

/// Writes `bytes` to `dest` through `temp` (mode 0600) and a rename, so a reader sees the old file or
/// the new, whole. `temp` is created anew, never followed as a symlink: one left by an earlier
/// failure is removed first, and one that is not ours makes the exclusive create fail. No fsync: the
/// caches written so fail their checks when lost or torn, and are rebuilt.
fn replace_file(temp: &Path, dest: &Path, bytes: &[u8]) -> io::Result<()> {
    let _ = fs::remove_file(temp);
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(temp)
        .and_then(|mut file| file.write_all(bytes))
        .and_then(|()| fs::rename(temp, dest));
    if written.is_err() {
        let _ = fs::remove_file(temp);
    }
    written
}

/// Opens for reading a file poplar keeps beside a maildrop (a cache, an index, a recovery file): never
/// through a symlink, never waiting on a FIFO (whose open waits for a writer, here with the maildrop's
/// locks held). `Ok(None)` when there is none; an `InvalidData` error when something else than a regular
/// file has its name.
fn open_kept_file(path: &Path) -> io::Result<Option<(File, fs::Metadata)>> {
    let opened = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path);
    let file = match opened {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(not_regular()),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(not_regular());
    }
    Ok(Some((file, meta)))
}

fn not_regular() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "not a regular file")
}

/// Whether a kept file (see `open_kept_file`) is one a session of this maildrop wrote: owned by the
/// server's user or by `owner`, the maildrop's, and writable by no one else. In a shared spool (mode
/// 2775) anyone who may create files there could have put one in its place.
fn written_by_us(meta: &fs::Metadata, owner: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let ours = meta.uid() == nix::unistd::geteuid().as_raw() || meta.uid() == owner;
    ours && meta.mode() & 0o022 == 0
}

/// The octets `pos..end` of a message's file, read with pread (no shared file position to disturb).
/// The file ending before `end` is an error, not the end of the message: one cut short while it is
/// served must not go out as a whole message with its terminator.
pub(crate) struct FileRange<F> {
    file: F,
    pos: u64,
    end: u64,
}

impl<F: Borrow<File>> FileRange<F> {
    pub(crate) fn new(file: F, pos: u64, end: u64) -> FileRange<F> {
        FileRange { file, pos, end }
    }
}

impl<F: Borrow<File>> Read for FileRange<F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf
            .len()
            .min((self.end - self.pos).try_into().unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        match read_some_at(self.file.borrow(), &mut buf[..want], self.pos)? {
            0 => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "message file shorter than when it was opened",
            )),
            n => {
                self.pos += n as u64;
                Ok(n)
            }
        }
    }
}

/// `pread`, again after EINTR.
pub(crate) fn read_some_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    loop {
        match file.read_at(buf, offset) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// Opens and locks the maildrop at `path` in `format`.
pub fn open(
    format: Format,
    path: &Path,
    options: &Options,
    mbox_owner: Option<u32>,
) -> Result<Box<dyn Maildrop>, MaildropError> {
    match format {
        Format::Maildir => Ok(Box::new(maildir::Maildir::open_with(
            path,
            options.maildir_uidl,
            &options.dovecot_uidl_format,
        )?)),
        Format::Mbox => Ok(Box::new(mbox::Mbox::open_owned(
            path,
            options.mbox_uidl,
            mbox_owner,
        )?)),
    }
}

/// A maildrop with no messages that changes nothing: what a session holds once UPDATE consumed the real one.
pub struct Empty;

impl Maildrop for Empty {
    fn messages(&self) -> &[MessageInfo] {
        &[]
    }
    fn open_message(&mut self, index: usize) -> Result<Box<dyn Read + '_>, MaildropError> {
        Err(MaildropError::Changed {
            path: PathBuf::new(),
            reason: format!("message {index} after UPDATE"),
        })
    }
    fn expunge(self: Box<Self>, _deleted: &[usize]) -> Result<Tidy, MaildropError> {
        Ok(Tidy::nothing())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replace_file_never_writes_through_a_temp_file_it_did_not_make() {
        let dir = tempfile::tempdir().unwrap();
        let (temp, dest) = (dir.path().join("x.tmp"), dir.path().join("x"));
        // A symlink planted at the temporary name: its target is left alone.
        let target = dir.path().join("elsewhere");
        fs::write(&target, "precious").unwrap();
        std::os::unix::fs::symlink(&target, &temp).unwrap();
        replace_file(&temp, &dest, b"new").unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "precious");
        assert_eq!(fs::read_to_string(&dest).unwrap(), "new");
        assert_eq!(
            fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(!temp.exists());
        // A stale temporary file from an earlier failure is replaced, and so is the old file.
        fs::write(&temp, "stale").unwrap();
        replace_file(&temp, &dest, b"newer").unwrap();
        assert_eq!(fs::read_to_string(&dest).unwrap(), "newer");
    }
}
