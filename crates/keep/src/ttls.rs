//! Transparent TLS for a module's TCP sockets.
//!
//! The module speaks plaintext TCP; the keep speaks TLS with the workload's certificate. The
//! keep puts itself in `wasi:sockets/tcp` (every method delegates to wasmtime-wasi's own
//! implementation) and changes two things:
//!
//! - **Outgoing rules.** A connection to a rule's address goes to a loopback proxy of the keep
//!   instead, which dials the real address over mTLS (the server verified against the
//!   deployment root and the rule's address). The module's socket is bound before it connects,
//!   and the proxy serves only connections from that socket's address, so nothing else on the
//!   machine can borrow the workload's identity through it.
//! - **Incoming rules.** A bind to a rule's port binds the public address in the keep, which
//!   terminates TLS there (the client must present a certificate of the deployment), and binds
//!   the module's socket to a loopback port the keep forwards to. The module accepts only
//!   connections that come from the keep's forwarder.
//!
//! The plaintext crosses the loopback interface of the machine the keep runs on: inside a
//! confidential VM that is inside the TEE.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use launcher::ttls::{TlsIdentity, splice};
use tokio::net::{TcpListener, TcpSocket as TokioSocket};
use wasmtime::component::{HasData, Resource};
use wasmtime_wasi::p2::bindings::sockets::network::{
    self, ErrorCode, IpAddressFamily, IpSocketAddress, Network,
};
use wasmtime_wasi::p2::bindings::sockets::tcp::{Host, HostTcpSocket, ShutdownType};
use wasmtime_wasi::p2::{
    DynInputStream, DynOutputStream, DynPollable, SocketError, SocketResult, TcpSocket,
};
use wasmtime_wasi::sockets::WasiSocketsCtxView;

use crate::KeepError;

/// How long an accept loop waits after a failed accept.
pub(crate) const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(50);

const LOOPBACK_ANY_PORT: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

/// An outgoing rule the module can reach: the address it dials, where the proxy listens.
#[derive(Debug, Clone)]
struct Outgoing {
    proxy: SocketAddr,
}

/// The interception state of one run, shared by the socket hooks, the address check and the
/// proxy tasks.
pub(crate) struct Intercept {
    identity: Option<TlsIdentity>,
    outgoing: HashMap<SocketAddr, Outgoing>,
    incoming: HashSet<u16>,
    state: Mutex<Shared>,
}

impl std::fmt::Debug for Intercept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intercept")
            .field("outgoing", &self.outgoing)
            .field("incoming", &self.incoming)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct Shared {
    /// Module sockets' local addresses allowed through an outgoing proxy (once each).
    expected: HashSet<SocketAddr>,
    /// Forwarders' local addresses allowed into a module listener (once each).
    forwarders: HashSet<SocketAddr>,
    /// Module sockets redirected to a proxy → the address the module dialed.
    redirected: HashMap<u32, SocketAddr>,
    /// Module sockets bound for an incoming rule → the public listener, until they listen.
    fronts: HashMap<u32, (SocketAddr, Option<TcpListener>)>,
    /// Loopback addresses of module sockets behind a TLS front.
    backends: HashSet<SocketAddr>,
}

impl Intercept {
    /// Start a proxy for each outgoing rule (on the current tokio runtime) and remember the
    /// incoming ports. Rules naming a certificate secret are not supported in keeps yet.
    pub(crate) async fn start(
        identity: Option<TlsIdentity>,
        rules: &api::TransparentTls,
    ) -> Result<Arc<Self>, KeepError> {
        if identity.is_none() && !rules.is_empty() {
            return Err(KeepError::Unsupported(
                "transparent TLS rules without the workload's identity".into(),
            ));
        }
        if let Some(rule) = rules.incoming.iter().find(|r| !r.cert.is_empty()) {
            return Err(KeepError::Unsupported(format!(
                "the incoming TLS rule on port {} serves certificate secret {:?}; keeps serve \
                 the workload's own certificate only",
                rule.port, rule.cert
            )));
        }
        let mut listeners = Vec::new();
        let mut outgoing = HashMap::new();
        for rule in &rules.outgoing {
            let Ok(ip) = rule.addr.parse::<IpAddr>() else {
                tracing::warn!(
                    "the outgoing TLS rule for {}:{} names a host, and a module has no name \
                     lookup: keeps match outgoing rules by IP address",
                    rule.addr,
                    rule.port
                );
                continue;
            };
            let listener = TcpListener::bind(LOOPBACK_ANY_PORT)
                .await
                .map_err(|source| KeepError::Io {
                    path: "a loopback proxy".into(),
                    source,
                })?;
            let proxy = listener.local_addr().map_err(|source| KeepError::Io {
                path: "a loopback proxy".into(),
                source,
            })?;
            outgoing.insert(SocketAddr::new(ip, rule.port), Outgoing { proxy });
            listeners.push((listener, rule.addr.clone(), rule.port));
        }
        let intercept = Arc::new(Self {
            identity,
            outgoing,
            incoming: rules.incoming.iter().map(|r| r.port).collect(),
            state: Mutex::new(Shared::default()),
        });
        for (listener, addr, port) in listeners {
            tokio::spawn(intercept.clone().proxy_out(listener, addr, port));
        }
        Ok(intercept)
    }

    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether any rule is in force.
    pub(crate) fn is_active(&self) -> bool {
        !self.outgoing.is_empty() || !self.incoming.is_empty()
    }

