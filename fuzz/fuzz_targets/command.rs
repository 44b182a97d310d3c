//! The command parser on arbitrary lines: never panics, and whatever parses prints back to a line that
//! parses to the same command and prints the same bytes (parse → print → parse).
#![no_main]

use libfuzzer_sys::fuzz_target;
use poplar::proto::command::{parse, print};

fuzz_target!(|line: &[u8]| {
    let Ok(command) = parse(line) else { return };
    let mut printed = Vec::new();
    print(&command, &mut printed);
    let again =
        parse(&printed).unwrap_or_else(|e| panic!("{printed:?} from {line:?} does not parse: {e}"));
    assert_eq!(again, command, "{printed:?}");
    let mut reprinted = Vec::new();
    print(&again, &mut reprinted);
    assert_eq!(reprinted, printed);
});
