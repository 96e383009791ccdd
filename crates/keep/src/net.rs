//! Which sockets a module may use: the manifest's `wasm.connect` and `wasm.listen`, nothing else.
//! UDP and name lookup stay off; every refusal is logged with the address and the rule to add.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::sockets::SocketAddrUse;

use crate::ttls::Intercept;

/// The addresses the manifest allows, and the keep's transparent-TLS plumbing.
#[derive(Debug, Clone, Default)]
pub(crate) struct SocketPolicy {
    connect: BTreeSet<SocketAddr>,
    listen: BTreeSet<SocketAddr>,
    intercept: Option<Arc<Intercept>>,
}

impl SocketPolicy {
    /// From the manifest's addresses (validated when the manifest was set; any that do not
    /// parse allow nothing).
    pub(crate) fn new(spec: &api::WasmSpec, intercept: Option<Arc<Intercept>>) -> Self {
        let parse = |list: &[String]| list.iter().filter_map(|a| a.parse().ok()).collect();
        Self {
            connect: parse(&spec.connect),
            listen: parse(&spec.listen),
            intercept: intercept.filter(|i| i.is_active()),
        }
    }

    /// Whether `addr` may be used for `usage`. Transparent TLS adds its own: connecting to its
    /// proxies, listening behind its fronts, binding to an ephemeral port first.
    pub(crate) fn allows(&self, addr: SocketAddr, usage: SocketAddrUse) -> bool {
        let tls = self.intercept.as_deref();
        match usage {
            SocketAddrUse::TcpConnect => {
                self.connect.contains(&addr) || tls.is_some_and(|t| t.is_proxy(addr))
            }
            // A connecting socket is bound to an ephemeral port first (implicitly, or by the
            // keep before it connects to a proxy).
            SocketAddrUse::TcpBind => {
                self.listen.contains(&addr)
                    || (addr.port() == 0
                        && (addr.ip().is_unspecified() || addr.ip().is_loopback())
                        && (!self.connect.is_empty() || tls.is_some()))
            }
            SocketAddrUse::TcpListen => {
                self.listen.contains(&addr) || tls.is_some_and(|t| t.is_backend(addr))
            }
            SocketAddrUse::TcpAccept => {
                !self.listen.is_empty() || tls.is_some_and(Intercept::has_incoming)
            }
            _ => false,
        }
    }

    /// Configure `builder`: TCP only when some address is allowed, checked against this policy.
    pub(crate) fn apply(self, builder: &mut WasiCtxBuilder) {
        if self.connect.is_empty() && self.listen.is_empty() && self.intercept.is_none() {
            return;
        }
        let policy = Arc::new(self);
        builder.allow_tcp(true).socket_addr_check(move |addr, usage| {
            let allowed = policy.allows(addr, usage);
            if !allowed {
                tracing::warn!(
                    "refused: the module's {} of {addr}; the manifest's wasm.{} does not list it",
                    describe(usage),
                    if matches!(usage, SocketAddrUse::TcpConnect) { "connect" } else { "listen" }
                );
            }
            Box::pin(async move { allowed })
        });
    }
}

fn describe(usage: SocketAddrUse) -> &'static str {
    match usage {
        SocketAddrUse::TcpConnect => "connection",
        SocketAddrUse::TcpBind => "bind",
        SocketAddrUse::TcpListen => "listen",
        SocketAddrUse::TcpAccept => "accept",
        _ => "UDP use",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(connect: &[&str], listen: &[&str]) -> SocketPolicy {
        let mut spec = api::WasmSpec::default();
        spec.connect = connect.iter().map(|s| s.to_string()).collect();
        spec.listen = listen.iter().map(|s| s.to_string()).collect();
        SocketPolicy::new(&spec, None)
    }

    #[test]
    fn only_listed_addresses_are_allowed() {
        let p = policy(&["127.0.0.1:5432"], &["0.0.0.0:8080"]);
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(p.allows(addr("127.0.0.1:5432"), SocketAddrUse::TcpConnect));
        assert!(!p.allows(addr("127.0.0.1:5433"), SocketAddrUse::TcpConnect));
        assert!(!p.allows(addr("10.0.0.1:5432"), SocketAddrUse::TcpConnect));
        assert!(p.allows(addr("0.0.0.0:0"), SocketAddrUse::TcpBind));
        assert!(p.allows(addr("0.0.0.0:8080"), SocketAddrUse::TcpBind));
        assert!(!p.allows(addr("0.0.0.0:9090"), SocketAddrUse::TcpBind));
        assert!(p.allows(addr("0.0.0.0:8080"), SocketAddrUse::TcpListen));
        assert!(!p.allows(addr("127.0.0.1:53"), SocketAddrUse::UdpBind));
        let none = policy(&[], &[]);
        assert!(!none.allows(addr("0.0.0.0:0"), SocketAddrUse::TcpBind));
        assert!(!none.allows(addr("1.2.3.4:1"), SocketAddrUse::TcpAccept));
    }
}
