//! The judgement of a stored crypt string (`scheme::crypt_fault`) on arbitrary text: its shape checks,
//! the hand-read yescrypt parameters and the cost bounds may never panic, whatever the string.
#![no_main]

use libfuzzer_sys::fuzz_target;
use poplar::auth::scheme::crypt_fault;

fuzz_target!(|text: &str| {
    for hash in [
        text.to_string(),
        format!("$y${text}"),
        format!("$6$rounds={text}"),
        format!("$argon2id$v=19${text}"),
    ] {
        let _ = crypt_fault(&hash).map(|fault| fault.to_string());
    }
});
