//! `keep serve`: a `wasi:http/proxy` component answers HTTPS requests, one fresh instance per
//! request, instantiated from a pre-instantiated component with the pooling allocator.
//!
//! TLS ends in the keep with the workload's certificate (clients need a deployment
//! certificate unless the manifest's `wasm.disable_client_auth` says otherwise). Each request
//! runs within the manifest's limits and deadline; a handler that traps, runs out of memory or
//! time gets its request answered with an error, and the server goes on serving others.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::server::conn::http1;
use launcher::ttls::TlsIdentity;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use wasmtime::Store;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use crate::engine::{Loaded, Program};
use crate::preopens::{PreopensView, SharedPreopens};
use crate::run::{Limiter, new_store, stopped_by, wasi_builder_without_preopens};
use crate::{KeepEngine, KeepError, RunConfig};

/// Requests handled at once; more wait for a slot. The pooling allocator holds this many
/// instances' memories.
pub const MAX_CONCURRENT_REQUESTS: u32 = 64;

/// Connections served at once; more wait in the kernel's backlog.
pub const MAX_CONNECTIONS: usize = 512;

/// How long a client has for its TLS handshake, and for each request's headers (also the
/// longest a kept-alive connection may sit idle).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest a request may take when the manifest sets no deadline.
const DEFAULT_REQUEST_DEADLINE: Duration = Duration::from_secs(30);

/// One request's store.
struct HttpState {
    wasi: WasiCtx,
    table: ResourceTable,
    http: WasiHttpCtx,
    hooks: NoOutgoingHttp,
    limiter: Limiter,
    preopens: SharedPreopens,
}

impl WasiView for HttpState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HttpState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Handlers answer requests; they make none (outgoing HTTP is not in the manifest's grammar
/// yet, so it is refused rather than allowed unchecked).
#[derive(Debug, Clone, Copy)]
pub struct NoOutgoingHttp;

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<wasmtime_wasi_http::WasiBody>,
                    Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                ),
                wasmtime_wasi_http::Error,
            >,
        > + Send,
>;

impl WasiHttpHooks for NoOutgoingHttp {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> SendFuture {
        tracing::warn!(
            "refused the handler's outgoing request to {}",
            request.uri()
        );
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}

/// A handler ready to serve: the pre-instantiated component and what each request gets.
pub struct Server {
    pre: ProxyPre<HttpState>,
    config: Arc<RunConfig>,
    preopens: SharedPreopens,
    slots: Semaphore,
    deadline: Duration,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Link and pre-instantiate `loaded`, which must be a `wasi:http/proxy` component.
    pub fn new(engine: &KeepEngine, loaded: &Loaded, config: RunConfig) -> Result<Self, KeepError> {
        let Program::Component(component) = &loaded.program else {
            return Err(KeepError::NotAHandler(
                "it is a WASI preview 1 module; `keep serve` runs wasi:http/proxy components"
                    .into(),
            ));
        };
        let pre = Self::link(engine, component)?;
        let deadline = match config.spec.limits.deadline_ms {
            0 => DEFAULT_REQUEST_DEADLINE,
            ms => Duration::from_millis(ms),
        };
        Ok(Self {
            pre,
            preopens: SharedPreopens::open(config.preopens())?,
            config: Arc::new(config),
            slots: Semaphore::new(MAX_CONCURRENT_REQUESTS as usize),
            deadline,
        })
    }

    fn link(engine: &KeepEngine, component: &Component) -> Result<ProxyPre<HttpState>, KeepError> {
        let mut linker = Linker::<HttpState>::new(engine.engine());
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(KeepError::Setup)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(KeepError::Setup)?;
        SharedPreopens::add_to_linker(&mut linker, |state: &mut HttpState| PreopensView {
            preopens: &state.preopens,
            table: &mut state.table,
        })?;
        let pre = linker
            .instantiate_pre(component)
            .map_err(KeepError::Setup)?;
        ProxyPre::new(pre).map_err(|e| {
            KeepError::NotAHandler(format!(
                "it does not export wasi:http/incoming-handler ({e:#})"
            ))
        })
    }

    /// A store for one request, instantiated; what a warm request costs before the handler
    /// runs (the benchmark measures it).
    pub async fn instantiate(&self) -> Result<(), KeepError> {
        let mut store = self.store();
        self.pre
            .instantiate_async(&mut store)
            .await
            .map(|_| ())
            .map_err(KeepError::Setup)
    }

