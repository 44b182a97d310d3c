//! The multi-line body encoder on arbitrary messages in arbitrary chunks: never panics; the output has
//! only CRLF line ends, no line that is a lone "." before the end, ends in ".\r\n", does not depend on the
//! chunking, and for RETR is as long as the octet counter says plus stuffing and terminator.
#![no_main]

use libfuzzer_sys::fuzz_target;
use poplar::proto::body::{Encoder, Limit, OctetCounter};

fn encode(data: &[u8], step: usize, limit: Limit) -> Vec<u8> {
    let mut encoder = Encoder::new(limit);
    let mut out = Vec::new();
    for chunk in data.chunks(step) {
        if !encoder.write_chunk(chunk, &mut out).unwrap() {
            break;
        }
    }
    encoder.finish(&mut out).unwrap();
    out
}

fuzz_target!(|input: (u8, Option<u8>, &[u8])| {
    let (step, top, data) = input;
    let limit = top.map_or(Limit::Whole, |n| Limit::Top(u32::from(n % 8)));
    let out = encode(data, data.len().max(1), limit);
    assert_eq!(
        encode(data, usize::from(step).max(1), limit),
        out,
        "chunking changed the output"
    );
    assert!(out.ends_with(b".\r\n"));
    let body = &out[..out.len() - 3];
    assert!(body.is_empty() || body.ends_with(b"\r\n"));
    let mut stuffed = 0u64;
    for line in body.split_inclusive(|&b| b == b'\n') {
        assert!(line.ends_with(b"\r\n"), "{line:?}");
        assert_ne!(line, b".\r\n", "an unstuffed terminator inside the body");
        if line.starts_with(b".") {
            stuffed += 1;
        }
    }
    if limit == Limit::Whole {
        let mut counter = OctetCounter::new();
        counter.update(data);
        assert_eq!(counter.finish() + stuffed, body.len() as u64);
    }
});
