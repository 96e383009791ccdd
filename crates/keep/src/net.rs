//! Which sockets a module may use: the manifest's `wasm.connect` and `wasm.listen`, nothing else.
//! UDP and name lookup stay off; every refusal is logged with the address and the rule to add.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::sockets::SocketAddrUse;

/// The addresses the manifest allows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SocketPolicy {
    connect: BTreeSet<SocketAddr>,
    listen: BTreeSet<SocketAddr>,
}

impl SocketPolicy {
    /// From the manifest's addresses (validated when the manifest was set; any that do not
    /// parse allow nothing).
    pub(crate) fn new(spec: &api::WasmSpec) -> Self {
        let parse = |list: &[String]| list.iter().filter_map(|a| a.parse().ok()).collect();
        Self {
            connect: parse(&spec.connect),
            listen: parse(&spec.listen),
        }
    }

    /// Whether `addr` may be used for `usage`.
    pub(crate) fn allows(&self, addr: SocketAddr, usage: SocketAddrUse) -> bool {
        match usage {
            SocketAddrUse::TcpConnect => self.connect.contains(&addr),
            // A connecting socket is first bound implicitly to the wildcard address, port 0.
            SocketAddrUse::TcpBind => {
                self.listen.contains(&addr)
                    || (!self.connect.is_empty() && addr.ip().is_unspecified() && addr.port() == 0)
            }
            SocketAddrUse::TcpListen => self.listen.contains(&addr),
            SocketAddrUse::TcpAccept => !self.listen.is_empty(),
            _ => false,
        }
    }

    /// Configure `builder`: TCP only when some address is allowed, checked against this policy.
    pub(crate) fn apply(self, builder: &mut WasiCtxBuilder) {
        if self.connect.is_empty() && self.listen.is_empty() {
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
        SocketPolicy::new(&spec)
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
