//! Built without the `etcd` feature: an etcd location never parses, so nothing here runs.
//! The types exist so that the rest of the crate needs no `cfg`.

use std::convert::Infallible;
use std::sync::Arc;

use time::OffsetDateTime;
use tokio::sync::watch;

use super::{Batch, Root, StoreError};
use crate::seal::{Sealer, StateKey};

pub(crate) const TXN_LIMITS: (usize, usize) = (1 << 20, 120);

/// Where the state would be in etcd: never constructed in this build.
#[derive(Debug, Clone)]
pub struct Location(Infallible);

/// TLS to etcd.
#[derive(Debug, Clone)]
pub struct Tls {
    /// The CA certificate(s), PEM.
    pub ca_pem: Vec<u8>,
    /// The client certificate and key, PEM.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl Location {
    /// Always refused: this build has no etcd client.
    pub fn parse(text: &str, _tls: Option<Tls>) -> Result<Self, StoreError> {
        Err(StoreError::Location {
            location: text.to_string(),
            reason: "this cloister was built without etcd support: build it with \
                     `--features etcd` (etcd-client needs `protoc`)"
                .into(),
        })
    }

    /// Unreachable.
    pub async fn replicas(&self) -> Result<Vec<String>, StoreError> {
        match self.0 {}
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {}
    }
}

pub(super) async fn open(
    location: &Location,
    _kek: &Sealer,
    _adopt: Option<StateKey>,
) -> Result<(Arc<Shared>, Writer, StateKey), StoreError> {
    match location.0 {}
}

/// Never constructed in this build.
#[derive(Debug)]
pub enum Shared {}

impl Shared {
    pub(super) fn stored(&self, _: &str) -> Option<Vec<u8>> {
        match *self {}
    }
    pub(super) fn list(&self, _: &str) -> Vec<(String, Vec<u8>)> {
        match *self {}
    }
    pub(super) fn recovery(&self) -> Option<Vec<u8>> {
        match *self {}
    }
    pub(super) fn head(&self) -> api::StateHead {
        match *self {}
    }
    /// Unreachable.
    pub fn changes(&self) -> watch::Receiver<u64> {
        match *self {}
    }
    pub(super) async fn seal_state_key(&self, _: &Sealer, _: &StateKey) -> Result<(), StoreError> {
        match *self {}
    }
    pub(super) async fn audit(&self, _: u64, _: usize) -> Result<super::AuditRows, StoreError> {
        match *self {}
    }
    pub(super) fn watch(self: &Arc<Self>, _: Arc<Sealer>) {
        match **self {}
    }
    /// Unreachable.
    pub async fn register(self: &Arc<Self>, _: &str) -> Result<(), StoreError> {
        match **self {}
    }
}

/// Never constructed in this build.
pub(crate) enum Writer {}

impl Writer {
    pub(super) async fn load(&mut self, _: &Sealer) -> Result<(Root, OffsetDateTime), StoreError> {
        match *self {}
    }
    pub(super) fn stored(&self, _: &str) -> Option<Vec<u8>> {
        match *self {}
    }
    pub(super) fn reachable(&mut self) -> bool {
        match *self {}
    }
    pub(super) fn write(&mut self, _: &Batch) -> Result<bool, StoreError> {
        match *self {}
    }
    pub(super) fn refresh(&mut self, _: &Sealer, _: &Root) -> Result<Root, StoreError> {
        match *self {}
    }
}
