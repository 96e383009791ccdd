//! The PCS client against a fake PCCS on loopback that serves the real collateral of the
//! testdata (read from `../shared/testdata/attestation`, never copied): a real TDX quote
//! verifies with what was fetched exactly as with the published collateral file.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use attest::TcbStatus;
use attest::evidence::{Inputs, Verifiers};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use pcs::{KdsClient, PcsClient, PcsError};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use time::OffsetDateTime;

fn read(rel: &str) -> Vec<u8> {
    let base = std::env::var_os("CLOISTER_TESTDATA").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/attestation"),
        PathBuf::from,
    );
    let path = base.join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

const COLLATERAL: &str = "tdx/collateral_00806f050000_2025-10";
const QUOTE: &str = "tdx/gotdx_cos-113-tdx-quote.bin";

/// A fake PCCS serving one platform's collateral, counting requests.
#[derive(Clone, Default)]
struct FakePccs {
    requests: Arc<AtomicUsize>,
    omit_chain_header: bool,
}

fn with_chain(header: &'static str, chain: &[u8], body: Vec<u8>, omit: bool) -> Response {
    let mut headers = HeaderMap::new();
    if !omit {
        let pem = String::from_utf8_lossy(chain);
        let encoded = utf8_percent_encode(&pem, NON_ALPHANUMERIC).to_string();
        headers.insert(header, encoded.parse().unwrap());
    }
    (headers, body).into_response()
}

async fn tcb(State(pccs): State<FakePccs>, Query(q): Query<HashMap<String, String>>) -> Response {
    pccs.requests.fetch_add(1, Ordering::SeqCst);
    if q.get("fmspc").map(String::as_str) != Some("00806f050000") {
        return StatusCode::NOT_FOUND.into_response();
    }
    with_chain(
        "TCB-Info-Issuer-Chain",
        &read("intel/tcb_signing_chain_2025-2032.pem"),
        read(&format!("{COLLATERAL}/tcb_info_response.json")),
        pccs.omit_chain_header,
    )
}

async fn qe_identity(State(pccs): State<FakePccs>) -> Response {
    pccs.requests.fetch_add(1, Ordering::SeqCst);
    with_chain(
        "SGX-Enclave-Identity-Issuer-Chain",
        &read("intel/tcb_signing_chain_2025-2032.pem"),
        read(&format!("{COLLATERAL}/qe_identity_response.json")),
        false,
    )
}

async fn pck_crl(
    State(pccs): State<FakePccs>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    pccs.requests.fetch_add(1, Ordering::SeqCst);
    assert_eq!(q.get("ca").map(String::as_str), Some("platform"));
    with_chain(
        "SGX-PCK-CRL-Issuer-Chain",
        &read("intel/pck_platform_ca_chain.pem"),
        read(&format!("{COLLATERAL}/pck_platform_crl.der")),
        false,
    )
}

/// A PCCS answers the Root CA CRL as hex text.
async fn root_ca_crl(State(pccs): State<FakePccs>) -> Response {
    pccs.requests.fetch_add(1, Ordering::SeqCst);
    hex::encode(read("intel/root_ca_crl_2025-03-20.der")).into_response()
}

