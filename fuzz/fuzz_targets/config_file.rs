//! Configuration files of arbitrary content: parsed and applied as at start-up, they never panic, and
//! every error is one line naming the file and line (what an administrator reads from a failed start).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use poplar::config::{Config, apply_file, parse_file_text};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let path = Path::new("/etc/poplar/poplar.conf");
    let mut config = Config::default();
    let result = parse_file_text(path, &text).and_then(|settings| apply_file(&mut config, path, &settings));
    match result {
        Ok(()) => {
            let _ = config.conflicts();
            let _ = config.warnings();
        }
        Err(e) => {
            let message = e.to_string();
            assert!(message.starts_with("/etc/poplar/poplar.conf:"), "{message:?}");
            assert!(!message.contains(['\n', '\r']), "not one line: {message:?}");
        }
    }
});
