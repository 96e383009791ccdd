//! The REST API over HTTPS: routes, request parsing, and the accept loop.
//!
//! Every handler decides who the caller is and whether they may act before it reads the body
//! ([`crate::body`]). Connections are bounded in number and in time: the TLS handshake, the
//! request headers (which is also how long an idle keep-alive connection lasts), the body, and
//! every response write each have a deadline.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use crate::core::{Coordinator, Limits};
use crate::error::ApiError;

/// The TLS client certificate of the connection a request came on, if any (DER).
#[derive(Debug, Clone, Default)]
pub struct PeerCert(pub Option<Arc<Vec<u8>>>);

impl PeerCert {
    pub(crate) fn der(&self) -> Option<&[u8]> {
        self.0.as_deref().map(Vec::as_slice)
    }
}

type AppState = Arc<Coordinator>;

/// One served operation: method, path (below its prefix) and handler. Routers are built from
/// these tables, and [`served_operations`] lists them for the check against the OpenAPI document.
pub(crate) type Operation = (Method, &'static str, MethodRouter<AppState>);

fn v1_operations() -> Vec<Operation> {
    vec![
        (Method::GET, "/status", get(status)),
        (Method::GET, "/health", get(health)),
        (Method::GET, "/attestation", get(attestation)),
        (Method::GET, "/manifest", get(get_manifest)),
        (Method::POST, "/manifest", post(set_manifest)),
        (Method::GET, "/manifest/update", get(update_status)),
        (Method::POST, "/manifest/update", post(update_manifest)),
        (
            Method::POST,
            "/manifest/update/acknowledge",
            post(acknowledge_update),
        ),
        (Method::POST, "/manifest/update/cancel", post(cancel_update)),
        (Method::GET, "/certificates/{which}", get(certificate)),
        (Method::GET, "/secrets", get(get_secrets)),
        (Method::POST, "/secrets", post(set_secrets)),
        (Method::GET, "/audit", get(audit)),
        (Method::POST, "/activate", post(activate)),
        (Method::POST, "/replicas/join", post(join_replica)),
        (
            Method::POST,
            "/recover",
            post(|| async { ApiError::NotInRecovery }),
        ),
        (Method::GET, "/openapi.json", get(openapi)),
    ]
}

fn root_operations() -> Vec<Operation> {
    vec![(Method::GET, "/metrics", get(metrics))]
}

/// A router serving `operations` (operations on one path merge).
pub(crate) fn router_of(operations: Vec<Operation>) -> Router<AppState> {
    operations
        .into_iter()
        .fold(Router::new(), |router, (_, path, handler)| {
            router.route(path, handler)
        })
}

/// Every operation the coordinator serves, as (method, full path).
pub fn served_operations() -> Vec<(Method, String)> {
    [
        ("", root_operations()),
        (api::PREFIX, v1_operations()),
        (kbs::PREFIX, crate::kbs_http::operations()),
    ]
    .into_iter()
    .flat_map(|(prefix, operations)| {
        operations
            .into_iter()
            .map(move |(method, path, _)| (method, format!("{prefix}{path}")))
    })
    .collect()
}

/// The routes.
pub fn router(coordinator: AppState) -> Router {
    router_of(root_operations())
        .nest(api::PREFIX, router_of(v1_operations()))
        .nest(kbs::PREFIX, crate::kbs_http::router())
        .fallback(|uri: axum::http::Uri| async move { ApiError::NotFound(uri.path().to_string()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&coordinator),
            count_requests,
        ))
        .with_state(coordinator)
}

async fn count_requests(
    State(c): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(request).await;
    c.metrics.requests.fetch_add(1, Ordering::Relaxed);
    if !response.status().is_success() {
        c.metrics.request_errors.fetch_add(1, Ordering::Relaxed);
    }
    response
}

pub(crate) fn json<T: serde::Serialize>(value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => ApiError::Internal(e.to_string()).into_response(),
    }
}

