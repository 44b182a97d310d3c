//! A build without the cargo feature `tls` (`cargo test --no-default-features`): the TLS options are
//! refused at start-up with a clear message, and SASL still works in the clear.
#![cfg(not(feature = "tls"))]

mod common;

use common::{Server, run, standard};

#[test]
fn tls_options_say_the_build_has_no_tls() {
    let fx = standard();
    let passwd = fx.passwd().display().to_string();
    // Named before the files are looked at: /etc/cert.pem need not exist for the answer to be this one.
    for (extra, option) in [
        (
            &["--tls-cert", "/etc/cert.pem", "--tls-key", "/etc/key.pem"][..],
            "tls-cert",
        ),
        (&["--listen-tls", "127.0.0.1:0"], "listen-tls"),
        (&["--inetd", "--tls"], "tls"),
    ] {
        let mut args = vec!["--listen", "127.0.0.1:0", "--passwd", &passwd];
        args.extend_from_slice(extra);
        let (code, _, stderr) = run(&args);
        assert_eq!(code, 2, "{args:?}");
        if !args.contains(&"--inetd") {
            assert_eq!(
                stderr.trim(),
                format!(
                    "poplar: --{option}: TLS options given, but poplar was built without TLS support (cargo feature `tls`)"
                )
            );
        }
        let mut check = vec!["--check-config", "--passwd", &passwd];
        check.extend_from_slice(extra);
        let (code, _, stderr) = run(&check);
        assert_eq!(code, 2, "{check:?}");
        assert!(stderr.contains("built without TLS support"), "{stderr}");
    }
}

#[test]
fn sasl_and_capa_without_tls() {
    let fx = standard();
    let srv = Server::start(&fx, &[]);
    let mut c = srv.connect();
    c.greeting();
    let capa = String::from_utf8(c.multi("CAPA")).unwrap();
    assert!(
        capa.contains("SASL PLAIN LOGIN SCRAM-SHA-256\r\n") && !capa.contains("STLS"),
        "{capa}"
    );
    assert_eq!(
        c.cmd("STLS"),
        "-ERR STLS not available: no certificate configured"
    );
    assert!(
        c.cmd("AUTH PLAIN AGFsaWNlAHNlY3JldA==")
            .starts_with("+OK alice's maildrop has 5 messages")
    );
}
