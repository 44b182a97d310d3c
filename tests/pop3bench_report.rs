//! The unit tests of the bench's modules that need no server of their own
//! (benches/pop3bench/{client,kind,mail,report,goals}.rs; the client's against fake servers). The
//! bench is built without a test harness, so its `#[cfg(test)]` modules run from here, compiled as
//! part of this test crate.

#[allow(dead_code)]
#[path = "../benches/pop3bench/client.rs"]
mod client;
#[allow(dead_code)]
#[path = "../benches/pop3bench/goals.rs"]
mod goals;
#[allow(dead_code)]
#[path = "../benches/pop3bench/kind.rs"]
mod kind;
#[allow(dead_code)]
#[path = "../benches/pop3bench/mail.rs"]
mod mail;
#[allow(dead_code)]
#[path = "../benches/pop3bench/report.rs"]
mod report;