/// Parse a JSON body. The error names where and how the body is wrong, never what it holds:
/// a body may carry secrets, and serde quotes the values it refuses.
pub(crate) fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    let mut reader = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut reader).map_err(|e| {
        let path = e.path().to_string();
        describe_json_error(&path, &e.into_inner())
    })?;
    reader.end().map_err(|e| describe_json_error(".", &e))?;
    Ok(value)
}

/// Where and how a JSON body is wrong, in words that quote nothing of it.
fn describe_json_error(path: &str, e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Data => {
            let text = e.to_string();
            // These name fields of the schema, not values the caller sent.
            if text.starts_with("missing field") {
                text.split(" at line")
                    .next()
                    .unwrap_or_default()
                    .to_string()
            } else {
                "a value of the wrong type or form".to_string()
            }
        }
        Category::Syntax => "not JSON, or JSON with something after it".to_string(),
        Category::Eof => "cut short".to_string(),
        Category::Io => "unreadable".to_string(),
    };
    let place = if path == "." {
        String::new()
    } else {
        format!(" at {path}")
    };
    format!(
        "request body{place}: {what} (line {}, column {})",
        e.line(),
        e.column()
    )
}

pub(crate) fn parse_api<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    parse(body).map_err(ApiError::BadRequest)
}

/// The values of `key` in a query string.
fn query_values(query: Option<&str>, key: &str) -> Vec<String> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
        .collect()
}

/// The one value of `key` in a query string, an integer in `range`.
fn query_number(
    query: Option<&str>,
    key: &str,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Option<u64>, ApiError> {
    match query_values(query, key).as_slice() {
        [] => Ok(None),
        [one] => one
            .parse()
            .ok()
            .filter(|n| range.contains(n))
            .map(Some)
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "{key} must be an integer from {} to {}",
                    range.start(),
                    range.end()
                ))
            }),
        _ => Err(ApiError::BadRequest(format!("give {key} once"))),
    }
}

/// Path parameters, or a problem document when they are not UTF-8.
pub(crate) fn path_params<T>(params: Result<Path<T>, PathRejection>) -> Result<T, String> {
    params
        .map(|Path(p)| p)
        .map_err(|e| format!("the request path is malformed: {}", e.body_text()))
}

async fn read_body(
    c: &Coordinator,
    body: Body,
    limit: usize,
) -> Result<axum::body::Bytes, ApiError> {
    Ok(crate::body::read(body, limit, c.limits.body_timeout).await?)
}

async fn status(State(c): State<AppState>) -> Response {
    json(&c.status())
}

async fn health() -> &'static str {
    "ok\n"
}

async fn attestation(
    State(c): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let nonce = nonce_of(q.as_deref())?;
    Ok(json(&c.attestation(nonce.as_deref()).await?))
}

/// The `nonce` of an attestation request's query, if any.
pub(crate) fn nonce_of(q: Option<&str>) -> Result<Option<Vec<u8>>, ApiError> {
    Ok(match query_values(q, "nonce").as_slice() {
        [] => None,
        [hex_text] => {
            let nonce = hex::decode(hex_text).map_err(|_| {
                ApiError::BadRequest("nonce must be hex (an even number of digits)".into())
            })?;
            if nonce.len() > api::MAX_NONCE_LEN {
                return Err(ApiError::BadRequest(format!(
                    "nonce is longer than {} bytes",
                    api::MAX_NONCE_LEN
                )));
            }
            Some(nonce)
        }
        _ => return Err(ApiError::BadRequest("give nonce once".into())),
    })
}

async fn get_manifest(State(c): State<AppState>) -> Result<Response, ApiError> {
    Ok(json(&c.manifest()?))
}

async fn set_manifest(
    State(c): State<AppState>,
    Extension(peer): Extension<PeerCert>,
    body: Body,
) -> Result<Response, ApiError> {
    c.manifest_setter(peer.der())?;
    let body = read_body(&c, body, crate::body::MANIFEST).await?;
    Ok(json(&c.set_manifest(&body, peer.der()).await?))
}

async fn join_replica(State(c): State<AppState>, body: Body) -> Result<Response, ApiError> {
    let body = read_body(&c, body, crate::body::ACTIVATION).await?;
    Ok(json(&c.join_replica(parse_api(&body)?).await?))
}

