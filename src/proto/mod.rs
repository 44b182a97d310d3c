//! The POP3 codec: pure functions and types over byte strings. Nothing here opens a file or a socket.

pub mod body;
pub mod command;
pub mod line;
pub mod reply;