    /// Whether a module listens behind a TLS front, or may.
    pub(crate) fn has_incoming(&self) -> bool {
        !self.incoming.is_empty()
    }

    /// Whether `addr` is one of the keep's outgoing proxies.
    pub(crate) fn is_proxy(&self, addr: SocketAddr) -> bool {
        self.outgoing.values().any(|o| o.proxy == addr)
    }

    /// Whether `addr` is a module listener behind a TLS front.
    pub(crate) fn is_backend(&self, addr: SocketAddr) -> bool {
        self.shared().backends.contains(&addr)
    }

    async fn proxy_out(self: Arc<Self>, listener: TcpListener, addr: String, port: u16) {
        loop {
            let Ok((plain, peer)) = listener.accept().await else {
                // Out of descriptors, most likely: wait instead of spinning.
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            };
            if !self.shared().expected.remove(&peer) {
                tracing::warn!("refused {peer} on the proxy for {addr}:{port}: not the module's");
                continue;
            }
            let Some(identity) = self.identity.clone() else {
                return;
            };
            let addr = addr.clone();
            tokio::spawn(async move {
                match identity.connect(&addr, port).await {
                    Ok(tls) => {
                        let _ = splice(plain, tls).await;
                    }
                    Err(e) => tracing::warn!("transparent TLS to {addr}:{port}: {e}"),
                }
            });
        }
    }

    async fn front(self: Arc<Self>, listener: TcpListener, backend: SocketAddr) {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            };
            let Some(identity) = self.identity.clone() else {
                return;
            };
            let this = self.clone();
            tokio::spawn(async move {
                let tls = match identity.accept(tcp).await {
                    Ok(tls) => tls,
                    Err(e) => {
                        tracing::warn!("refused a client of the module: {e}");
                        return;
                    }
                };
                match this.forward(backend).await {
                    Ok(plain) => {
                        let _ = splice(tls, plain).await;
                    }
                    Err(e) => tracing::warn!("forwarding to the module at {backend}: {e}"),
                }
            });
        }
    }

    /// A loopback connection to the module's listener from an address it will accept.
    async fn forward(&self, backend: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
        let socket = TokioSocket::new_v4()?;
        socket.bind(LOOPBACK_ANY_PORT)?;
        let local = socket.local_addr()?;
        self.shared().forwarders.insert(local);
        let stream = socket.connect(backend).await;
        if stream.is_err() {
            self.shared().forwarders.remove(&local);
        }
        stream
    }
}

/// The linker's marker for the intercepting `wasi:sockets/tcp`.
pub(crate) struct InterceptedTcp;

impl HasData for InterceptedTcp {
    type Data<'a> = InterceptedView<'a>;
}

/// wasmtime-wasi's sockets view and the run's interception state.
pub(crate) struct InterceptedView<'a> {
    pub(crate) inner: WasiSocketsCtxView<'a>,
    pub(crate) intercept: &'a Arc<Intercept>,
}

fn again<T>(resource: &Resource<T>) -> Resource<T>
where
    T: 'static,
{
    Resource::new_borrow(resource.rep())
}

/// Poll `future` once. Binding is async only for the address check, which the keep's policy
/// answers at once: this runs it from the synchronous `start-connect`.
fn now_or_never<F: Future>(future: F) -> Option<F::Output> {
    let future = std::pin::pin!(future);
    match future.poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
        std::task::Poll::Ready(output) => Some(output),
        std::task::Poll::Pending => None,
    }
}

impl Host for InterceptedView<'_> {}

impl network::HostNetwork for InterceptedView<'_> {
    fn drop(&mut self, this: Resource<Network>) -> wasmtime::Result<()> {
        network::HostNetwork::drop(&mut self.inner, this)
    }
}

