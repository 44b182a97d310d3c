//! The SASL mechanisms behind AUTH (RFC 5034): PLAIN (RFC 4616), LOGIN and SCRAM-SHA-256 (RFC 7677), as a
//! pure state machine over the base64 lines of an exchange. No I/O and no user database: a finished
//! PLAIN or LOGIN exchange yields the credentials it carried, and the session checks them exactly as it
//! checks USER/PASS; SCRAM asks the session for the user's keys half-way (its messages are in `scram.rs`).

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::scram;
use crate::auth::{Account, AuthError, ScramLookup, Secret};

/// The longest client response line while an exchange is in progress, CRLF included. RFC 5034 keeps the
/// AUTH command itself within RFC 2449's 255 octets (a client whose initial response would not fit must
/// leave it out and wait for the empty challenge), so the long lines are the continuation responses.
/// RFC 4616 section 2 bounds each PLAIN field at 255 octets: 767 octets of message, 1024 in base64. Twice
/// that leaves room and still bounds what an unauthenticated client can make us buffer.
pub const MAX_RESPONSE_LINE: usize = 2048;

/// The mechanisms offered, in the order CAPA's SASL line and a bare AUTH list them. PLAIN and LOGIN
/// carry the password itself and are offered only where passwords may be sent; SCRAM never sends it
/// (nor anything a listener could replay), so it is offered in the clear too, but only where some
/// user can use it (`scram`).
pub fn mechanisms(plaintext_allowed: bool, scram: bool) -> impl Iterator<Item = Mechanism> {
    Mechanism::ALL.into_iter().filter(move |m| match m {
        Mechanism::ScramSha256 => scram,
        _ => plaintext_allowed,
    })
}

/// base64("Username:") and base64("Password:"): the LOGIN prompts that Outlook and friends expect.
pub const LOGIN_USER_PROMPT: &str = "VXNlcm5hbWU6";
pub const LOGIN_PASSWORD_PROMPT: &str = "UGFzc3dvcmQ6";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Login,
    ScramSha256,
}

impl Mechanism {
    pub const ALL: [Mechanism; 3] = [Mechanism::Plain, Mechanism::Login, Mechanism::ScramSha256];

    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
        }
    }

    /// RFC 5034 section 4: mechanism names are case-insensitive.
    pub fn from_name(name: &[u8]) -> Option<Mechanism> {
        Mechanism::ALL
            .into_iter()
            .find(|m| name.eq_ignore_ascii_case(m.name().as_bytes()))
    }

    /// PLAIN and LOGIN send the password as it is: the plaintext policy applies to them.
    pub fn sends_password(self) -> bool {
        matches!(self, Mechanism::Plain | Mechanism::Login)
    }
}

/// What a finished exchange carried.
#[derive(Debug)]
pub struct Credentials {
    pub user: Vec<u8>,
    pub password: Secret<Vec<u8>>,
}

/// An exchange waiting for the client's next response line.
#[derive(Debug)]
pub enum Exchange {
    /// PLAIN without an initial response: the server sent an empty challenge.
    Plain,
    LoginUser,
    LoginPassword {
        user: Vec<u8>,
    },
    /// SCRAM without an initial response: the server sent an empty challenge.
    ScramFirst,
    /// SCRAM: the server-first message was sent.
    ScramFinal(Box<scram::Pending>),
    /// SCRAM: the proof matched and the server-final message was sent as a last challenge, to which
    /// the client answers with an empty line before it is logged in: RFC 4422 section 3.6's way of
    /// sending "additional data with success" that needs no syntax in the +OK, the way Dovecot does
    /// it, and what GNU SASL's client (mpop) and others expect.
    ScramEnd {
        user: Vec<u8>,
        account: Box<Account>,
    },
}

/// The outcome of a step that did not fail.
#[derive(Debug)]
pub enum Progress {
    /// Send `+ <challenge>` and pass the next line to [`Exchange::respond`].
    Challenge(Exchange, String),
    /// PLAIN and LOGIN: check these credentials.
    Done(Credentials),
    /// SCRAM: look the user up ([`crate::auth::Authenticator::scram`]) and pass the answer to
    /// [`server_first`].
    Lookup(scram::ClientFirst),
    /// SCRAM: the exchange is over, and this is the login's result (the proof was checked).
    Verdict {
        user: Vec<u8>,
        result: Result<Account, AuthError>,
    },
}

