//! SASL SCRAM-SHA-256 (RFC 5802 sections 5 and 7, RFC 7677): the exchange's messages, parsed and built,
//! and the check of the client's proof. Pure: the keys come from the user database and the server's
//! nonce from the caller; `sasl.rs` drives the exchange, the keys' arithmetic is `auth::scram`'s.
//!
//! ```text
//! C: n,,n=user,r=<client nonce>                                    client-first
//! S: r=<client nonce><server nonce>,s=<salt>,i=<iterations>        server-first
//! C: c=biws,r=<client nonce><server nonce>,p=<ClientProof>         client-final
//! S: v=<ServerSignature>                                           server-final
//! ```

use std::fmt::Write as _;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::sasl::SaslError;
use crate::auth::scram::{self, KEY_LEN, Keys};
use crate::auth::secret::constant_time_eq;
use crate::auth::{Account, AuthError, ScramLookup};

/// The longest user name (decoded) and client nonce accepted. RFC 4616 bounds PLAIN's fields at 255
/// octets; no real name or nonce is longer, and the bound keeps the messages we keep small.
pub const MAX_FIELD: usize = 255;

/// A parsed client-first message.
#[derive(Debug)]
pub struct ClientFirst {
    /// The authentication identity, `=2C` and `=3D` decoded.
    pub user: Vec<u8>,
    /// `n,,` or `y,,` (with an authzid, `n,a=...,`): the client-final's `c=` must be its base64.
    gs2_header: Vec<u8>,
    /// The message without the gs2 header: the first part of the AuthMessage.
    bare: Vec<u8>,
    nonce: Vec<u8>,
}

/// An exchange waiting for the client-final message.
#[derive(Debug)]
pub struct Pending {
    client: ClientFirst,
    server_first: String,
    lookup: ScramLookup,
}

/// The end of an exchange that did not break off.
#[derive(Debug)]
pub enum Outcome {
    /// The proof matched: send `server_final` (base64), and log in as `account` after the client's
    /// empty response.
    Proved {
        account: Account,
        server_final: String,
    },
    /// A wrong proof, or a user who cannot do SCRAM: told apart only in this value, never on the wire.
    Refused(AuthError),
}

/// RFC 5802 section 7: `client-first-message = gs2-header client-first-message-bare`, where
/// `gs2-header = gs2-cbind-flag "," [authzid] ","` and
/// `client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions]`.
pub fn client_first(message: &[u8], fold_case: bool) -> Result<ClientFirst, SaslError> {
    let mut parts = message.splitn(3, |&b| b == b',');
    let (Some(cbind), Some(authzid), Some(bare)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::Malformed);
    };
    match cbind {
        // "y": the client could do channel binding but thinks we cannot; we cannot, so that is right.
        b"n" | b"y" => {}
        // No SCRAM-SHA-256-PLUS is offered, so a client asking for channel binding is mistaken.
        _ if cbind.starts_with(b"p=") => return Err(SaslError::ChannelBinding),
        _ => return Err(SaslError::Malformed),
    }
    let authzid = match authzid {
        b"" => None,
        _ => Some(sasl_name(attribute(authzid, b'a')?)?),
    };
    let mut fields = bare.split(|&b| b == b',');
    let user = fields.next().unwrap_or_default();
    // RFC 5802 section 5.1, `m`: "its presence in a client or a server message MUST cause
    // authentication failure when the attribute is parsed by the other end".
    if user.starts_with(b"m=") {
        return Err(SaslError::MandatoryExtension);
    }
    let user = sasl_name(attribute(user, b'n')?)?;
    let nonce = attribute(fields.next().unwrap_or_default(), b'r')?;
    if nonce.len() > MAX_FIELD || !nonce.iter().all(|&b| is_printable(b)) {
        return Err(SaslError::Malformed);
    }
    // Optional extensions may follow; none is known, and unknown ones are ignored (section 5.1),
    // but each must be one: `attr-val = ALPHA "=" value`, `value = 1*value-char` (section 7).
    if !fields.all(|field| {
        field.len() >= 3
            && field[0].is_ascii_alphabetic()
            && field[1] == b'='
            && !field.contains(&0)
    }) {
        return Err(SaslError::Malformed);
    }
    if authzid.is_some_and(|a| !super::sasl::same_user(&a, &user, fold_case)) {
        return Err(SaslError::AuthzidMismatch { authcid: user });
    }
    Ok(ClientFirst {
        gs2_header: message[..message.len() - bare.len()].to_vec(),
        bare: bare.to_vec(),
        nonce: nonce.to_vec(),
        user,
    })
}

