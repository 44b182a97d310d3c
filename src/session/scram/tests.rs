//! SCRAM-SHA-256 messages: RFC 7677 section 3's example exchange, byte for byte, and malformed input.

use super::*;
use crate::auth::Account;

const SALT: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
const CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
const SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const SERVER_FIRST: &str =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

fn account() -> Account {
    Account {
        name: "user".into(),
        uid: None,
        gid: None,
        home: None,
        policy: Default::default(),
    }
}

/// The example user, password "pencil", or a user who cannot do SCRAM with the same keys.
fn lookup(account: Result<Account, AuthError>) -> ScramLookup {
    let salt = STANDARD.decode(SALT).unwrap();
    ScramLookup {
        keys: Keys::from_password(b"pencil", &salt, 4096),
        account,
    }
}

/// Runs client-first and server-first; returns the exchange and the decoded server-first message.
fn first(client_first: &str, account: Result<Account, AuthError>) -> (Pending, String) {
    let client = client_first_message(client_first).unwrap();
    let (pending, challenge) = client.server_first(lookup(account), SERVER_NONCE);
    (pending, decoded(&challenge))
}

fn client_first_message(text: &str) -> Result<ClientFirst, SaslError> {
    super::client_first(text.as_bytes(), false)
}

fn decoded(base64: &str) -> String {
    String::from_utf8(STANDARD.decode(base64).unwrap()).unwrap()
}

#[test]
fn the_rfc7677_example_exchange() {
    let (pending, server_first) = first(CLIENT_FIRST, Ok(account()));
    assert_eq!(server_first, SERVER_FIRST);
    assert_eq!(pending.user(), b"user");
    let Ok(Outcome::Proved {
        account: got,
        server_final,
    }) = pending.client_final(CLIENT_FINAL.as_bytes())
    else {
        panic!("the example's proof must be accepted");
    };
    assert_eq!(got, account());
    assert_eq!(decoded(&server_final), SERVER_FINAL);
}

#[test]
fn a_wrong_proof_or_an_unusable_user_is_refused() {
    let wrong = CLIENT_FINAL.replace("p=dHzb", "p=dHzc");
    let (pending, _) = first(CLIENT_FIRST, Ok(account()));
    let got = pending.client_final(wrong.as_bytes());
    assert!(matches!(
        got,
        Ok(Outcome::Refused(AuthError::BadCredentials))
    ));
    // The right proof, but the user database has no account to give: still refused.
    let (pending, _) = first(CLIENT_FIRST, Err(AuthError::BadCredentials));
    let got = pending.client_final(CLIENT_FINAL.as_bytes());
    assert!(matches!(
        got,
        Ok(Outcome::Refused(AuthError::BadCredentials))
    ));
}

#[test]
fn client_first_messages() {
    let ok = |text: &str, user: &[u8], gs2: &[u8]| {
        let c = client_first_message(text).unwrap();
        assert_eq!(
            (c.user.as_slice(), c.gs2_header.as_slice()),
            (user, gs2),
            "{text}"
        );
    };
    ok("n,,n=user,r=abc", b"user", b"n,,");
    ok("y,,n=user,r=abc", b"user", b"y,,");
    ok("n,a=user,n=user,r=abc", b"user", b"n,a=user,");
    ok("n,,n=a=2Cb=3Dc,r=abc", b"a,b=c", b"n,,");
    ok("n,a=a=2Cb,n=a=2Cb,r=abc", b"a,b", b"n,a=a=2Cb,");
    ok("n,,n=user,r=abc,x=extension", b"user", b"n,,");
    let long_name = format!("n,,n={},r=abc", "u".repeat(MAX_FIELD));
    ok(&long_name, "u".repeat(MAX_FIELD).as_bytes(), b"n,,");
    use SaslError::*;
    let too_long_name = format!("n,,n={},r=abc", "u".repeat(MAX_FIELD + 1));
    let too_long_nonce = format!("n,,n=user,r={}", "r".repeat(MAX_FIELD + 1));
    let cases: &[(&str, SaslError)] = &[
        ("", Malformed),
        ("n", Malformed),
        ("n,,", Malformed),
        ("n,,n=user", Malformed),
        ("n,,n=user,", Malformed),
        ("n,,n=user,r=", Malformed),
        ("n,,n=,r=abc", Malformed),
        ("n,,user,r=abc", Malformed),
        ("n,,r=abc,n=user", Malformed),
        ("x,,n=user,r=abc", Malformed),
        ("N,,n=user,r=abc", Malformed),
        ("n,a=,n=user,r=abc", Malformed),
        ("n,b=user,n=user,r=abc", Malformed),
        ("p=tls-unique,,n=user,r=abc", ChannelBinding),
        ("n,,m=ext,n=user,r=abc", MandatoryExtension),
        ("n,,n=us=2cer,r=abc", Malformed),
        ("n,,n=us=er,r=abc", Malformed),
        ("n,,n=user=,r=abc", Malformed),
        ("n,,n=user=2,r=abc", Malformed),
        ("n,,n=us\0er,r=abc", Malformed),
        ("n,,n=user,r=a b", Malformed),
        ("n,,n=user,r=abc,ext=1", Malformed),
        ("n,,n=user,r=abc,x=", Malformed),
        ("n,,n=user,r=abc,", Malformed),
        ("n,,n=user,r=abc,x=1,,y=2", Malformed),
        ("n,,n=user,r=abc,1=x", Malformed),
        ("n,,n=user,r=a\u{7f}", Malformed),
        (&too_long_name, Malformed),
        (&too_long_nonce, Malformed),
        (
            "n,a=admin,n=user,r=abc",
            AuthzidMismatch {
                authcid: b"user".to_vec(),
            },
        ),
    ];
    for (text, want) in cases {
        assert_eq!(client_first_message(text).unwrap_err(), *want, "{text:?}");
    }
    // Under lowercase-users the user database sees both names in lowercase: a case apart, the same
    // user (from a black-box trial, for AUTH PLAIN); another name is still refused.
    let folded = |text: &str| super::client_first(text.as_bytes(), true).map(|c| c.user);
    assert_eq!(folded("n,a=alice,n=ALICE,r=abc"), Ok(b"ALICE".to_vec()));
    assert!(folded("n,a=admin,n=ALICE,r=abc").is_err());
    assert!(client_first_message("n,a=alice,n=ALICE,r=abc").is_err());
}