/// Why an exchange ended without credentials. `Display` is the text after `-ERR `.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslError {
    /// RFC 5034 section 4: "If the client wishes to cancel the authentication exchange, it issues a line
    /// with a single "*". If the server receives such a response, it MUST reject the AUTH command by
    /// sending an -ERR reply."
    Cancelled,
    BadBase64,
    /// The decoded message does not have the mechanism's shape (RFC 4616's two NULs, a user name).
    Malformed,
    /// PLAIN asked to act as another user (`authcid` authenticating); poplar has no proxy authorization.
    AuthzidMismatch {
        authcid: Vec<u8>,
    },
    /// SCRAM's `p=`: no -PLUS mechanism is offered.
    ChannelBinding,
    /// SCRAM's `m=`, which RFC 5802 section 5.1 says must fail the authentication.
    MandatoryExtension,
    /// SCRAM's client-final `c=` is not the base64 of the client-first's gs2 header.
    ChannelBindingMismatch,
    /// SCRAM's client-final `r=` is not the nonce of the server-first message.
    NonceMismatch,
}

impl fmt::Display for SaslError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SaslError::Cancelled => "authentication cancelled",
            SaslError::BadBase64 => "invalid base64 in SASL response",
            SaslError::Malformed => "malformed SASL message",
            SaslError::AuthzidMismatch { .. } => {
                "authorization identity must be empty or the user name"
            }
            SaslError::ChannelBinding => "channel binding not supported",
            SaslError::MandatoryExtension => "unsupported mandatory SCRAM extension",
            SaslError::ChannelBindingMismatch => "channel binding does not match the gs2 header",
            SaslError::NonceMismatch => "nonce does not match the server's",
        })
    }
}

/// Whether an authorization identity names the authenticating user: the same name, in any case when
/// `fold_case` (`lowercase-users`, where the user database sees both in lowercase).
pub fn same_user(authzid: &[u8], authcid: &[u8], fold_case: bool) -> bool {
    if fold_case {
        authzid.eq_ignore_ascii_case(authcid)
    } else {
        authzid == authcid
    }
}

/// Starts an exchange. `initial` is AUTH's optional initial response, where RFC 5034 section 4 says a
/// zero-length response is sent as a single `=`. `fold_case`: see [`same_user`].
pub fn start(
    mechanism: Mechanism,
    initial: Option<&[u8]>,
    fold_case: bool,
) -> Result<Progress, SaslError> {
    let initial = match initial {
        None => None,
        Some(b"=") => Some(Vec::new()),
        Some(text) => Some(decode(text)?),
    };
    match (mechanism, initial) {
        (Mechanism::Plain, None) => Ok(Progress::Challenge(Exchange::Plain, String::new())),
        (Mechanism::Plain, Some(message)) => plain(&message, fold_case),
        (Mechanism::Login, None) => Ok(Progress::Challenge(
            Exchange::LoginUser,
            LOGIN_USER_PROMPT.to_string(),
        )),
        // Not in LOGIN's original design, but sent by some clients (and harmless): the user name.
        (Mechanism::Login, Some(user)) => login_user(user),
        (Mechanism::ScramSha256, None) => {
            Ok(Progress::Challenge(Exchange::ScramFirst, String::new()))
        }
        (Mechanism::ScramSha256, Some(message)) => scram_first(&message, fold_case),
    }
}

/// SCRAM, after [`Progress::Lookup`]: the server-first challenge for the user's keys. `server_nonce`:
/// fresh, unpredictable, printable and without ',' (RFC 5802 section 5.1).
pub fn server_first(
    client: scram::ClientFirst,
    lookup: ScramLookup,
    server_nonce: &str,
) -> Progress {
    let (pending, challenge) = client.server_first(lookup, server_nonce);
    Progress::Challenge(Exchange::ScramFinal(Box::new(pending)), challenge)
}

impl Exchange {
    /// The user a key derivation (a PBKDF2) was made for, once SCRAM's server-first was sent: an
    /// exchange broken off from here on counts as a failed login.
    pub fn derived_for(&self) -> Option<Vec<u8>> {
        match self {
            Exchange::ScramFinal(pending) => Some(pending.user().to_vec()),
            _ => None,
        }
    }

    /// Consumes one client response line (CRLF removed). `fold_case`: see [`same_user`].
    pub fn respond(self, line: &[u8], fold_case: bool) -> Result<Progress, SaslError> {
        if line == b"*" {
            return Err(SaslError::Cancelled);
        }
        let decoded = decode(line)?;
        match self {
            Exchange::Plain => plain(&decoded, fold_case),
            Exchange::LoginUser => login_user(decoded),
            Exchange::LoginPassword { user } => Ok(Progress::Done(Credentials {
                user,
                password: Secret::new(decoded),
            })),
            Exchange::ScramFirst => scram_first(&decoded, fold_case),
            Exchange::ScramFinal(pending) => {
                let user = pending.user().to_vec();
                Ok(match pending.client_final(&decoded)? {
                    scram::Outcome::Proved {
                        account,
                        server_final,
                    } => Progress::Challenge(
                        Exchange::ScramEnd {
                            user,
                            account: Box::new(account),
                        },
                        server_final,
                    ),
                    scram::Outcome::Refused(e) => Progress::Verdict {
                        user,
                        result: Err(e),
                    },
                })
            }
            Exchange::ScramEnd { user, account } if decoded.is_empty() => Ok(Progress::Verdict {
                user,
                result: Ok(*account),
            }),
            Exchange::ScramEnd { .. } => Err(SaslError::Malformed),
        }
    }
}

