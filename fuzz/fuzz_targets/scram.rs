//! SASL SCRAM-SHA-256's message parsers on arbitrary bytes: a client-first message, then (after the
//! server-first for keys of one iteration, to keep each run fast) a client-final one, split at the
//! first line feed. Neither may panic; a user name that parses is within its bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use poplar::auth::scram::Keys;
use poplar::auth::{Account, ScramLookup};
use poplar::session::scram::{self, MAX_FIELD};

fuzz_target!(|data: &[u8]| {
    let (first, last) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b""[..]),
    };
    let Ok(client) = scram::client_first(first, false) else {
        return;
    };
    assert!(!client.user.is_empty() && client.user.len() <= MAX_FIELD);
    let lookup = ScramLookup {
        keys: Keys::from_password(b"pencil", b"salt", 1),
        account: Ok(Account {
            name: "user".into(),
            uid: None,
            gid: None,
            home: None,
            policy: Default::default(),
        }),
    };
    let (pending, _) = client.server_first(lookup, "server-nonce");
    let _ = pending.client_final(last);
});