#[test]
fn client_final_messages() {
    let nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    let proof = "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    use SaslError::*;
    let cases: Vec<(String, SaslError)> = vec![
        (String::new(), Malformed),
        (format!("c=biws,r={nonce}"), Malformed),
        (format!("c=biws,r={nonce},{proof},x=y"), Malformed),
        (format!("c=biws,r={nonce},p="), Malformed),
        (format!("c=biws,r={nonce},p=!!!!"), Malformed),
        (format!("c=biws,r={nonce},p=dHzb"), Malformed),
        (format!("r={nonce},{proof}"), Malformed),
        (format!("c=biws,{proof}"), Malformed),
        // "y,," is eSws; "n,," with channel-binding data would be longer.
        (format!("c=eSws,r={nonce},{proof}"), ChannelBindingMismatch),
        (
            format!("c=biwsAA==,r={nonce},{proof}"),
            ChannelBindingMismatch,
        ),
        (format!("c=@@,r={nonce},{proof}"), ChannelBindingMismatch),
        (format!("c=biws,r={nonce}x,{proof}"), NonceMismatch),
        (
            format!("c=biws,r=rOprNGfwEbeRWgbNEkqO,{proof}"),
            NonceMismatch,
        ),
        (format!("c=biws,r=,{proof}"), Malformed),
    ];
    for (text, want) in cases {
        let (pending, _) = first(CLIENT_FIRST, Ok(account()));
        let got = pending.client_final(text.as_bytes());
        assert_eq!(got.err(), Some(want), "{text:?}");
    }
}

/// With `y,,` the client-final's channel binding is `c=eSws`, the base64 of "y,,", and the proof is
/// computed over that AuthMessage; with an authzid, the base64 of the whole gs2 header.
#[test]
fn the_channel_binding_is_the_gs2_header() {
    for (client_first, binding) in [
        ("y,,n=user,r=rOprNGfwEbeRWgbNEkqO", "eSws"),
        ("n,a=user,n=user,r=rOprNGfwEbeRWgbNEkqO", "bixhPXVzZXIs"),
    ] {
        let (pending, server_first) = first(client_first, Ok(account()));
        let bare = &client_first[client_first.find("n=").unwrap()..];
        let without_proof = format!(
            "c={binding},r={}",
            &server_first[2..server_first.find(',').unwrap()]
        );
        let auth_message = format!("{bare},{server_first},{without_proof}");
        let keys = lookup(Ok(account())).keys;
        let salted = scram::salted_password(b"pencil", &keys.salt, 4096);
        let client_key = scram::hmac(&salted, b"Client Key");
        let signature = scram::hmac(&keys.stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let message = format!("{without_proof},p={}", STANDARD.encode(proof));
        let got = pending.client_final(message.as_bytes());
        assert!(matches!(got, Ok(Outcome::Proved { .. })), "{client_first}");
    }
}
