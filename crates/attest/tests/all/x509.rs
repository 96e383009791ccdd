//! The shared certificate layer against real Intel and AMD PKI material.

use attest::TrustAnchor;
use attest::x509::{Cert, CertError, Crl, Revocation, parse_pem_chain, verify_chain};

use crate::support::{at, read};

#[test]
fn intel_tcb_signing_chains_verify_only_inside_their_validity() {
    let old = parse_pem_chain(&read("intel/tcb_signing_chain_2018-2025.pem")).unwrap();
    let new = parse_pem_chain(&read("intel/tcb_signing_chain_2025-2032.pem")).unwrap();
    let root_crl = Crl::parse(&read("intel/root_ca_crl_2024-03-20.der")).unwrap();
    let anchor = TrustAnchor::intel();
    let t2024 = at("2024-06-01T00:00:00Z");
    verify_chain(
        &old,
        &anchor,
        t2024,
        std::slice::from_ref(&root_crl),
        Revocation::Required,
    )
    .unwrap();
    let err = verify_chain(&new, &anchor, t2024, &[root_crl], Revocation::Required).unwrap_err();
    assert!(matches!(err, CertError::NotYetValid { .. }), "{err}");
}

#[test]
fn a_crl_issued_after_now_is_refused() {
    let chain = parse_pem_chain(&read("intel/tcb_signing_chain_2025-2032.pem")).unwrap();
    let crl = Crl::parse(&read("intel/root_ca_crl_2025-03-20.der")).unwrap();
    let err = verify_chain(
        &chain,
        &TrustAnchor::intel(),
        at("2025-03-19T00:00:00Z"),
        &[crl],
        Revocation::Required,
    )
    .unwrap_err();
    // The TCB signing cert is not yet valid either; check the CRL path on its own.
    assert!(matches!(
        err,
        CertError::NotYetValid { .. } | CertError::CrlNotYetValid { .. }
    ));
    let crl = Crl::parse(&read("intel/root_ca_crl_2025-03-20.der")).unwrap();
    assert!(matches!(
        crl.check_current(at("2025-03-19T00:00:00Z")),
        Err(CertError::CrlNotYetValid { .. })
    ));
    crl.check_current(at("2025-06-01T00:00:00Z")).unwrap();
    assert!(matches!(
        crl.check_current(at("2026-05-01T00:00:00Z")),
        Err(CertError::CrlExpired { .. })
    ));
}

#[test]
fn amd_chains_pin_to_the_right_ark() {
    let milan = parse_pem_chain(&read("snp/amd_milan_ask_ark.pem")).unwrap();
    let now = at("2025-01-01T00:00:00Z");
    verify_chain(&milan, &TrustAnchor::amd(), now, &[], Revocation::IfPresent).unwrap();
    let err = verify_chain(
        &milan,
        &TrustAnchor::intel(),
        now,
        &[],
        Revocation::IfPresent,
    )
    .unwrap_err();
    assert!(matches!(err, CertError::UntrustedRoot { .. }));
    // Genoa's ASK under Milan's ARK: the issuer names differ.
    let genoa = parse_pem_chain(&read("snp/amd_genoa_ask_ark.pem")).unwrap();
    let mixed = vec![genoa[0].clone(), milan[1].clone()];
    assert!(verify_chain(&mixed, &TrustAnchor::amd(), now, &[], Revocation::IfPresent).is_err());
}

#[test]
fn a_tampered_certificate_fails_its_signature() {
    let chain = parse_pem_chain(&read("snp/amd_milan_ask_ark.pem")).unwrap();
    let mut der = chain[0].der().to_vec();
    let last = der.len() - 300;
    der[last] ^= 1;
    if let Ok(cert) = Cert::from_der(&der) {
        assert!(cert.verify_signed_by(&chain[1]).is_err())
    }
}

#[test]
fn pem_chains_read_through_surrounding_text_and_refuse_broken_blocks() {
    let pem = String::from_utf8(read("intel/tcb_signing_chain_2025-2032.pem")).unwrap();
    let plain = parse_pem_chain(pem.as_bytes()).unwrap();
    assert_eq!(plain.len(), 2);
    // Explanatory text, CRLF line ends, a key block to skip, and the NUL that ends a quote's
    // PCK chain: the same two certificates.
    let key =
        "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQc=\n-----END PUBLIC KEY-----\n";
    let noisy = format!("Subject: Intel\n{}\n{key}\0", pem.replace('\n', "\r\n"));
    let read_back = parse_pem_chain(noisy.as_bytes()).unwrap();
    assert_eq!(
        read_back.iter().map(|c| c.der()).collect::<Vec<_>>(),
        plain.iter().map(|c| c.der()).collect::<Vec<_>>()
    );
    assert!(parse_pem_chain(b"no PEM here").unwrap().is_empty());

    let cut = &pem[..pem.find("-----END").unwrap()];
    let err = parse_pem_chain(cut.as_bytes()).unwrap_err();
    assert!(err.to_string().contains("no END line"), "{err}");
    let mislabelled = pem.replacen("-----END CERTIFICATE-----", "-----END CRL-----", 1);
    let err = parse_pem_chain(mislabelled.as_bytes()).unwrap_err();
    assert!(
        err.to_string().contains("no END line for CERTIFICATE"),
        "{err}"
    );
    let corrupt = pem.replacen("MII", "M*I", 1);
    let err = parse_pem_chain(corrupt.as_bytes()).unwrap_err();
    assert!(err.to_string().contains("base64"), "{err}");
}