impl network::Host for InterceptedView<'_> {
    fn convert_error_code(&mut self, error: SocketError) -> wasmtime::Result<ErrorCode> {
        self.inner.convert_error_code(error)
    }

    fn network_error_code(
        &mut self,
        error: Resource<wasmtime_wasi::p2::IoError>,
    ) -> wasmtime::Result<Option<ErrorCode>> {
        self.inner.network_error_code(error)
    }
}

impl HostTcpSocket for InterceptedView<'_> {
    async fn start_bind(
        &mut self,
        this: Resource<TcpSocket>,
        network: Resource<Network>,
        local_address: IpSocketAddress,
    ) -> SocketResult<()> {
        let public: SocketAddr = local_address.into();
        if !self.intercept.incoming.contains(&public.port()) {
            return self.inner.start_bind(this, network, local_address).await;
        }
        let listener = TcpListener::bind(public)
            .await
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AddrInUse => ErrorCode::AddressInUse,
                std::io::ErrorKind::PermissionDenied => ErrorCode::AccessDenied,
                _ => ErrorCode::Unknown,
            })?;
        self.inner
            .start_bind(again(&this), network, LOOPBACK_ANY_PORT.into())
            .await?;
        self.intercept
            .shared()
            .fronts
            .insert(this.rep(), (public, Some(listener)));
        Ok(())
    }

    fn finish_bind(&mut self, this: Resource<TcpSocket>) -> SocketResult<()> {
        self.inner.finish_bind(again(&this))?;
        if self.intercept.shared().fronts.contains_key(&this.rep()) {
            let backend: SocketAddr = self.inner.local_address(this)?.into();
            self.intercept.shared().backends.insert(backend);
        }
        Ok(())
    }

    fn start_connect(
        &mut self,
        this: Resource<TcpSocket>,
        network: Resource<Network>,
        remote_address: IpSocketAddress,
    ) -> SocketResult<()> {
        let target: SocketAddr = remote_address.into();
        let Some(rule) = self.intercept.outgoing.get(&target).cloned() else {
            return self.inner.start_connect(this, network, remote_address);
        };
        // Bind first, so the proxy knows which connection is the module's.
        let local = match self.inner.local_address(again(&this)) {
            Ok(local) => local.into(),
            Err(_) => {
                now_or_never(self.inner.start_bind(
                    again(&this),
                    again(&network),
                    LOOPBACK_ANY_PORT.into(),
                ))
                .unwrap_or(Err(ErrorCode::WouldBlock.into()))?;
                self.inner.finish_bind(again(&this))?;
                SocketAddr::from(self.inner.local_address(again(&this))?)
            }
        };
        let mut shared = self.intercept.shared();
        shared.expected.insert(local);
        shared.redirected.insert(this.rep(), target);
        drop(shared);
        self.inner.start_connect(this, network, rule.proxy.into())
    }

    fn finish_connect(
        &mut self,
        this: Resource<TcpSocket>,
    ) -> SocketResult<(Resource<DynInputStream>, Resource<DynOutputStream>)> {
        self.inner.finish_connect(this)
    }

    async fn start_listen(&mut self, this: Resource<TcpSocket>) -> SocketResult<()> {
        self.inner.start_listen(again(&this)).await?;
        let front = self
            .intercept
            .shared()
            .fronts
            .get_mut(&this.rep())
            .and_then(|(_, listener)| listener.take());
        if let Some(listener) = front {
            let backend: SocketAddr = self.inner.local_address(this)?.into();
            tokio::spawn(self.intercept.clone().front(listener, backend));
        }
        Ok(())
    }

    fn finish_listen(&mut self, this: Resource<TcpSocket>) -> SocketResult<()> {
        self.inner.finish_listen(this)
    }

    fn accept(
        &mut self,
        this: Resource<TcpSocket>,
    ) -> SocketResult<(
        Resource<TcpSocket>,
        Resource<DynInputStream>,
        Resource<DynOutputStream>,
    )> {
        let fronted = self.intercept.shared().fronts.contains_key(&this.rep());
        let (socket, input, output) = self.inner.accept(this)?;
        if !fronted {
            return Ok((socket, input, output));
        }
        let peer: SocketAddr = self.inner.remote_address(again(&socket))?.into();
        if self.intercept.shared().forwarders.remove(&peer) {
            return Ok((socket, input, output));
        }
        // Not the keep's forwarder: someone on this machine bypassing TLS. Drop it unseen.
        tracing::warn!(
            "refused {peer}: a TLS port's plaintext side takes only the keep's forwarder"
        );
        let table = &mut *self.inner.table;
        let _ = table.delete(input);
        let _ = table.delete(output);
        let _ = table.delete(socket);
        Err(ErrorCode::WouldBlock.into())
    }

    fn local_address(&mut self, this: Resource<TcpSocket>) -> SocketResult<IpSocketAddress> {
        if let Some((public, _)) = self.intercept.shared().fronts.get(&this.rep()) {
            return Ok((*public).into());
        }
        self.inner.local_address(this)
    }

    fn remote_address(&mut self, this: Resource<TcpSocket>) -> SocketResult<IpSocketAddress> {
        if let Some(target) = self.intercept.shared().redirected.get(&this.rep()) {
            return Ok((*target).into());
        }
        self.inner.remote_address(this)
    }

    fn is_listening(&mut self, this: Resource<TcpSocket>) -> wasmtime::Result<bool> {
        self.inner.is_listening(this)
    }

    fn address_family(&mut self, this: Resource<TcpSocket>) -> wasmtime::Result<IpAddressFamily> {
        self.inner.address_family(this)
    }

    fn set_listen_backlog_size(
        &mut self,
        this: Resource<TcpSocket>,
        value: u64,
    ) -> SocketResult<()> {
        self.inner.set_listen_backlog_size(this, value)
    }

    fn keep_alive_enabled(&mut self, this: Resource<TcpSocket>) -> SocketResult<bool> {
        self.inner.keep_alive_enabled(this)
    }

    fn set_keep_alive_enabled(
        &mut self,
        this: Resource<TcpSocket>,
        value: bool,
    ) -> SocketResult<()> {
        self.inner.set_keep_alive_enabled(this, value)
    }

    fn keep_alive_idle_time(&mut self, this: Resource<TcpSocket>) -> SocketResult<u64> {
        self.inner.keep_alive_idle_time(this)
    }

    fn set_keep_alive_idle_time(
        &mut self,
        this: Resource<TcpSocket>,
        value: u64,
    ) -> SocketResult<()> {
        self.inner.set_keep_alive_idle_time(this, value)
    }

    fn keep_alive_interval(&mut self, this: Resource<TcpSocket>) -> SocketResult<u64> {
        self.inner.keep_alive_interval(this)
    }

    fn set_keep_alive_interval(
        &mut self,
        this: Resource<TcpSocket>,
        value: u64,
    ) -> SocketResult<()> {
        self.inner.set_keep_alive_interval(this, value)
    }

    fn keep_alive_count(&mut self, this: Resource<TcpSocket>) -> SocketResult<u32> {
        self.inner.keep_alive_count(this)
    }

    fn set_keep_alive_count(&mut self, this: Resource<TcpSocket>, value: u32) -> SocketResult<()> {
        self.inner.set_keep_alive_count(this, value)
    }

    fn hop_limit(&mut self, this: Resource<TcpSocket>) -> SocketResult<u8> {
        self.inner.hop_limit(this)
    }

    fn set_hop_limit(&mut self, this: Resource<TcpSocket>, value: u8) -> SocketResult<()> {
        self.inner.set_hop_limit(this, value)
    }

    fn receive_buffer_size(&mut self, this: Resource<TcpSocket>) -> SocketResult<u64> {
        self.inner.receive_buffer_size(this)
    }

    fn set_receive_buffer_size(
        &mut self,
        this: Resource<TcpSocket>,
        value: u64,
    ) -> SocketResult<()> {
        self.inner.set_receive_buffer_size(this, value)
    }

    fn send_buffer_size(&mut self, this: Resource<TcpSocket>) -> SocketResult<u64> {
        self.inner.send_buffer_size(this)
    }

    fn set_send_buffer_size(&mut self, this: Resource<TcpSocket>, value: u64) -> SocketResult<()> {
        self.inner.set_send_buffer_size(this, value)
    }

    fn subscribe(&mut self, this: Resource<TcpSocket>) -> wasmtime::Result<Resource<DynPollable>> {
        self.inner.subscribe(this)
    }

    fn shutdown(&mut self, this: Resource<TcpSocket>, how: ShutdownType) -> SocketResult<()> {
        self.inner.shutdown(this, how)
    }

    fn drop(&mut self, this: Resource<TcpSocket>) -> wasmtime::Result<()> {
        let mut shared = self.intercept.shared();
        shared.redirected.remove(&this.rep());
        if let Some((_, listener)) = shared.fronts.remove(&this.rep()) {
            drop(listener);
        }
        drop(shared);
        HostTcpSocket::drop(&mut self.inner, this)
    }
}
