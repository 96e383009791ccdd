//! A `wasi:http/proxy` handler that knows nothing of TEEs or TLS. Its routes:
//!
//! - `/hello`: 200 with the manifest's `APP_GREETING` and the request's path
//! - `/secret`: 200 with the SHA-256 of `/secrets/key`, a file the coordinator rendered
//! - `/write`: tries to overwrite `/secrets/key`; 403 with the error when it cannot (it must not)
//! - `/trap`: panics (a trap)
//! - `/spin`: never answers
//! - `/grow`: allocates 64 MiB

use sha2::{Digest as _, Sha256};
use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Handler;

wasi::http::proxy::export!(Handler);

impl wasi::exports::http::incoming_handler::Guest for Handler {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let (status, body) = match path.as_str() {
            "/hello" => (
                200,
                format!(
                    "hello from a keep: {} ({path})",
                    std::env::var("APP_GREETING").unwrap_or_default()
                ),
            ),
            "/secret" => match std::fs::read("/secrets/key") {
                Ok(bytes) => (200, Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect()),
                Err(e) => (500, format!("reading /secrets/key: {e}")),
            },
            "/write" => match std::fs::write("/secrets/key", "changed") {
                Ok(()) => (200, "wrote /secrets/key".into()),
                Err(e) => (403, format!("writing /secrets/key: {e}")),
            },
            "/trap" => panic!("asked to trap"),
            "/spin" => loop {
                std::hint::black_box(());
            },
            "/grow" => {
                let big = vec![1u8; 64 << 20];
                (200, format!("{}", big.len()))
            }
            _ => (404, format!("no route {path}")),
        };
        respond(response_out, status, body.as_bytes());
    }
}

fn respond(out: ResponseOutparam, status: u16, body: &[u8]) {
    let length = body.len().to_string().into_bytes();
    let headers = Fields::from_list(&[("content-length".to_string(), length)]).unwrap_or_else(|_| Fields::new());
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let Ok(outgoing) = response.body() else {
        return;
    };
    ResponseOutparam::set(out, Ok(response));
    if let Ok(stream) = outgoing.write() {
        let _ = stream.blocking_write_and_flush(body);
    }
    let _ = OutgoingBody::finish(outgoing, None);
}