#[test]
fn a_pem_crl_reads_as_its_der() {
    use base64::Engine as _;
    let der = read("intel/root_ca_crl_2024-03-20.der");
    let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let pem = format!(
        "-----BEGIN X509 CRL-----\n{}\n-----END X509 CRL-----\n",
        lines.join("\n")
    );
    assert_eq!(Crl::parse(pem.as_bytes()).unwrap().der(), der);
    let wrong = pem.replace("X509 CRL", "CERTIFICATE");
    let err = Crl::parse(wrong.as_bytes()).unwrap_err();
    assert!(err.to_string().contains("no X509 CRL block"), "{err}");
}

/// Every CRL among the vectors: the Root CA CRLs, each PCS collateral directory's PCK CRL, and
/// both CRLs of every combined collateral JSON.
fn every_crl() -> Vec<(String, Vec<u8>)> {
    let dir = crate::support::testdata();
    let mut out = Vec::new();
    for kind in ["intel", "sgx", "tdx"] {
        let mut paths: Vec<_> = std::fs::read_dir(dir.join(kind))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        paths.sort();
        for path in paths {
            let files: Vec<_> = if path.is_dir() {
                std::fs::read_dir(&path)
                    .unwrap()
                    .map(|e| e.unwrap().path())
                    .collect()
            } else {
                vec![path]
            };
            for file in files {
                let name = file.display().to_string();
                if name.ends_with("crl.der") || name.contains("_crl_") {
                    out.push((name, std::fs::read(&file).unwrap()));
                } else if name.ends_with("collateral.json") {
                    let json: serde_json::Value =
                        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
                    for key in ["pck_crl", "root_ca_crl"] {
                        if let Some(hex_text) = json[key].as_str() {
                            out.push((format!("{name}:{key}"), hex::decode(hex_text).unwrap()));
                        }
                    }
                }
            }
        }
    }
    out
}

#[test]
fn crls_read_as_x509_parser_reads_them() {
    use x509_parser::prelude::FromDer as _;
    let crls = every_crl();
    assert!(crls.len() >= 10, "only {} CRLs found", crls.len());
    let mut revoked_seen = 0;
    for (name, der) in crls {
        let ours = Crl::from_der(&der).unwrap_or_else(|e| panic!("{name}: {e}"));
        let (_, theirs) =
            x509_parser::revocation_list::CertificateRevocationList::from_der(&der).unwrap();
        let tbs = &theirs.tbs_cert_list;
        assert_eq!(ours.issuer(), tbs.issuer.to_string(), "{name}");
        assert_eq!(ours.this_update, tbs.this_update.to_datetime(), "{name}");
        assert_eq!(
            ours.next_update,
            tbs.next_update.map(|t| t.to_datetime()),
            "{name}"
        );
        let serials: Vec<&[u8]> = tbs
            .revoked_certificates
            .iter()
            .map(|r| r.raw_serial())
            .collect();
        assert_eq!(
            ours.revoked_serials().collect::<Vec<_>>(),
            serials,
            "{name}"
        );
        revoked_seen += serials.len();
    }
    assert!(
        revoked_seen > 50,
        "the vectors' CRLs list only {revoked_seen} serials"
    );
}

