//! TRANSACTION state handlers: STAT, LIST, RETR, DELE, NOOP, RSET, TOP, UIDL, CAPA, and QUIT → UPDATE
//! (RFC 1939 sections 5 and 6, RFC 2449 section 5).

use std::io::{self, Read, Write};

use super::table::Missing;
use super::{Outcome, Services, Stats, Step, Transaction};
use crate::maildrop::{MaildropError, Tidy};
use crate::proto::body::{Encoder, Limit};
use crate::proto::command::{Command, MsgNum};
use crate::proto::reply::{self, RespCode, Tally};

/// Size of the reads that feed the body encoder: large enough for few system calls per message, small
/// enough to be a passing cost per RETR rather than per session. With the encoded buffer it stays under
/// glibc's 128 KiB trim threshold: at 64 KiB, freeing both after each RETR returned them to the kernel
/// (an `madvise`, its TLB shootdowns and page faults on the next RETR), measured at one per message.
const READ_CHUNK: usize = 56 * 1024;
/// The smallest read: the listed size sizes the buffer, but a Maildir's comes from the file name's
/// `,W=` when there is one, which any program may write; a file far larger than its name says must not
/// be read a few octets per system call.
const MIN_READ_CHUNK: usize = 4 * 1024;

/// RETR's read and encode buffers, allocated by the first RETR or TOP and kept for the next ones: a
/// download of a whole maildrop then costs no allocation and no zeroing per message. A session that
/// never reads a message never allocates them, and one that has gone quiet gives their pages back
/// (`release_pages`): up to about 110 KiB each, which a session parked after a download would
/// otherwise hold until it ends.
#[derive(Debug, Default)]
pub(super) struct RetrBuffers {
    chunk: Vec<u8>,
    encoded: Vec<u8>,
    /// A RETR or TOP ran since the pages were last given back.
    in_use: bool,
}

impl RetrBuffers {
    pub(super) fn hold_pages(&self) -> bool {
        self.in_use
    }

    /// Gives the buffers' pages back to the kernel, keeping the allocations for the next RETR.
    pub(super) fn release_pages(&mut self) {
        crate::pages::release(&mut self.chunk);
        crate::pages::release(&mut self.encoded);
        self.in_use = false;
    }
}

pub(super) fn handle<W: Write + ?Sized>(
    tx: &mut Transaction,
    stats: &mut Stats,
    command: Command<'_>,
    services: &Services,
    after_update: &mut Option<Tidy>,
    out: &mut W,
) -> io::Result<Step> {
    match command {
        Command::Stat => {
            let (count, octets) = tx.table.totals();
            reply::ok(out, format_args!("{count} {octets}"))?;
        }
        Command::List(None) => list_all(tx, out)?,
        Command::List(Some(msg)) => match tx.table.live(msg) {
            Ok(i) => reply::ok(
                out,
                format_args!("{msg} {}", tx.maildrop.messages()[i].octets),
            )?,
            Err(missing) => no_message(out, msg, missing)?,
        },
        Command::Uidl(None) => uidl_all(tx, out)?,
        Command::Uidl(Some(msg)) => match tx.table.live(msg) {
            Ok(i) => reply::ok(out, format_args!("{msg} {}", tx.maildrop.messages()[i].uid))?,
            Err(missing) => no_message(out, msg, missing)?,
        },
        Command::Retr(msg) => send(tx, stats, msg, Limit::Whole, out)?,
        Command::Top { msg, lines } => send(tx, stats, msg, Limit::Top(lines), out)?,
        Command::Dele(msg) => match tx.table.delete(msg, tx.maildrop.messages()) {
            Ok(()) => {
                stats.dele += 1;
                reply::ok(out, format_args!("message {msg} deleted"))?;
            }
            Err(missing) => no_message(out, msg, missing)?,
        },
        Command::Noop => reply::ok(out, format_args!("nothing to do"))?,
        Command::Rset => {
            tx.table.reset();
            stats.dele = 0;
            let (count, octets) = tx.table.totals();
            reply::ok(
                out,
                format_args!(
                    "maildrop has {} ({})",
                    Tally(count as u64, "message"),
                    Tally(octets, "octet")
                ),
            )?;
        }
        // CAPA is the session's: its capabilities depend on the connection (see `Session::offer`).
        Command::Quit => {
            // Every reply before QUIT (the messages retrieved among them) goes to the kernel before
            // anything is deleted: if the connection is reset by then, the write fails and nothing
            // is. (Data the kernel took may still not reach a client that closes without reading;
            // TCP cannot tell.) After UPDATE only its own reply is left to send.
            out.flush()?;
            *after_update = update(tx, stats, services, out)?;
            return Ok(Step::Quit);
        }
        other => reply::err(
            out,
            None,
            format_args!("{} is not valid after login", other.keyword()),
        )?,
    }
    Ok(Step::Continue)
}

