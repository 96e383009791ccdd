//! `/kbs/v0`: the key-broker endpoints, with CoCo's error bodies and statuses. Admin calls are
//! authorized before their bodies are read; every body is read within its endpoint's limit.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use kbs::KbsError;

use crate::core::Coordinator;
use crate::http::{Operation, PeerCert, path_params, router_of};

type AppState = Arc<Coordinator>;

/// A key-broker failure as CoCo's clients expect it.
struct Failure(KbsError);

impl From<KbsError> for Failure {
    fn from(e: KbsError) -> Self {
        Self(e)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        tracing::info!(error = %self.0, "key-broker request refused");
        let status =
            StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self.0.information()).unwrap_or_default();
        (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
    }
}

type Result<T> = std::result::Result<T, Failure>;

/// The operations, below `/kbs/v0`.
pub(crate) fn operations() -> Vec<Operation> {
    const RESOURCE: &str = "/resource/{repo}/{kind}/{tag}";
    vec![
        (Method::POST, "/auth", post(auth)),
        (Method::POST, "/attest", post(attest)),
        (Method::GET, RESOURCE, get(get_resource)),
        (Method::POST, RESOURCE, post(set_resource)),
        (Method::DELETE, RESOURCE, delete(delete_resource)),
        (Method::POST, "/resource-policy", post(set_resource_policy)),
        (Method::GET, "/resource-policy", get(get_resource_policy)),
        (
            Method::POST,
            "/attestation-policy",
            post(set_attestation_policy),
        ),
        (Method::POST, "/reference-value", post(set_reference_value)),
        (
            Method::GET,
            "/reference-value/{name}",
            get(get_reference_value),
        ),
    ]
}

/// The routes, nested at `/kbs/v0`, with CoCo's errors for anything else.
pub(crate) fn router() -> Router<AppState> {
    router_of(operations())
        .fallback(|uri: axum::http::Uri| async move {
            Failure(KbsError::InvalidPath(uri.path().to_string()))
        })
        .method_not_allowed_fallback(|method: Method, uri: axum::http::Uri| async move {
            Failure(KbsError::MethodNotAllowed {
                method: method.to_string(),
                path: uri.path().to_string(),
            })
        })
}

async fn read_body(c: &Coordinator, body: Body, limit: usize) -> Result<Bytes> {
    Ok(crate::body::read(body, limit, c.limits.body_timeout)
        .await
        .map_err(KbsError::from)?)
}

/// A resource's `repo/type/tag`.
fn resource_path(
    params: std::result::Result<Path<(String, String, String)>, PathRejection>,
) -> Result<String> {
    let (repo, kind, tag) = path_params(params).map_err(KbsError::InvalidPath)?;
    Ok(format!("{repo}/{kind}/{tag}"))
}

fn session(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == kbs::SESSION_COOKIE)
        .map(|(_, value)| value.to_string())
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(|t| t.trim().to_string())
}

fn json_with_cookie(body: Vec<u8>, cookie: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json".to_string()),
            (header::SET_COOKIE, cookie),
        ],
        body,
    )
        .into_response()
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| Failure(KbsError::Internal(e.to_string())))
}

async fn auth(State(c): State<AppState>, body: Body) -> Result<Response> {
    let body = read_body(&c, body, crate::body::KBS_AUTH).await?;
    let (id, challenge) = c.broker.auth(&body)?;
    Ok(json_with_cookie(to_json(&challenge)?, c.broker.cookie(&id)))
}

async fn attest(State(c): State<AppState>, headers: HeaderMap, body: Body) -> Result<Response> {
    let id = session(&headers);
    // Evidence is read only on a live session.
    c.broker.session_of(id.as_deref())?;
    let body = read_body(&c, body, crate::body::KBS_ATTEST).await?;
    let token = c.broker.attest(&c, id.as_deref(), &body).await?;
    let body = to_json(&serde_json::json!({ "token": token }))?;
    Ok(json_with_cookie(
        body,
        c.broker.cookie(id.as_deref().unwrap_or_default()),
    ))
}

