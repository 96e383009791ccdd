//! Integration tests for the manifest crate (one binary: one link step).
// Helpers outside #[test] functions may fail loudly too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod appraise;
mod parse;
mod template;
mod validate;

use std::collections::BTreeMap;

use manifest::{Reserved, SecretKind, SecretValue, Values};
use zeroize::Zeroizing;

pub(crate) const ALICE_PEM: &str = include_str!("../data/alice.crt");
pub(crate) const BOB_PEM: &str = include_str!("../data/bob.crt");
pub(crate) const RECOVERY_PEM: &str = include_str!("../data/recovery.pub");

/// JSON-escape a PEM for embedding in a test manifest.
pub(crate) fn json_str(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// Fixed secret values for rendering tests.
#[derive(Default)]
pub(crate) struct TestValues {
    pub(crate) secrets: BTreeMap<String, SecretValue>,
    pub(crate) previous: BTreeMap<String, SecretValue>,
    pub(crate) reserved: BTreeMap<&'static str, SecretValue>,
}

pub(crate) fn cert_value(tag: u8) -> SecretValue {
    SecretValue::certificate(
        SecretKind::CertEcdsa,
        vec![tag; 3],
        Some(Zeroizing::new(vec![tag + 1; 3])),
        vec![tag + 2; 3],
    )
}

impl TestValues {
    pub(crate) fn standard() -> Self {
        let mut v = Self::default();
        v.secrets.insert(
            "key".into(),
            SecretValue::bytes(SecretKind::SymmetricKey, vec![0xde, 0xad, 0xbe, 0xef]),
        );
        v.secrets.insert(
            "token".into(),
            SecretValue::bytes(SecretKind::Plain, b"s3cret".to_vec()),
        );
        v.secrets.insert("tls".into(), cert_value(0x10));
        v.previous.insert(
            "key".into(),
            SecretValue::bytes(SecretKind::SymmetricKey, vec![0x01, 0x02]),
        );
        v.reserved.insert("RootCa", cert_value(0x20));
        v.reserved.insert("WorkloadCert", cert_value(0x30));
        v.reserved.insert("CoordinatorRoot", cert_value(0x40));
        v.reserved
            .insert("CoordinatorIntermediate", cert_value(0x50));
        v
    }
}

impl Values for TestValues {
    fn secret(&self, name: &str, previous: bool) -> Option<SecretValue> {
        let map = if previous {
            &self.previous
        } else {
            &self.secrets
        };
        map.get(name).cloned()
    }

    fn reserved(&self, which: Reserved) -> Option<SecretValue> {
        let key = match which {
            Reserved::RootCa => "RootCa",
            Reserved::WorkloadCert => "WorkloadCert",
            Reserved::CoordinatorRoot => "CoordinatorRoot",
            Reserved::CoordinatorIntermediate => "CoordinatorIntermediate",
            _ => return None,
        };
        self.reserved.get(key).cloned()
    }
}