impl ClientFirst {
    /// The server-first message, base64-encoded, for this user's keys and `server_nonce` (which must be
    /// printable and hold no ','), and the exchange that waits for the client-final.
    pub fn server_first(self, lookup: ScramLookup, server_nonce: &str) -> (Pending, String) {
        let mut message = String::from("r=");
        message.push_str(&String::from_utf8_lossy(&self.nonce));
        message.push_str(server_nonce);
        let _ = write!(
            message,
            ",s={},i={}",
            STANDARD.encode(&lookup.keys.salt),
            lookup.keys.iterations
        );
        let challenge = STANDARD.encode(&message);
        let pending = Pending {
            client: self,
            server_first: message,
            lookup,
        };
        (pending, challenge)
    }
}

impl Pending {
    pub fn user(&self) -> &[u8] {
        &self.client.user
    }

    /// RFC 5802 section 7: `client-final-message = client-final-message-without-proof "," proof`, where
    /// `client-final-message-without-proof = channel-binding "," nonce ["," extensions]`.
    pub fn client_final(self, message: &[u8]) -> Result<Outcome, SaslError> {
        let Some(comma) = message.iter().rposition(|&b| b == b',') else {
            return Err(SaslError::Malformed);
        };
        let (without_proof, proof) = (&message[..comma], &message[comma + 1..]);
        let proof = STANDARD
            .decode(attribute(proof, b'p')?)
            .ok()
            .and_then(|p| <[u8; KEY_LEN]>::try_from(p).ok())
            .ok_or(SaslError::Malformed)?;
        let mut fields = without_proof.split(|&b| b == b',');
        let binding = attribute(fields.next().unwrap_or_default(), b'c')?;
        // With "n" or "y" there is no channel-binding data: `c=` is the gs2 header alone, in base64.
        if STANDARD.decode(binding).ok().as_deref() != Some(self.client.gs2_header.as_slice()) {
            return Err(SaslError::ChannelBindingMismatch);
        }
        let nonce = attribute(fields.next().unwrap_or_default(), b'r')?;
        if !self.nonce_matches(nonce) {
            return Err(SaslError::NonceMismatch);
        }
        let auth_message = [
            &self.client.bare[..],
            b",",
            self.server_first.as_bytes(),
            b",",
            without_proof,
        ]
        .concat();
        Ok(self.verdict(&auth_message, &proof))
    }

    /// The client's nonce must come back followed by ours: the `r=` of server-first.
    fn nonce_matches(&self, nonce: &[u8]) -> bool {
        let ours = self.server_first.split(',').next().unwrap_or_default();
        ours.strip_prefix("r=").map(str::as_bytes) == Some(nonce)
    }

    /// RFC 5802 section 3: ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage), and the proof is
    /// good when H(ClientKey) is the StoredKey. The account is consulted only after the comparison.
    fn verdict(self, auth_message: &[u8], proof: &[u8; KEY_LEN]) -> Outcome {
        let keys: &Keys = &self.lookup.keys;
        let signature = scram::hmac(&keys.stored_key, auth_message);
        let mut client_key = [0u8; KEY_LEN];
        for (k, (p, s)) in client_key.iter_mut().zip(proof.iter().zip(signature)) {
            *k = p ^ s;
        }
        let proved = constant_time_eq(&scram::sha256(&client_key), &keys.stored_key);
        let server_signature = scram::hmac(&keys.server_key, auth_message);
        match self.lookup.account {
            Ok(account) if proved => Outcome::Proved {
                account,
                server_final: STANDARD.encode(format!("v={}", STANDARD.encode(server_signature))),
            },
            Ok(_) => Outcome::Refused(AuthError::BadCredentials),
            Err(e) => Outcome::Refused(e),
        }
    }
}

/// `<letter>=<value>`, the value non-empty.
fn attribute(field: &[u8], letter: u8) -> Result<&[u8], SaslError> {
    match field {
        [l, b'=', value @ ..] if *l == letter && !value.is_empty() => Ok(value),
        _ => Err(SaslError::Malformed),
    }
}

/// RFC 5802 section 5.1: in a user name "the characters ',' or '=' ... are encoded as '=2C' and '=3D'
/// respectively. If the server receives a username that contains '=' not followed by either '2C' or
/// '3D', then the server MUST fail the authentication."
fn sasl_name(text: &[u8]) -> Result<Vec<u8>, SaslError> {
    let mut name = Vec::with_capacity(text.len());
    let mut rest = text;
    while let Some((&b, tail)) = rest.split_first() {
        rest = tail;
        match b {
            b'=' => {
                match rest.get(..2) {
                    Some(b"2C") => name.push(b','),
                    Some(b"3D") => name.push(b'='),
                    _ => return Err(SaslError::Malformed),
                }
                rest = &rest[2..];
            }
            0 => return Err(SaslError::Malformed),
            _ => name.push(b),
        }
    }
    if name.len() > MAX_FIELD {
        return Err(SaslError::Malformed);
    }
    Ok(name)
}

/// RFC 5802 section 7: `printable = %x21-2B / %x2D-7E`, every visible ASCII character but ','.
fn is_printable(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) && b != b','
}

#[cfg(test)]
mod tests;
