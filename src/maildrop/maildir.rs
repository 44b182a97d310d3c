//! The Maildir backend: messages from `new/` and `cur/` (never `tmp/`), in delivery order, under an
//! exclusive `flock` on a lock file in the maildrop.

use std::io::Read;
use std::path::Path;

use super::{Maildrop, MaildropError, MessageInfo};

pub struct Maildir {
    _private: (),
}

impl Maildir {
    pub fn open(path: &Path) -> Result<Maildir, MaildropError> {
        let _ = path;
        todo!("Maildir::open")
    }
}

impl Maildrop for Maildir {
    fn messages(&self) -> &[MessageInfo] {
        todo!()
    }
    fn open_message(&mut self, index: usize) -> Result<Box<dyn Read + '_>, MaildropError> {
        let _ = index;
        todo!()
    }
    fn expunge(self: Box<Self>, deleted: &[usize]) -> Result<(), MaildropError> {
        let _ = deleted;
        todo!()
    }
}
