//! The unit tests of the bench's reporting modules (benches/pop3bench/{kind,report,goals}.rs). The
//! bench is built without a test harness, so its `#[cfg(test)]` modules run from here, compiled as
//! part of this test crate.

#[allow(dead_code)]
#[path = "../benches/pop3bench/goals.rs"]
mod goals;
#[allow(dead_code)]
#[path = "../benches/pop3bench/kind.rs"]
mod kind;
#[allow(dead_code)]
#[path = "../benches/pop3bench/report.rs"]
mod report;