#[test]
fn malformed_crls_are_errors() {
    let der = read("intel/root_ca_crl_2024-03-20.der");
    for cut in [0, 1, 10, der.len() / 2, der.len() - 1] {
        assert!(Crl::from_der(&der[..cut]).is_err(), "cut at {cut}");
    }
    let trailing = [der.as_slice(), &[0]].concat();
    let err = Crl::from_der(&trailing).unwrap_err();
    assert!(err.to_string().contains("trailing"), "{err}");
    // The last TBSCertList element must be crlExtensions [0]: retagged, the CRL is refused.
    let last_element = {
        use x509_parser::der_parser::asn1_rs::{Any, FromDer as _};
        let (_, crl) = Any::from_der(&der).unwrap();
        let (_, tbs) = Any::from_der(crl.data).unwrap();
        let mut rest = tbs.data;
        let mut last = rest;
        while !rest.is_empty() {
            last = rest;
            rest = Any::from_der(rest).unwrap().0;
        }
        last.as_ptr() as usize - der.as_ptr() as usize
    };
    assert_eq!(
        der[last_element], 0xa0,
        "crlExtensions [0] at {last_element}"
    );
    let mut retagged = der.clone();
    retagged[last_element] = 0xa1;
    let err = Crl::from_der(&retagged).unwrap_err();
    assert!(err.to_string().contains("crlExtensions"), "{err}");
    // A flipped bit anywhere either fails to parse or leaves a CRL whose signature fails.
    let root = parse_pem_chain(&read("intel/tcb_signing_chain_2025-2032.pem")).unwrap();
    let root = root.last().unwrap();
    for offset in 0..der.len() {
        for bit in [0x01, 0x80] {
            let mut bad = der.clone();
            bad[offset] ^= bit;
            if let Ok(crl) = Crl::from_der(&bad) {
                assert!(crl.verify_signed_by(root).is_err(), "flip at {offset}");
            }
        }
    }
}

/// Every certificate among the vectors, DER: PEM chains, DER certificates, the chains of every
/// combined collateral JSON, and the PCK chains inside quotes.
fn every_certificate() -> Vec<(String, Vec<u8>)> {
    use x509_parser::pem::Pem;
    let dir = crate::support::testdata();
    let mut out = Vec::new();
    let add_pem = |name: &str, text: &[u8], out: &mut Vec<(String, Vec<u8>)>| {
        for (i, pem) in Pem::iter_from_buffer(text).enumerate() {
            let pem = pem.unwrap();
            if pem.label == "CERTIFICATE" {
                out.push((format!("{name}#{i}"), pem.contents));
            }
        }
    };
    let mut files = Vec::new();
    let mut dirs = vec![dir.clone()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    for file in files {
        let name = file.display().to_string();
        let bytes = std::fs::read(&file).unwrap();
        if name.ends_with(".pem") {
            add_pem(&name, &bytes, &mut out);
        } else if name.ends_with(".der") && !name.contains("crl") {
            out.push((name, bytes));
        } else if name.ends_with("collateral.json") {
            let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            for key in ["pck_crl_issuer_chain", "tcb_info_issuer_chain"] {
                if let Some(text) = json[key].as_str() {
                    add_pem(&format!("{name}:{key}"), text.as_bytes(), &mut out);
                }
            }
        } else if let Ok(quote) = attest::dcap::Quote::parse(&bytes) {
            add_pem(&name, &quote.certification.pck_chain_pem, &mut out);
        }
    }
    out
}

#[test]
fn certificates_read_as_x509_parser_reads_them() {
    use x509_parser::prelude::FromDer as _;
    let certs = every_certificate();
    assert!(certs.len() >= 40, "only {} certificates found", certs.len());
    let mut extensions_seen = 0;
    for (name, der) in certs {
        let ours = Cert::from_der(&der).unwrap_or_else(|e| panic!("{name}: {e}"));
        let (_, theirs) = x509_parser::certificate::X509Certificate::from_der(&der).unwrap();
        let tbs = &theirs.tbs_certificate;
        assert_eq!(ours.tbs(), tbs.as_ref(), "{name}");
        assert_eq!(ours.subject(), tbs.subject.to_string(), "{name}");
        assert_eq!(ours.issuer(), tbs.issuer.to_string(), "{name}");
        assert_eq!(ours.serial(), tbs.raw_serial(), "{name}");
        assert_eq!(
            ours.not_before,
            tbs.validity.not_before.to_datetime(),
            "{name}"
        );
        assert_eq!(
            ours.not_after,
            tbs.validity.not_after.to_datetime(),
            "{name}"
        );
        assert_eq!(ours.spki_der(), tbs.subject_pki.raw, "{name}");
        assert_eq!(
            ours.signature(),
            theirs.signature_value.data.as_ref(),
            "{name}"
        );
        let ca = tbs.basic_constraints().unwrap().is_some_and(|b| b.value.ca);
        assert_eq!(ours.is_ca, ca, "{name}");
        let extensions: Vec<_> = tbs
            .extensions()
            .iter()
            .map(|e| (e.oid.to_id_string(), e.critical, e.value.to_vec()))
            .collect();
        let our_extensions: Vec<_> = ours
            .extensions()
            .map(|e| (e.oid_text(), e.critical, e.value.to_vec()))
            .collect();
        assert_eq!(our_extensions, extensions, "{name}");
        extensions_seen += extensions.len();
    }
    assert!(extensions_seen > 100, "only {extensions_seen} extensions");
}

#[test]
fn malformed_certificates_are_errors() {
    let chain = read("intel/tcb_signing_chain_2025-2032.pem");
    let certs = parse_pem_chain(&chain).unwrap();
    let (leaf, root) = (certs[0].der(), &certs[1]);
    for cut in [0, 1, 10, leaf.len() / 2, leaf.len() - 1] {
        assert!(Cert::from_der(&leaf[..cut]).is_err(), "cut at {cut}");
    }
    let trailing = [leaf, &[0]].concat();
    let err = Cert::from_der(&trailing).unwrap_err();
    assert!(err.to_string().contains("trailing"), "{err}");
    // A flipped bit anywhere, in the leaf or in the root (a CA, whose basicConstraints holds a
    // BOOLEAN), either fails to parse or leaves a certificate whose signature fails.
    for good in [leaf, root.der()] {
        for offset in 0..good.len() {
            for bit in [0x01, 0x80] {
                let mut bad = good.to_vec();
                bad[offset] ^= bit;
                if let Ok(cert) = Cert::from_der(&bad) {
                    assert!(cert.verify_signed_by(root).is_err(), "flip at {offset}");
                }
            }
        }
    }
}

/// A CA and a leaf it issues, built with rcgen: the CA's keyUsage and the leaf's extensions are
/// the test's knobs. Also an (empty) CRL signed with the CA's key and name.
fn ca_and_leaf(
    ca_usages: Vec<rcgen::KeyUsagePurpose>,
    leaf_extension: Option<rcgen::CustomExtension>,
) -> (Vec<u8>, Vec<Cert>, Crl) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca_params = |usages| {
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "keyUsage test CA");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.key_usages = usages;
        ca
    };
    let ca_der = ca_params(ca_usages)
        .self_signed(&ca_key)
        .unwrap()
        .der()
        .to_vec();
    // The same key and name without keyUsage: rcgen signs whatever such an issuer is asked to.
    let issuer = rcgen::Issuer::new(ca_params(vec![]), ca_key);
    let mut leaf = rcgen::CertificateParams::new(vec!["leaf.test".to_string()]).unwrap();
    leaf.custom_extensions.extend(leaf_extension);
    let leaf_der = leaf
        .signed_by(&rcgen::KeyPair::generate().unwrap(), &issuer)
        .unwrap()
        .der()
        .to_vec();
    let now = time::OffsetDateTime::now_utc();
    let crl = rcgen::CertificateRevocationListParams {
        this_update: now - time::Duration::hours(1),
        next_update: now + time::Duration::days(1),
        crl_number: rcgen::SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: vec![],
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    }
    .signed_by(&issuer)
    .unwrap();
    let chain = [leaf_der, ca_der.clone()]
        .iter()
        .map(|der| Cert::from_der(der).unwrap())
        .collect();
    (ca_der, chain, Crl::from_der(crl.der()).unwrap())
}