async fn serve(pccs: FakePccs) -> String {
    let app = axum::Router::new()
        .route("/tdx/certification/v4/tcb", get(tcb))
        .route("/tdx/certification/v4/qe/identity", get(qe_identity))
        .route("/sgx/certification/v4/pckcrl", get(pck_crl))
        .route("/sgx/certification/v4/rootcacrl", get(root_ca_crl))
        .with_state(pccs);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn verify(quote: &[u8], inputs: &Inputs) -> attest::Claims {
    let at = OffsetDateTime::parse(
        "2025-11-01T00:00:00Z",
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    Verifiers::production().verify(quote, inputs, at).unwrap().1
}

#[tokio::test]
async fn fetched_collateral_verifies_a_real_quote_and_is_reused() {
    let pccs = FakePccs::default();
    let client = PcsClient::new(&serve(pccs.clone()).await, &[]).unwrap();
    let quote = read(QUOTE);

    let fetched = client.collateral(&quote).await.unwrap();
    assert_eq!(pccs.requests.load(Ordering::SeqCst), 4);
    let given = Inputs {
        dcap_collateral: Some(Arc::clone(&fetched)),
        ..Inputs::default()
    };
    let claims = verify(&quote, &given);
    assert_eq!(claims.tcb_status, Some(TcbStatus::UpToDate));
    assert!(!claims.simulated);
    // The same verdict and claims as with the published collateral file.
    let published = Inputs {
        collateral: vec![(
            "collateral.json".into(),
            read(&format!("{COLLATERAL}/collateral.json")),
        )],
        ..Inputs::default()
    };
    assert_eq!(claims, verify(&quote, &published));
    // Its combined form (what an evidence bundle carries) verifies the same way.
    let combined = Inputs {
        collateral: vec![(
            "collateral.json".into(),
            fetched.to_combined_json().unwrap().into_bytes(),
        )],
        ..Inputs::default()
    };
    assert_eq!(claims, verify(&quote, &combined));

    let again = client.collateral(&quote).await.unwrap();
    assert!(Arc::ptr_eq(&fetched, &again), "reused, not refetched");
    assert_eq!(pccs.requests.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn failures_say_what_went_wrong() {
    // A platform the service does not know.
    let pccs = FakePccs::default();
    let client = PcsClient::new(&serve(pccs.clone()).await, &[]).unwrap();
    let other = read("tdx/phala_tdx_quote.bin");
    let err = client.collateral(&other).await.unwrap_err();
    assert!(
        matches!(err, PcsError::Status { status: 404, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("fmspc=b0c06f000000"), "{err}");
    assert!(err.to_string().contains("registered with Intel"), "{err}");

    // A response without its issuer chain.
    let bare = FakePccs {
        omit_chain_header: true,
        ..FakePccs::default()
    };
    let client = PcsClient::new(&serve(bare).await, &[]).unwrap();
    let err = client.collateral(&read(QUOTE)).await.unwrap_err();
    assert!(
        matches!(
            err,
            PcsError::MissingHeader {
                header: "TCB-Info-Issuer-Chain",
                ..
            }
        ),
        "{err:?}"
    );

    // Not a quote at all, and nobody listening.
    assert!(matches!(
        client.collateral(b"not a quote").await,
        Err(PcsError::Quote(_))
    ));
    let nobody = PcsClient::new("http://127.0.0.1:9", &[]).unwrap();
    let err = nobody.collateral(&read(QUOTE)).await.unwrap_err();
    assert!(matches!(err, PcsError::Unreachable { .. }), "{err:?}");
}

/// A fake KDS: the Milan and Genoa ASK/ARK chains and one Genoa VCEK, counting requests.
async fn serve_kds(requests: Arc<AtomicUsize>) -> String {
    let chain = |file: &'static str| {
        let requests = Arc::clone(&requests);
        get(move || {
            requests.fetch_add(1, Ordering::SeqCst);
            async move { read(file) }
        })
    };
    let vcek_requests = Arc::clone(&requests);
    let vcek = get(
        move |axum::extract::Path(hw_id): axum::extract::Path<String>,
              Query(q): Query<HashMap<String, String>>| {
            vcek_requests.fetch_add(1, Ordering::SeqCst);
            async move {
                let report = attest::snp::Report::parse(&read(GENOA_REPORT)).unwrap();
                let spl = |k: &str| q.get(k).map(String::as_str);
                // oak_genoa: bl 10, tee 0, snp 25, ucode 84.
                if hw_id != hex::encode(report.chip_id)
                    || (spl("blSPL"), spl("teeSPL"), spl("snpSPL"), spl("ucodeSPL"))
                        != (Some("10"), Some("0"), Some("25"), Some("84"))
                {
                    return StatusCode::NOT_FOUND.into_response();
                }
                read("snp/oak_genoa_vcek.der").into_response()
            }
        },
    );
    let app = axum::Router::new()
        .route(
            "/vcek/v1/Milan/cert_chain",
            chain("snp/amd_milan_ask_ark.pem"),
        )
        .route(
            "/vcek/v1/Genoa/cert_chain",
            chain("snp/amd_genoa_ask_ark.pem"),
        )
        .route("/vcek/v1/Genoa/{hw_id}", vcek);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

const GENOA_REPORT: &str = "snp/oak_genoa_report.bin";

fn at(text: &str) -> OffsetDateTime {
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap()
}

#[tokio::test]
async fn the_kds_chain_verifies_real_azure_evidence_that_carries_only_its_vcek() {
    let requests = Arc::new(AtomicUsize::new(0));
    let kds = KdsClient::new(&serve_kds(Arc::clone(&requests)).await, &[]).unwrap();
    let evidence = read("azure/trustee_az-snp-vtpm_evidence-v1.json");
    let needs = attest::evidence::needs(&evidence, None)
        .unwrap()
        .kds
        .unwrap();
    assert_eq!(needs.product, attest::snp::Product::Milan);
    assert!(needs.chain && needs.vcek.is_none(), "{needs:?}");

    let chain = kds.cert_chain(needs.product).await.unwrap();
    let again = kds.cert_chain(needs.product).await.unwrap();
    assert!(Arc::ptr_eq(&chain, &again));
    assert_eq!(requests.load(Ordering::SeqCst), 1, "reused, not refetched");

    let inputs = Inputs {
        chain: Some(chain.to_vec()),
        nonce: Some(b"challenge".to_vec()),
        ..Inputs::default()
    };
    let (_, claims) = Verifiers::production()
        .verify(&evidence, &inputs, at("2026-01-01T00:00:00Z"))
        .unwrap();
    assert_eq!(claims.tee, attest::TeeKind::AzSnpVtpm);

    // A product line the service does not serve.
    let err = kds
        .cert_chain(attest::snp::Product::Turin)
        .await
        .unwrap_err();
    assert!(
        matches!(err, PcsError::Status { status: 404, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn coco_snp_evidence_without_certificates_gets_its_vcek_and_chain_from_the_kds() {
    let kds_url = serve_kds(Arc::default()).await;
    let kds = KdsClient::new(&kds_url, &[]).unwrap();
    let report = attest::snp::Report::parse(&read(GENOA_REPORT)).unwrap();
    // What a CoCo guest sends when its host provisioned no certificates.
    let evidence =
        attest::snp::coco::to_json(&report, attest::snp::Product::Genoa, Vec::new()).unwrap();
    let needs = attest::evidence::needs(evidence.as_bytes(), None)
        .unwrap()
        .kds
        .unwrap();
    assert_eq!(needs.product, attest::snp::Product::Genoa);
    assert!(needs.chain);
    let (_, tcb) = needs.vcek.clone().unwrap();
    // A bare report needs the same.
    let bare = attest::evidence::needs(&read(GENOA_REPORT), None).unwrap();
    assert_eq!(bare.kds, Some(needs.clone()));

    // `Services::complete` fetches both and adds nothing else.
    let services = pcs::Services::new("http://127.0.0.1:9", &kds_url, &[]).unwrap();
    let mut inputs = Inputs::default();
    services
        .complete(evidence.as_bytes(), &mut inputs)
        .await
        .unwrap();
    assert!(inputs.vek.is_some() && inputs.chain.is_some() && inputs.collateral.is_empty());
    let (_, claims) = Verifiers::production()
        .verify(evidence.as_bytes(), &inputs, at("2025-09-01T00:00:00Z"))
        .unwrap();
    assert_eq!(claims.tee, attest::TeeKind::Snp);

    // Another chip's VCEK is not served.
    let err = kds.vcek(needs.product, &[0; 64], &tcb).await.unwrap_err();
    assert!(
        matches!(err, PcsError::Status { status: 404, .. }),
        "{err:?}"
    );
}
