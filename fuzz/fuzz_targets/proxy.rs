//! The PROXY protocol header parser on arbitrary bytes, read as `conn` reads them: never panics, asks for
//! at least one more byte while incomplete, never for more than the header holds (a complete header is
//! exactly the bytes read), and says the same of the whole input as of the bytes read up to that point.
#![no_main]

use libfuzzer_sys::fuzz_target;
use poplar::proxy::{Parsed, parse};

fuzz_target!(|data: &[u8]| {
    let mut read = 0;
    let outcome = loop {
        match parse(&data[..read]) {
            Ok(Parsed::Incomplete(more)) => {
                assert!(more >= 1, "incomplete, yet asks for nothing");
                if read == data.len() {
                    break None;
                }
                read = (read + more).min(data.len());
            }
            other => break Some(other),
        }
    };
    match outcome {
        Some(Ok(Parsed::Complete { header, len })) => {
            assert_eq!(len, read, "a complete header is exactly the bytes read");
            // Bytes after the header (the client's first command) change nothing.
            assert_eq!(parse(data), Ok(Parsed::Complete { header, len }));
        }
        Some(Err(e)) => {
            // Refused at `read` bytes: no longer input starting with them is a header.
            assert_eq!(parse(data).err(), Some(e), "{e}");
        }
        Some(Ok(Parsed::Incomplete(_))) => unreachable!(),
        None => {}
    }
});