    fn store(&self) -> Store<HttpState> {
        let wasi = wasi_builder_without_preopens(&self.config, None).build();
        let state = HttpState {
            wasi,
            table: ResourceTable::new(),
            http: WasiHttpCtx::new(),
            hooks: NoOutgoingHttp,
            limiter: Limiter::new(self.config.spec.limits),
            preopens: self.preopens.clone(),
        };
        let mut store = new_store(self.pre.engine(), state);
        store.limiter(|s| &mut s.limiter);
        store
    }

    /// Answer one request: the handler's response, or an error response saying what stopped
    /// it (the details go to the log).
    pub async fn handle<B>(&self, request: hyper::Request<B>) -> hyper::Response<HyperOutgoingBody>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let Ok(_slot) = self.slots.acquire().await else {
            return error_response(503, "the keep is shutting down");
        };
        match self.try_handle(request).await {
            Ok(response) => response,
            Err(failure) => {
                tracing::warn!("request failed: {failure}");
                let status = match failure {
                    KeepError::Deadline { .. } => 504,
                    _ => 500,
                };
                error_response(status, &failure.to_string())
            }
        }
    }

    async fn try_handle<B>(
        &self,
        request: hyper::Request<B>,
    ) -> Result<hyper::Response<HyperOutgoingBody>, KeepError>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let mut store = self.store();
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let mut http = store.data_mut().http();
        let request = http
            .new_incoming_request(Scheme::Https, request)
            .map_err(KeepError::Setup)?;
        let out = http
            .new_response_outparam(sender)
            .map_err(KeepError::Setup)?;
        let pre = self.pre.clone();
        let deadline = self.deadline;
        // The handler may stream its body after the response head: it runs on as a task,
        // within the same deadline.
        let task = tokio::spawn(tokio::time::timeout(deadline, async move {
            let proxy = pre.instantiate_async(&mut store).await?;
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, request, out)
                .await
        }));
        let deadline_ms = u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX);
        match receiver.await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(code)) => Err(KeepError::Trap(wasmtime::Error::msg(format!(
                "the handler answered with an error: {code:?}"
            )))),
            Err(_) => match task.await {
                Ok(Err(_elapsed)) => Err(KeepError::Deadline { deadline_ms }),
                Ok(Ok(Err(error))) => Err(stopped_by(error)),
                Ok(Ok(Ok(()))) => Err(KeepError::Trap(wasmtime::Error::msg(
                    "the handler returned without a response",
                ))),
                Err(join) => Err(KeepError::Trap(wasmtime::Error::msg(join.to_string()))),
            },
        }
    }

    /// Serve HTTPS on `listener` until the task is dropped, each connection on its own task.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, identity: TlsIdentity) {
        let client_auth = !self.config.spec.disable_client_auth;
        let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            let Ok(slot) = connections.clone().acquire_owned().await else {
                return;
            };
            let (tcp, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!("accepting a connection: {e}");
                    tokio::time::sleep(crate::ttls::ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            let server = self.clone();
            let acceptor = identity.acceptor(client_auth).clone();
            tokio::spawn(async move {
                let _slot = slot;
                let _ = tcp.set_nodelay(true);
                let tls = match tokio::time::timeout(CLIENT_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::warn!("TLS with {peer}: {e}");
                        return;
                    }
                    Err(_) => return,
                };
                let service = hyper::service::service_fn(move |request| {
                    let server = server.clone();
                    async move { Ok::<_, Infallible>(server.handle(request).await) }
                });
                if let Err(e) = http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .keep_alive(true)
                    .header_read_timeout(CLIENT_TIMEOUT)
                    .serve_connection(TokioIo::new(tls), service)
                    .await
                {
                    tracing::debug!("connection from {peer}: {e}");
                }
            });
        }
    }
}

fn error_response(status: u16, message: &str) -> hyper::Response<HyperOutgoingBody> {
    let body = Full::new(Bytes::from(format!("{message}\n")))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = hyper::Response::new(body);
    *response.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    response
}

/// Bind `listen` (before activating, so a taken port fails early).
pub async fn bind(listen: SocketAddr) -> Result<TcpListener, KeepError> {
    TcpListener::bind(listen)
        .await
        .map_err(|source| KeepError::Io {
            path: listen.to_string().into(),
            source,
        })
}
