//! The mbox scanner on arbitrary bytes fed in windows of arbitrary size: never panics, finds the same
//! messages whatever the windows, and every message's offsets are ordered and inside the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use poplar::maildrop::mbox::scan::{NotMbox, ScannedMessage, Scanner, scan_all};

/// Feeds `data` through windows that grow by `step` octets whenever the scanner needs more.
fn windowed(data: &[u8], step: usize, x_uidl: bool) -> Result<Vec<ScannedMessage>, NotMbox> {
    let mut scanner = Scanner::new(x_uidl);
    let mut start = 0;
    let mut end = step.min(data.len());
    loop {
        let eof = end == data.len();
        start += scanner.feed(&data[start..end], eof)?;
        if eof {
            assert_eq!(start, data.len(), "feed at eof must consume everything");
            return Ok(scanner.finish());
        }
        end = (end.max(start) + step).min(data.len());
    }
}

fuzz_target!(|input: (u8, bool, &[u8])| {
    let (step, x_uidl, data) = input;
    let whole = scan_all(data, x_uidl);
    assert_eq!(windowed(data, usize::from(step).max(1), x_uidl), whole);
    let Ok(messages) = whole else { return };
    let mut previous_end = 0;
    for m in &messages {
        assert!(
            previous_end <= m.from_offset && m.from_offset < m.data_offset,
            "{m:?}"
        );
        assert!(
            m.data_offset <= m.header_end && m.header_end <= m.data_end && m.data_end <= m.end,
            "{m:?}"
        );
        assert!(m.end <= data.len() as u64, "{m:?}");
        previous_end = m.end;
    }
});