async fn update_status(State(c): State<AppState>) -> Result<Response, ApiError> {
    Ok(json(&c.update_status()?))
}

async fn update_manifest(
    State(c): State<AppState>,
    Extension(peer): Extension<PeerCert>,
    body: Body,
) -> Result<Response, ApiError> {
    c.updater(peer.der())?;
    let body = read_body(&c, body, crate::body::MANIFEST).await?;
    Ok(json(&c.update_manifest(&body, peer.der()).await?))
}

async fn acknowledge_update(
    State(c): State<AppState>,
    Extension(peer): Extension<PeerCert>,
    body: Body,
) -> Result<Response, ApiError> {
    c.updater(peer.der())?;
    let body = read_body(&c, body, crate::body::SMALL).await?;
    let ack: api::Acknowledgement = parse_api(&body)?;
    Ok(json(
        &c.acknowledge_update(&ack.manifest_hash, peer.der()).await?,
    ))
}

async fn cancel_update(
    State(c): State<AppState>,
    Extension(peer): Extension<PeerCert>,
) -> Result<Response, ApiError> {
    c.cancel_update(peer.der()).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn certificate(
    State(c): State<AppState>,
    which: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let pem = match path_params(which).map_err(ApiError::BadRequest)?.as_str() {
        "root" => c.ca.root_pem(),
        "intermediate" => c.ca.intermediate_pem(),
        "chain" => format!("{}{}", c.ca.intermediate_pem(), c.ca.root_pem()),
        other => {
            return Err(ApiError::NotFound(format!(
                "certificate {other:?} (root, intermediate or chain)"
            )));
        }
    };
    Ok(([(header::CONTENT_TYPE, "application/x-pem-file")], pem).into_response())
}

async fn get_secrets(
    State(c): State<AppState>,
    Extension(peer): Extension<PeerCert>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let names = query_values(q.as_deref(), "name");
    if names.is_empty() {
        return Err(ApiError::BadRequest(
            "name which secrets: ?name=a&name=b".into(),
        ));
    }
    Ok(json(&c.get_secrets(&names, peer.der())?))
}

async fn set_secrets(
    State(c): State<AppState>,
    Extension(peer): Extension<PeerCert>,
    body: Body,
) -> Result<Response, ApiError> {
    c.secret_writer(peer.der())?;
    let body = read_body(&c, body, crate::body::SECRETS).await?;
    c.set_secrets(parse_api(&body)?, peer.der()).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn audit(
    State(c): State<AppState>,
    Extension(peer): Extension<PeerCert>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let from = query_number(q.as_deref(), "from", 0..=u64::MAX)?.unwrap_or(0);
    let limit = query_number(q.as_deref(), "limit", 1..=api::MAX_AUDIT_PAGE as u64)?
        .map_or(api::MAX_AUDIT_PAGE / 10, |n| n as usize);
    Ok(json(&c.audit(peer.der(), from, limit).await?))
}

async fn activate(
    State(c): State<AppState>,
    Extension(peer): Extension<PeerCert>,
    body: Body,
) -> Result<Response, ApiError> {
    if peer.der().is_none() {
        return Err(ApiError::NoClientCertificate);
    }
    let body = read_body(&c, body, crate::body::ACTIVATION).await?;
    let started = Instant::now();
    let mut response = json(&c.activate(parse_api(&body)?, peer.der()).await?);
    // How long the coordinator worked on it (W3C Server-Timing), so that a client can tell its
    // own wait from the coordinator's work.
    let timing = format!("activate;dur={:.3}", started.elapsed().as_secs_f64() * 1e3);
    if let Ok(value) = header::HeaderValue::from_str(&timing) {
        response
            .headers_mut()
            .insert(header::HeaderName::from_static("server-timing"), value);
    }
    Ok(response)
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], crate::OPENAPI).into_response()
}

async fn metrics(State(c): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        c.metrics.render(&c.status()),
    )
        .into_response()
}

