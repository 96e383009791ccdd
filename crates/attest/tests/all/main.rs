//! The attest crate's integration tests, one binary (link time matters on small machines).
//!
//! Real-hardware vectors are read from `../shared/testdata/attestation` beside the repository
//! (or `$CLOISTER_TESTDATA`); they are never copied into the repository.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod attester;
mod azure;
mod dcap;
mod eventlog;
mod sim;
mod snp;
mod support;
mod x509;