async fn get_resource(
    State(c): State<AppState>,
    headers: HeaderMap,
    params: std::result::Result<Path<(String, String, String)>, PathRejection>,
) -> Result<Response> {
    let path = resource_path(params)?;
    let response = c
        .broker
        .resource(
            &c,
            session(&headers).as_deref(),
            bearer(&headers).as_deref(),
            &path,
        )
        .await?;
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        to_json(&response)?,
    )
        .into_response())
}

fn admin(
    c: &Coordinator,
    peer: &PeerCert,
    headers: &HeaderMap,
    action: manifest::Action,
) -> Result<String> {
    Ok(c.kbs_admin(peer.der(), bearer(headers).as_deref(), action)?)
}

async fn set_resource(
    State(c): State<AppState>,
    Extension(peer): Extension<PeerCert>,
    headers: HeaderMap,
    params: std::result::Result<Path<(String, String, String)>, PathRejection>,
    body: Body,
) -> Result<StatusCode> {
    let user = admin(&c, &peer, &headers, manifest::Action::WriteResource)?;
    let path = resource_path(params)?;
    let body = read_body(&c, body, crate::body::KBS_RESOURCE).await?;
    c.broker.set_resource(&c, &user, &path, &body).await?;
    Ok(StatusCode::OK)
}

async fn delete_resource(
    State(c): State<AppState>,
    Extension(peer): Extension<PeerCert>,
    headers: HeaderMap,
    params: std::result::Result<Path<(String, String, String)>, PathRejection>,
) -> Result<StatusCode> {
    let user = admin(&c, &peer, &headers, manifest::Action::WriteResource)?;
    let path = resource_path(params)?;
    c.broker.delete_resource(&c, &user, &path).await?;
    Ok(StatusCode::OK)
}

async fn set_resource_policy(
    State(c): State<AppState>,
    Extension(peer): Extension<PeerCert>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode> {
    let user = admin(&c, &peer, &headers, manifest::Action::SetPolicy)?;
    let body = read_body(&c, body, crate::body::KBS_POLICY).await?;
    c.broker.set_resource_policy(&c, &user, &body).await?;
    Ok(StatusCode::OK)
}

async fn get_resource_policy(
    State(c): State<AppState>,
    Extension(peer): Extension<PeerCert>,
    headers: HeaderMap,
) -> Result<Response> {
    admin(&c, &peer, &headers, manifest::Action::SetPolicy)?;
    let policy = c.broker.resource_policy(&c)?;
    Ok(([(header::CONTENT_TYPE, "text/plain")], policy).into_response())
}

async fn set_attestation_policy(
    State(c): State<AppState>,
    Extension(peer): Extension<PeerCert>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode> {
    let user = admin(&c, &peer, &headers, manifest::Action::SetPolicy)?;
    let body = read_body(&c, body, crate::body::KBS_POLICY).await?;
    c.broker.set_attestation_policy(&c, &user, &body).await?;
    Ok(StatusCode::OK)
}

async fn set_reference_value(
    State(c): State<AppState>,
    Extension(peer): Extension<PeerCert>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode> {
    let user = admin(&c, &peer, &headers, manifest::Action::SetPolicy)?;
    let body = read_body(&c, body, crate::body::KBS_POLICY).await?;
    c.broker.set_reference_values(&c, &user, &body).await?;
    Ok(StatusCode::OK)
}

async fn get_reference_value(
    State(c): State<AppState>,
    Extension(peer): Extension<PeerCert>,
    headers: HeaderMap,
    name: std::result::Result<Path<String>, PathRejection>,
) -> Result<Response> {
    admin(&c, &peer, &headers, manifest::Action::SetPolicy)?;
    let name = path_params(name).map_err(KbsError::InvalidPath)?;
    let value = c.broker.reference_value(&name)?;
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        to_json(&value)?,
    )
        .into_response())
}
