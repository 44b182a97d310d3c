//! The bounded line reader on arbitrary input cut into arbitrary chunks: never panics, never returns a
//! line over the limit, and yields the same lines whatever the chunk size.
#![no_main]

use std::io::{self, BufRead, Read};

use libfuzzer_sys::fuzz_target;
use poplar::proto::line::{Line, MAX_COMMAND_LINE, read_line};

/// A `BufRead` handing out at most `step` octets per `fill_buf`.
struct Chunked<'a> {
    data: &'a [u8],
    step: usize,
}

impl Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.fill_buf()?.read(buf)?;
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Chunked<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        Ok(&self.data[..self.step.min(self.data.len())])
    }
    fn consume(&mut self, n: usize) {
        self.data = &self.data[n..];
    }
}

fn lines(data: &[u8], step: usize) -> Vec<Option<Vec<u8>>> {
    let mut reader = Chunked { data, step };
    let mut buf = Vec::new();
    let mut out = Vec::new();
    loop {
        match read_line(&mut reader, &mut buf, MAX_COMMAND_LINE).unwrap() {
            Line::Eof => return out,
            Line::TooLong => out.push(None),
            Line::Complete => {
                assert!(buf.len() < MAX_COMMAND_LINE);
                out.push(Some(buf.clone()));
            }
        }
    }
}

fuzz_target!(|input: (u8, &[u8])| {
    let (step, data) = input;
    let whole = lines(data, data.len().max(1));
    assert_eq!(lines(data, usize::from(step).max(1)), whole);
});