#[test]
fn an_issuer_must_be_allowed_to_sign_and_critical_extensions_must_be_known() {
    use rcgen::KeyUsagePurpose::{CrlSign, DigitalSignature, KeyCertSign};
    let now = time::OffsetDateTime::now_utc();
    let verify = |(root, chain, crl): (Vec<u8>, Vec<Cert>, Crl)| {
        let anchor = TrustAnchor::from_root(&root).unwrap();
        verify_chain(&chain, &anchor, now, &[crl], Revocation::Required)
    };
    // A CA that may sign certificates and CRLs, or one without keyUsage at all, issues both.
    verify(ca_and_leaf(vec![KeyCertSign, CrlSign], None)).unwrap();
    verify(ca_and_leaf(vec![], None)).unwrap();
    // A CA key limited to other uses does not.
    let err = verify(ca_and_leaf(vec![DigitalSignature, CrlSign], None)).unwrap_err();
    assert!(
        matches!(
            &err,
            CertError::KeyUsage {
                what: "certificates",
                ..
            }
        ),
        "{err}"
    );
    let err = verify(ca_and_leaf(vec![KeyCertSign], None)).unwrap_err();
    assert!(
        matches!(&err, CertError::KeyUsage { what: "CRLs", .. }),
        "{err}"
    );
    // An extension the verifier does not process is fine unless it is critical.
    let extension = |critical| {
        let mut e =
            rcgen::CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 57264, 9], vec![5, 0]);
        e.set_criticality(critical);
        Some(e)
    };
    verify(ca_and_leaf(vec![KeyCertSign, CrlSign], extension(false))).unwrap();
    let err = verify(ca_and_leaf(vec![KeyCertSign, CrlSign], extension(true))).unwrap_err();
    assert!(
        matches!(&err, CertError::UnhandledCriticalExtension { oid, .. } if oid == "1.3.6.1.4.1.57264.9"),
        "{err}"
    );
}
