//! The mbox backend (see issue: mbox maildrops). Not yet implemented: opening reports a permanent error.

use std::io::{self, Read};
use std::path::Path;

use super::{Maildrop, MaildropError, MessageInfo};

pub struct Mbox {
    _private: (),
}

impl Mbox {
    pub fn open(path: &Path) -> Result<Mbox, MaildropError> {
        Err(MaildropError::io(path, io::Error::new(io::ErrorKind::Unsupported, "mbox not supported yet")))
    }
}

impl Maildrop for Mbox {
    fn messages(&self) -> &[MessageInfo] {
        &[]
    }
    fn open_message(&mut self, index: usize) -> Result<Box<dyn Read + '_>, MaildropError> {
        let _ = index;
        unreachable!("Mbox::open never succeeds yet")
    }
    fn expunge(self: Box<Self>, deleted: &[usize]) -> Result<(), MaildropError> {
        let _ = deleted;
        Ok(())
    }
}