fn scram_first(message: &[u8], fold_case: bool) -> Result<Progress, SaslError> {
    scram::client_first(message, fold_case).map(Progress::Lookup)
}

fn decode(text: &[u8]) -> Result<Vec<u8>, SaslError> {
    STANDARD.decode(text).map_err(|_| SaslError::BadBase64)
}

fn login_user(user: Vec<u8>) -> Result<Progress, SaslError> {
    if user.is_empty() {
        return Err(SaslError::Malformed);
    }
    Ok(Progress::Challenge(
        Exchange::LoginPassword { user },
        LOGIN_PASSWORD_PROMPT.to_string(),
    ))
}

/// RFC 4616 section 2: `message = [authzid] UTF8NUL authcid UTF8NUL passwd`, authcid and passwd non-empty.
/// An authzid is accepted only when it names the authenticating user (the common client habit of sending
/// the user name twice): acting as someone else would be proxy authorization, which poplar does not offer.
fn plain(message: &[u8], fold_case: bool) -> Result<Progress, SaslError> {
    let mut fields = message.split(|&b| b == 0);
    let (Some(authzid), Some(authcid), Some(passwd), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(SaslError::Malformed);
    };
    if authcid.is_empty() || passwd.is_empty() {
        return Err(SaslError::Malformed);
    }
    if !authzid.is_empty() && !same_user(authzid, authcid, fold_case) {
        return Err(SaslError::AuthzidMismatch {
            authcid: authcid.to_vec(),
        });
    }
    Ok(Progress::Done(Credentials {
        user: authcid.to_vec(),
        password: Secret::new(passwd.to_vec()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs an exchange to its end: the challenges sent and the final result as `user:password`.
    fn run(
        mechanism: Mechanism,
        initial: Option<&str>,
        responses: &[&str],
    ) -> (Vec<String>, Result<String, SaslError>) {
        let mut challenges = Vec::new();
        let mut responses = responses.iter();
        let mut progress = start(mechanism, initial.map(str::as_bytes), false);
        loop {
            match progress {
                Err(e) => return (challenges, Err(e)),
                Ok(Progress::Done(c)) => {
                    let text = format!(
                        "{}:{}",
                        String::from_utf8_lossy(&c.user),
                        String::from_utf8_lossy(c.password.expose())
                    );
                    assert!(responses.next().is_none(), "responses left over");
                    return (challenges, Ok(text));
                }
                Ok(Progress::Challenge(exchange, challenge)) => {
                    challenges.push(challenge);
                    let line = responses.next().expect("exchange wants another response");
                    progress = exchange.respond(line.as_bytes(), false);
                }
                Ok(other) => panic!("not a PLAIN or LOGIN step: {other:?}"),
            }
        }
    }

    #[test]
    fn exchanges() {
        use Mechanism::{Login, Plain};
        let ok = |s: &str| Ok(s.to_string());
        // base64: "\0alice\0secret" = AGFsaWNlAHNlY3JldA==, "alice\0alice\0secret" = YWxpY2UAYWxpY2UAc2VjcmV0
        // Mechanism, initial response, the client's responses, the challenges expected, the outcome.
        type Case<'a> = (
            Mechanism,
            Option<&'a str>,
            &'a [&'a str],
            &'a [&'a str],
            Result<String, SaslError>,
        );
        let cases: &[Case] = &[
            (
                Plain,
                Some("AGFsaWNlAHNlY3JldA=="),
                &[],
                &[],
                ok("alice:secret"),
            ),
            (
                Plain,
                Some("YWxpY2UAYWxpY2UAc2VjcmV0"),
                &[],
                &[],
                ok("alice:secret"),
            ),
            (
                Plain,
                None,
                &["AGFsaWNlAHNlY3JldA=="],
                &[""],
                ok("alice:secret"),
            ),
            (Plain, None, &["*"], &[""], Err(SaslError::Cancelled)),
            (
                Plain,
                Some("AGFsaWNlAHNlY3JldA"),
                &[],
                &[],
                Err(SaslError::BadBase64),
            ),
            (Plain, Some("!!!!"), &[], &[], Err(SaslError::BadBase64)),
            (
                Plain,
                None,
                &["not base64"],
                &[""],
                Err(SaslError::BadBase64),
            ),
            // "bob\0alice\0secret": acting as another user
            (
                Plain,
                Some("Ym9iAGFsaWNlAHNlY3JldA=="),
                &[],
                &[],
                Err(SaslError::AuthzidMismatch {
                    authcid: b"alice".to_vec(),
                }),
            ),
            // "alice\0secret": one NUL only
            (
                Plain,
                Some("YWxpY2UAc2VjcmV0"),
                &[],
                &[],
                Err(SaslError::Malformed),
            ),
            // "\0alice\0se\0cret": three NULs
            (
                Plain,
                Some("AGFsaWNlAHNlAGNyZXQ="),
                &[],
                &[],
                Err(SaslError::Malformed),
            ),
            // "\0\0secret": empty authcid
            (
                Plain,
                Some("AABzZWNyZXQ="),
                &[],
                &[],
                Err(SaslError::Malformed),
            ),
            (Plain, Some("="), &[], &[], Err(SaslError::Malformed)),
            (
                Login,
                None,
                &["YWxpY2U=", "c2VjcmV0"],
                &[LOGIN_USER_PROMPT, LOGIN_PASSWORD_PROMPT],
                ok("alice:secret"),
            ),
            (
                Login,
                Some("YWxpY2U="),
                &["c2VjcmV0"],
                &[LOGIN_PASSWORD_PROMPT],
                ok("alice:secret"),
            ),
            // RFC 5034's `=`, a zero-length initial response: an empty user name, refused at once.
            (Login, Some("="), &[], &[], Err(SaslError::Malformed)),
            (
                Login,
                None,
                &["YWxpY2U=", ""],
                &[LOGIN_USER_PROMPT, LOGIN_PASSWORD_PROMPT],
                ok("alice:"),
            ),
            (
                Login,
                None,
                &["YWxpY2U=", "*"],
                &[LOGIN_USER_PROMPT, LOGIN_PASSWORD_PROMPT],
                Err(SaslError::Cancelled),
            ),
            (
                Login,
                None,
                &[""],
                &[LOGIN_USER_PROMPT],
                Err(SaslError::Malformed),
            ),
            (
                Login,
                None,
                &["YWxp Y2U="],
                &[LOGIN_USER_PROMPT],
                Err(SaslError::BadBase64),
            ),
        ];
        for (i, (mechanism, initial, responses, challenges, expected)) in cases.iter().enumerate() {
            let (got_challenges, got) = run(*mechanism, *initial, responses);
            assert_eq!(&got, expected, "case {i}");
            assert_eq!(got_challenges, *challenges, "case {i}");
        }
    }

    #[test]
    fn prompts_are_the_base64_of_their_words() {
        assert_eq!(STANDARD.decode(LOGIN_USER_PROMPT).unwrap(), b"Username:");
        assert_eq!(
            STANDARD.decode(LOGIN_PASSWORD_PROMPT).unwrap(),
            b"Password:"
        );
    }

    #[test]
    fn mechanism_names_are_case_insensitive() {
        assert_eq!(Mechanism::from_name(b"plain"), Some(Mechanism::Plain));
        assert_eq!(Mechanism::from_name(b"LoGiN"), Some(Mechanism::Login));
        assert_eq!(
            Mechanism::from_name(b"scram-sha-256"),
            Some(Mechanism::ScramSha256)
        );
        assert_eq!(Mechanism::from_name(b"SCRAM-SHA-256-PLUS"), None);
        assert_eq!(Mechanism::from_name(b"SCRAM-SHA-1"), None);
        assert_eq!(Mechanism::from_name(b"CRAM-MD5"), None);
        assert_eq!(Mechanism::from_name(b""), None);
    }

    /// Under lowercase-users an authorization identity a case apart from the user name is that
    /// user (from a black-box trial: `alice\0ALICE\0pw` was refused); without it, another name.
    #[test]
    fn plain_authzid_folds_case_under_lowercase_users() {
        use base64::Engine as _;
        let message = STANDARD.encode(b"alice\0ALICE\0pw");
        let folded = start(Mechanism::Plain, Some(message.as_bytes()), true);
        assert!(matches!(folded, Ok(Progress::Done(c)) if c.user == b"ALICE"));
        let exact = start(Mechanism::Plain, Some(message.as_bytes()), false);
        assert!(matches!(exact, Err(SaslError::AuthzidMismatch { .. })));
        let other = STANDARD.encode(b"admin\0ALICE\0pw");
        let refused = start(Mechanism::Plain, Some(other.as_bytes()), true);
        assert!(matches!(refused, Err(SaslError::AuthzidMismatch { .. })));
    }

    #[test]
    fn the_password_never_shows_in_debug() {
        let Ok(Progress::Done(c)) = start(Mechanism::Plain, Some(b"AGFsaWNlAHNlY3JldA=="), false)
        else {
            panic!()
        };
        assert!(!format!("{c:?}").contains("secret"));
    }
}