/// What a connection is served with: the TLS identity and the routes. Recovery mode replaces
/// its own with the recovered coordinator's; connections already open keep theirs.
#[derive(Clone)]
pub struct Site {
    acceptor: TlsAcceptor,
    router: Router,
}

impl std::fmt::Debug for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Site").finish_non_exhaustive()
    }
}

impl Site {
    /// `router` behind `tls`.
    pub fn new(tls: Arc<rustls::ServerConfig>, router: Router) -> Self {
        Self {
            acceptor: TlsAcceptor::from(tls),
            router,
        }
    }
}

/// Serve the current `site` over TLS on `listener` until the task is dropped: at most
/// `limits.max_connections` connections at once, each within the limits' deadlines.
pub async fn serve(listener: TcpListener, site: Arc<arc_swap::ArcSwap<Site>>, limits: Limits) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let limits = Arc::new(limits);
    let mut failures = AcceptFailures::default();
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let (tcp, remote) = match listener.accept().await {
            Ok(accepted) => {
                failures.reset();
                accepted
            }
            Err(e) => {
                tokio::time::sleep(failures.note(&e)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let Site { acceptor, router } = Site::clone(&site.load());
        let limits = Arc::clone(&limits);
        tokio::spawn(async move {
            let _slot = slot;
            connection(acceptor, tcp, remote, router, &limits).await;
        });
    }
}

/// Failed accepts: logged at most once a second, and waited out when the process or system is
/// out of file descriptors or memory (accepting again at once would only fail again).
#[derive(Debug, Default)]
struct AcceptFailures {
    last_logged: Option<Instant>,
    unlogged: u64,
    backoff: Duration,
}

impl AcceptFailures {
    const FIRST_BACKOFF: Duration = Duration::from_millis(10);
    const MAX_BACKOFF: Duration = Duration::from_secs(1);

    /// Note a failure; return how long to wait before accepting again.
    fn note(&mut self, e: &std::io::Error) -> Duration {
        let now = Instant::now();
        if self
            .last_logged
            .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1))
        {
            tracing::warn!(error = %e, more = self.unlogged, "accept failed");
            self.last_logged = Some(now);
            self.unlogged = 0;
        } else {
            self.unlogged += 1;
        }
        let exhausted = matches!(
            e.raw_os_error(),
            Some(
                libc_errno::EMFILE | libc_errno::ENFILE | libc_errno::ENOBUFS | libc_errno::ENOMEM
            )
        );
        if exhausted {
            self.backoff = (self.backoff * 2).clamp(Self::FIRST_BACKOFF, Self::MAX_BACKOFF);
            self.backoff
        } else {
            Duration::ZERO
        }
    }

    fn reset(&mut self) {
        self.backoff = Duration::ZERO;
    }
}

/// The errno values of resource exhaustion on Linux (stable ABI values).
mod libc_errno {
    pub(super) const ENOMEM: i32 = 12;
    pub(super) const ENFILE: i32 = 23;
    pub(super) const EMFILE: i32 = 24;
    pub(super) const ENOBUFS: i32 = 105;
}

async fn connection(
    acceptor: TlsAcceptor,
    tcp: tokio::net::TcpStream,
    remote: SocketAddr,
    router: Router,
    limits: &Limits,
) {
    let tls = match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(%remote, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%remote, "TLS handshake timed out");
            return;
        }
    };
    let peer = PeerCert(
        tls.get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| Arc::new(c.to_vec())),
    );
    // A refusal (4xx, 5xx) of a request that came with a body may have left that body unread:
    // then the connection ends with a lingering close.
    let with_body = Arc::new(AtomicBool::new(false));
    let refused_body = Arc::new(AtomicBool::new(false));
    let (sent, refused) = (Arc::clone(&with_body), Arc::clone(&refused_body));
    let service = router
        .map_request(
            move |mut request: axum::extract::Request<hyper::body::Incoming>| {
                use axum::body::HttpBody as _;
                sent.store(!request.body().is_end_stream(), Ordering::Relaxed);
                request.extensions_mut().insert(peer.clone());
                request
            },
        )
        .map_response(move |response: Response| {
            if with_body.load(Ordering::Relaxed) && !response.status().is_success() {
                refused.store(true, Ordering::Relaxed);
            }
            response
        });
    // HTTP/1.1 only, as ALPN says: no protocol sniffing on the request path.
    let io = WriteDeadline::new(tls, limits.write_stall_timeout);
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(service))
        .without_shutdown()
        .await;
    match served {
        Ok(parts) => {
            let mut tls = parts.io.into_inner().inner;
            if refused_body.load(Ordering::Relaxed) {
                linger(tls).await;
            } else {
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
            }
        }
        Err(e) => tracing::debug!(%remote, error = %e, "connection ended with an error"),
    }
}

