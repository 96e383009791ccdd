//! The REST API over HTTPS: routes, request parsing, and the accept loop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use crate::core::Coordinator;
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
        (Method::GET, "/certificates/{which}", get(certificate)),
        (Method::GET, "/secrets", get(get_secrets)),
        (Method::POST, "/secrets", post(set_secrets)),
        (Method::GET, "/audit", get(audit)),
        (Method::POST, "/activate", post(activate)),
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

fn json<T: serde::Serialize>(value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => ApiError::Internal(e.to_string()).into_response(),
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("request body: {e}")))
}

/// The values of `key` in a query string.
fn query_values(query: Option<&str>, key: &str) -> Vec<String> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
        .collect()
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
    let nonce = match query_values(q.as_deref(), "nonce").first() {
        Some(hex_text) => {
            let nonce = hex::decode(hex_text)
                .map_err(|_| ApiError::BadRequest("nonce must be hex".into()))?;
            if nonce.len() > api::MAX_NONCE_LEN {
                return Err(ApiError::BadRequest(format!(
                    "nonce is longer than {} bytes",
                    api::MAX_NONCE_LEN
                )));
            }
            Some(nonce)
        }
        None => None,
    };
    Ok(json(&c.attestation(nonce.as_deref()).await?))
}

async fn get_manifest(State(c): State<AppState>) -> Result<Response, ApiError> {
    Ok(json(&c.manifest()?))
}

async fn set_manifest(
    State(c): State<AppState>,
    Extension(peer): Extension<PeerCert>,
    body: Bytes,
) -> Result<Response, ApiError> {
    Ok(json(&c.set_manifest(&body, peer.der()).await?))
}

async fn certificate(
    State(c): State<AppState>,
    Path(which): Path<String>,
) -> Result<Response, ApiError> {
    let pem = match which.as_str() {
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
    body: Bytes,
) -> Result<Response, ApiError> {
    c.set_secrets(parse(&body)?, peer.der()).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn audit(State(c): State<AppState>) -> Result<Response, ApiError> {
    Ok(json(&c.audit()?))
}

async fn activate(
    State(c): State<AppState>,
    Extension(peer): Extension<PeerCert>,
    body: Bytes,
) -> Result<Response, ApiError> {
    Ok(json(&c.activate(parse(&body)?, peer.der()).await?))
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

/// Serve `router` over TLS on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, tls: Arc<rustls::ServerConfig>, router: Router) {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (tcp, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let router = router.clone();
        tokio::spawn(async move { connection(acceptor, tcp, remote, router).await });
    }
}

async fn connection(
    acceptor: TlsAcceptor,
    tcp: tokio::net::TcpStream,
    remote: SocketAddr,
    router: Router,
) {
    let tls = match acceptor.accept(tcp).await {
        Ok(tls) => tls,
        Err(e) => {
            tracing::debug!(%remote, error = %e, "TLS handshake failed");
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
    let service = router.map_request(
        move |mut request: axum::extract::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(peer.clone());
            request
        },
    );
    // HTTP/1.1 only, as ALPN says: no protocol sniffing on the request path.
    let result = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(tls), TowerToHyperService::new(service))
        .await;
    if let Err(e) = result {
        tracing::debug!(%remote, error = %e, "connection ended with an error");
    }
}
