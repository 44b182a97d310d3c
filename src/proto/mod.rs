//! The POP3 codec: pure functions and types over byte strings. Nothing here opens a file or a socket.
//!
//! - [`line`](mod@line): framing one command line, bounded by RFC 2449's 255 octets.
//! - [`command`]: that line into a typed [`command::Command`], or a [`command::ParseError`].
//! - [`reply`]: `+OK`/`-ERR` status lines and the RFC 2449/3206 response codes.
//! - [`body`]: a stored message as a multi-line response (CRLF, byte-stuffing, TOP, terminator) and its size.

pub mod body;
pub mod command;
pub mod line;
pub mod reply;