/// Close a connection so that the client reads the last response: a body refused before it
/// was read (401, 413) may still be arriving, and closing a socket with unread data resets
/// it, taking the response with it. So: end our side, then read and drop what the client still
/// sends, for a moment and a few megabytes at most. Only after a refused request with a body:
/// a connection that ends normally closes at once.
async fn linger(mut tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    const FOR: Duration = Duration::from_secs(2);
    const AT_MOST: usize = 4 << 20;
    if tls.shutdown().await.is_err() {
        return;
    }
    let (mut tcp, _) = tls.into_inner();
    let mut sink = [0u8; 8 << 10];
    let mut drained = 0;
    let until = tokio::time::Instant::now() + FOR;
    while drained < AT_MOST {
        match tokio::time::timeout_at(until, tcp.read(&mut sink)).await {
            Ok(Ok(n)) if n > 0 => drained += n,
            _ => return,
        }
    }
}

/// A stream whose writes fail once one has made no progress for `stall`: a client that stops
/// reading its response cannot hold the connection (and its slot) forever.
struct WriteDeadline<T> {
    inner: T,
    stall: Duration,
    stalled_since: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<T> WriteDeadline<T> {
    fn new(inner: T, stall: Duration) -> Self {
        Self {
            inner,
            stall,
            stalled_since: None,
        }
    }

    /// Pass a write's outcome on; a pending one arms the stall timer, progress disarms it.
    fn watch<R>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<std::io::Result<R>>,
    ) -> Poll<std::io::Result<R>> {
        if poll.is_ready() {
            self.stalled_since = None;
            return poll;
        }
        let stall = self.stall;
        let timer = self
            .stalled_since
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client stopped reading",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteDeadline<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, poll)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn body_errors_never_quote_the_body() {
        let refused =
            parse::<api::Secrets>(br#"{"secrets": {"db": {"key": 12345678}}}"#).unwrap_err();
        assert!(!refused.contains("12345678"), "{refused}");
        assert!(refused.contains("secrets.db.key"), "{refused}");
        let refused = parse::<api::Secrets>(br#"{"secrets": {"db": "hunter2"}}"#).unwrap_err();
        assert!(!refused.contains("hunter2"), "{refused}");
        let missing = parse::<api::ActivationRequest>(br#"{"workload": "w"}"#).unwrap_err();
        assert!(missing.contains("missing field `evidence`"), "{missing}");
        let trailing = parse::<api::Secrets>(br#"{"secrets": {}} hunter2"#).unwrap_err();
        assert!(!trailing.contains("hunter2"), "{trailing}");
    }

    #[test]
    fn accept_failures_are_logged_once_a_second_and_back_off_when_exhausted() {
        let mut failures = AcceptFailures::default();
        let emfile = std::io::Error::from_raw_os_error(libc_errno::EMFILE);
        let waits: Vec<Duration> = (0..10).map(|_| failures.note(&emfile)).collect();
        assert_eq!(waits[0], AcceptFailures::FIRST_BACKOFF);
        assert!(waits.windows(2).all(|w| w[1] >= w[0]));
        assert_eq!(waits[9], AcceptFailures::MAX_BACKOFF);
        assert_eq!(
            failures.unlogged, 9,
            "one line for ten failures in a second"
        );
        failures.reset();
        let aborted = std::io::Error::from(std::io::ErrorKind::ConnectionAborted);
        assert_eq!(failures.note(&aborted), Duration::ZERO);
    }
}