fn no_message<W: Write + ?Sized>(out: &mut W, msg: MsgNum, missing: Missing) -> io::Result<()> {
    match missing {
        Missing::NoSuchMessage => reply::err(out, None, format_args!("no such message {msg}")),
        Missing::Deleted => reply::err(out, None, format_args!("message {msg} already deleted")),
    }
}

fn list_all<W: Write + ?Sized>(tx: &Transaction, out: &mut W) -> io::Result<()> {
    let (count, octets) = tx.table.totals();
    reply::ok(
        out,
        format_args!(
            "{} ({})",
            Tally(count as u64, "message"),
            Tally(octets, "octet")
        ),
    )?;
    for (index, info) in tx.maildrop.messages().iter().enumerate() {
        if !tx.table.is_deleted(index) {
            reply::listing_line(out, index + 1, reply::decimal(info.octets, &mut [0; 20]))?;
        }
    }
    out.write_all(b".\r\n")
}

fn uidl_all<W: Write + ?Sized>(tx: &Transaction, out: &mut W) -> io::Result<()> {
    reply::ok(out, format_args!("unique-id listing follows"))?;
    for (index, info) in tx.maildrop.messages().iter().enumerate() {
        if !tx.table.is_deleted(index) {
            reply::listing_line(out, index + 1, info.uid.as_bytes())?;
        }
    }
    out.write_all(b".\r\n")
}

/// The read size for a message listed at `octets`: sized to the message, plus one octet so that a
/// message read whole is seen to end on the next read, within `MIN_READ_CHUNK..=READ_CHUNK`.
fn read_size(octets: u64) -> usize {
    usize::try_from(octets)
        .unwrap_or(READ_CHUNK)
        .saturating_add(1)
        .clamp(MIN_READ_CHUNK, READ_CHUNK)
}

