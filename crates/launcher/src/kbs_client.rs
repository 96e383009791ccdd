//! The guest side of the key-broker protocol, as CoCo's clients speak it: `/auth`, `/attest`
//! with evidence binding the nonce and the TEE key, then resources decrypted with that key —
//! over a session cookie, or with the token as a Bearer (the attestation-agent path).

use attest::TeeKind;
use attest::attester::{Attester, AuxKind, Evidence};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use kbs::jwe::TeeKeyPair;
use kbs::{Attestation, Challenge, ErrorInformation, KbsError, Request, RuntimeData, Tee};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::client::{ClientError, pinned_http};

/// Why the key broker did not give us what we asked for.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KbsClientError {
    /// TLS or the request failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The broker refused, with CoCo's error body.
    #[error("the key broker refused (HTTP {status}): {}", .info.detail)]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The error body.
        info: ErrorInformation,
    },
    /// The broker's answer is not what the protocol says.
    #[error("unexpected answer from the key broker (HTTP {status}): {body}")]
    Unexpected {
        /// The HTTP status.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// Evidence could not be obtained.
    #[error("obtaining evidence: {0}")]
    Attester(#[from] attest::attester::AttesterError),
    /// Binding, encoding or decryption failed.
    #[error(transparent)]
    Protocol(#[from] KbsError),
}

/// What proves the TEE.
#[derive(Debug)]
pub enum Prover<'a> {
    /// A real or simulated attester.
    Attester(&'a dyn Attester),
    /// CoCo's `sample` attester (accepted only by a broker in simulation).
    Sample,
}

/// How to prove attestation when fetching a resource.
#[derive(Debug, Clone)]
pub enum Credential {
    /// The session cookie (`kbs-session-id=…`).
    Cookie(String),
    /// The attestation token, as a Bearer.
    Bearer(String),
}

/// The outcome of `/attest`.
#[derive(Debug, Clone)]
pub struct Attested {
    /// The attestation token.
    pub token: String,
    /// The session cookie.
    pub cookie: String,
}

/// A client for one key broker.
#[derive(Debug, Clone)]
pub struct KbsClient {
    base: String,
    http: reqwest::Client,
}

impl KbsClient {
    /// A client for the broker at `url`, trusting only `root_der` for its certificate.
    pub fn new(url: &str, root_der: &[u8]) -> Result<Self, KbsClientError> {
        Ok(Self {
            base: url.trim_end_matches('/').to_string(),
            http: pinned_http(root_der, None, true)?,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}{path}", self.base, kbs::PREFIX)
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(Vec<u8>, Option<String>), KbsClientError> {
        let response = request
            .send()
            .await
            .map_err(|source| ClientError::transport(self.base.clone(), source))?;
        let status = response.status().as_u16();
        let cookie = response
            .headers()
            .get(reqwest::header::SET_COOKIE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::to_string);
        let body = response
            .bytes()
            .await
            .map_err(|source| ClientError::transport(self.base.clone(), source))?;
        if status >= 400 {
            return Err(match serde_json::from_slice::<ErrorInformation>(&body) {
                Ok(info) => KbsClientError::Refused { status, info },
                Err(_) => unexpected(status, &body),
            });
        }
        Ok((body.to_vec(), cookie))
    }

    /// Run `/auth` and `/attest` with `prover`, binding `key`.
    pub async fn attest(
        &self,
        prover: &Prover<'_>,
        key: &TeeKeyPair,
        init_data: Option<kbs_types::InitData>,
    ) -> Result<Attested, KbsClientError> {
        let tee = match prover {
            Prover::Sample => Tee::Sample,
            Prover::Attester(a) => coco_tee(a.tee())?,
        };
        let request = Request {
            version: kbs::PROTOCOL_VERSION.to_string(),
            tee,
            extra_params: json!({ "supported-hash-algorithms": ["sha384"] }),
        };
        let (body, cookie) = self
            .send(self.http.post(self.url("/auth")).json(&request))
            .await?;
        let challenge: Challenge =
            serde_json::from_slice(&body).map_err(|_| unexpected(200, &body))?;
        let cookie = cookie.ok_or_else(|| unexpected(200, b"no session cookie"))?;
        let tee_pubkey = key.public()?;
        let digest = kbs::binding::runtime_data_digest(&challenge.nonce, &tee_pubkey, "")?;
        let primary_evidence = match prover {
            Prover::Sample => json!({ "svn": "1", "report_data": B64.encode(digest) }),
            Prover::Attester(a) => {
                // Hardware reports carry the digest zero-padded, a vTPM quote exactly.
                coco_evidence(&a.evidence_for(&digest)?)?
            }
        };
        let attestation = Attestation {
            init_data,
            runtime_data: RuntimeData {
                nonce: challenge.nonce,
                tee_pubkey,
            },
            tee_evidence: kbs_types::CompositeEvidence {
                primary_evidence,
                additional_evidence: String::new(),
            },
        };
        let (body, _) = self
            .send(
                self.http
                    .post(self.url("/attest"))
                    .header(reqwest::header::COOKIE, &cookie)
                    .json(&attestation),
            )
            .await?;
        let token = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["token"].as_str().map(str::to_string))
            .ok_or_else(|| unexpected(200, &body))?;
        Ok(Attested { token, cookie })
    }

    /// Fetch `repo/type/tag`, decrypting it with `key`.
    pub async fn get_resource(
        &self,
        path: &str,
        key: &TeeKeyPair,
        credential: &Credential,
    ) -> Result<Zeroizing<Vec<u8>>, KbsClientError> {
        let request = self.http.get(self.url(&format!("/resource/{path}")));
        let request = match credential {
            Credential::Cookie(cookie) => request.header(reqwest::header::COOKIE, cookie),
            Credential::Bearer(token) => request.bearer_auth(token),
        };
        let (body, _) = self.send(request).await?;
        let response: kbs::Response =
            serde_json::from_slice(&body).map_err(|_| unexpected(200, &body))?;
        Ok(key.decrypt(&response)?)
    }
}

fn unexpected(status: u16, body: &[u8]) -> KbsClientError {
    KbsClientError::Unexpected {
        status,
        body: String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
    }
}

fn coco_tee(tee: TeeKind) -> Result<Tee, KbsClientError> {
    tee.as_str()
        .parse()
        .map_err(|_| KbsClientError::Protocol(KbsError::UnsupportedTee(tee.to_string())))
}

/// Evidence in the JSON form CoCo's attesters send.
pub fn coco_evidence(evidence: &Evidence) -> Result<Value, KbsClientError> {
    Ok(match evidence.tee {
        TeeKind::Sgx => json!({ "quote": B64.encode(&evidence.bytes) }),
        TeeKind::Tdx => json!({
            "quote": B64.encode(&evidence.bytes),
            "cc_eventlog": evidence.aux(AuxKind::TdxCcel).map(|log| B64.encode(log)),
        }),
        TeeKind::Snp => {
            let report = attest::snp::Report::parse(&evidence.bytes)
                .map_err(|e| KbsError::Attestation(e.to_string()))?;
            let certs = evidence
                .aux(AuxKind::SnpCertTable)
                .and_then(|t| attest::snp::cert_table::parse(t).ok())
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(kind, data)| {
                    let cert_type = match kind {
                        attest::snp::cert_table::CertKind::Vcek => "VCEK",
                        attest::snp::cert_table::CertKind::Vlek => "VLEK",
                        attest::snp::cert_table::CertKind::Ask => "ASK",
                        attest::snp::cert_table::CertKind::Ark => "ARK",
                        _ => return None,
                    };
                    Some(attest::snp::coco::CertEntry {
                        cert_type: cert_type.to_string(),
                        data,
                    })
                })
                .collect();
            let product = report.product().unwrap_or(attest::snp::Product::Milan);
            let text = attest::snp::coco::to_json(&report, product, certs)
                .map_err(|e| KbsError::Attestation(e.to_string()))?;
            serde_json::from_str(&text).map_err(|e| KbsError::Serde(e.to_string()))?
        }
        // Azure vTPM evidence is already trustee's JSON.
        TeeKind::AzSnpVtpm | TeeKind::AzTdxVtpm => {
            serde_json::from_slice(&evidence.bytes).map_err(|e| KbsError::Serde(e.to_string()))?
        }
        other => {
            return Err(KbsClientError::Protocol(KbsError::UnsupportedTee(
                other.to_string(),
            )));
        }
    })
}