/// RETR and TOP: stream the stored message through the body encoder. A storage error before the first
/// byte is an `-ERR`; one after `+OK` cannot be reported in-band, so it ends the connection, and so does
/// a message the maildrop finds changed once it has been read.
fn send<W: Write + ?Sized>(
    tx: &mut Transaction,
    stats: &mut Stats,
    msg: MsgNum,
    limit: Limit,
    out: &mut W,
) -> io::Result<()> {
    let index = match tx.table.live(msg) {
        Ok(index) => index,
        Err(missing) => return no_message(out, msg, missing),
    };
    let octets = tx.maildrop.messages()[index].octets;
    let mut reader = match tx.maildrop.open_message(index) {
        Ok(reader) => reader,
        // Removed by another program (an IMAP client expunged it): nothing is wrong with the system,
        // and trying again will not bring it back, so no response code (RFC 3206's SYS/TEMP and
        // SYS/PERM are for problems of the system). The next session does not list it.
        Err(e) if e.is_gone() => {
            log::info!("user={} message {msg}: {e}", tx.account.name);
            return reply::err(out, None, format_args!("message {msg} no longer exists"));
        }
        Err(e) => {
            log::error!("user={} message {msg}: {e}", tx.account.name);
            return reply::err(
                out,
                Some(e.resp_code()),
                format_args!("cannot read message {msg}"),
            );
        }
    };
    match limit {
        Limit::Whole => reply::ok(out, format_args!("{octets} octets"))?,
        Limit::Top(_) => reply::ok(out, format_args!("top of message {msg} follows"))?,
    }
    let mut encoder = Encoder::new(limit);
    let want = read_size(octets);
    let RetrBuffers {
        chunk,
        encoded,
        in_use,
    } = &mut tx.buffers;
    *in_use = true;
    if chunk.len() < want {
        chunk.resize(want, 0);
    }
    let chunk = &mut chunk[..want];
    // Encoded chunks gather here. They leave after a read that filled the chunk (more is coming); after a
    // shorter read the file has most likely ended, and the next read says so: the body then leaves with
    // its terminator, and a message smaller than a chunk with its status line too, in one `writev`.
    // (`encode_chunk` reserves room for each chunk.)
    encoded.clear();
    loop {
        let n = match reader.read(chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log::error!(
                    "user={} message {msg}: read failed after +OK: {e}",
                    tx.account.name
                );
                // The storage failed, not the client: whatever its kind (a file cut short reads as an
                // unexpected end), the session ends as an error, not as a client that went away.
                return Err(io::Error::other(e));
            }
        };
        let more = encoder.encode_chunk(&chunk[..n], encoded);
        if !more {
            break;
        }
        if n == chunk.len() {
            out.write_all(encoded)?;
            encoded.clear();
        }
    }
    // Everything to send has been read, and what has not left yet carries the terminator. No lock was
    // held while reading (an mbox's would stop delivery for as long as the client takes), so the
    // storage may have been rewritten meanwhile: the client must then not get the terminator, which
    // would have it keep what it got as the message. Closing without it is what every client takes
    // for a failed download (popa3d does the same).
    drop(reader);
    if let Err(e) = tx.maildrop.check_still_listed(index) {
        let what = match e {
            MaildropError::Changed { .. } => "changed while it was sent",
            _ => "cannot be checked once read",
        };
        // A warning, not an error: another program's doing, and the client tries again.
        log::warn!(
            "user={} message {msg}: {what}, closing without the terminator: {e}",
            tx.account.name
        );
        return Err(io::Error::other(e));
    }
    encoder.finish(encoded)?;
    out.write_all(encoded)?;
    if limit == Limit::Whole {
        stats.retr += 1;
        // Saturating: a listed size comes from a cache file the maildrop's owner can write.
        stats.bytes = stats.bytes.saturating_add(octets);
    }
    Ok(())
}

/// QUIT in TRANSACTION: RFC 1939 section 6, the UPDATE state. Deletions are applied before the reply is
/// written, so a client that closes without reading it (some do) still gets them. Returns what the
/// maildrop left to do after the reply.
fn update<W: Write + ?Sized>(
    tx: &mut Transaction,
    stats: &mut Stats,
    services: &Services,
    out: &mut W,
) -> io::Result<Option<Tidy>> {
    let deleted = tx.table.deleted_indexes();
    let (left, _) = tx.table.totals();
    let Some(guard) = services.updates.enter() else {
        // The server is exiting and waits for no further UPDATE: none is begun, nothing deleted.
        stats.outcome = Some(Outcome::UpdateFailed);
        reply::err(
            out,
            Some(RespCode::SysTemp),
            format_args!("server shutting down, nothing deleted"),
        )?;
        return Ok(None);
    };
    // Swap in an empty maildrop: `expunge` consumes the real one, which cannot be used after UPDATE.
    let maildrop = std::mem::replace(&mut tx.maildrop, Box::new(crate::maildrop::Empty));
    let result = maildrop.expunge(&deleted);
    drop(guard);
    match result {
        Ok(tidy) => {
            stats.outcome = Some(Outcome::Quit);
            reply::ok(
                out,
                format_args!(
                    "poplar signing off ({} left)",
                    Tally(left as u64, "message")
                ),
            )?;
            Ok(Some(tidy))
        }
        Err(e) => {
            log::error!("user={} UPDATE failed: {e}", tx.account.name);
            stats.outcome = Some(Outcome::UpdateFailed);
            let code = match e.resp_code() {
                RespCode::InUse => RespCode::SysTemp,
                code => code,
            };
            reply::err(
                out,
                Some(code),
                // "Not all": an mbox's UPDATE removes all or none, a Maildir's keeps going past a
                // failure, and the client is told neither more nor less than that.
                format_args!("deleted messages not all removed: {}", e.client_text()),
            )?;
            Ok(None)
        }
    }
}

#[cfg(test)]
#[path = "transaction_tests.rs"]
mod tests;
