//! The protocol pieces against CoCo's own types and an independent JOSE implementation.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use kbs::jwe::{Curve, TeeKeyPair, encrypt};
use kbs::policy::{AttestationPolicy, EarStatus, ReferenceValues, Trust};
use kbs::token::{
    AdminTokenError, AdminTokenRules, Appraisal, TokenSigner, tee_pubkey, verify_admin,
};
use kbs::{KbsError, TeePubKey};
use serde_json::{Value, json};

#[test]
fn runtime_data_binding_matches_cocos_worked_example() {
    let key: TeePubKey = serde_json::from_value(json!({
        "kty": "EC", "crv": "P-256", "alg": "ECDH-ES+A256KW",
        "x": "gbvL8DZgM1yH2LxWl1SP3fA9Hn8ytQw0QpS4r5VZ0bU",
        "y": "n8XbGXo6B7m3m6O8hA3tQ0a9cJp2hV2oYl7Yd1c9dQk"
    }))
    .unwrap();
    let digest =
        kbs::binding::runtime_data_digest("q2i1pG3Vq0bS9cR0D3wQ6f0mJ2lJwVq3Q5t1dXg7Y1s=", &key, "")
            .unwrap();
    assert_eq!(
        hex::encode(digest),
        "f444f9108fcf2e5d36305b93c71cc9592fcef8e61be95450e519e3e46ab8f4ee19edc5968fd6a0e8c00c88e16f0b324c"
    );
    assert_eq!(
        STANDARD.encode(digest),
        "9ET5EI/PLl02MFuTxxzJWS/O+OYb6VRQ5Rnj5Gq49O4Z7cWWj9ag6MAMiOFvCzJM"
    );
    let padded = kbs::binding::report_data(&digest);
    assert_eq!(
        (&padded[..48], &padded[48..]),
        (&digest[..], &[0u8; 16][..])
    );
}

fn keys() -> Vec<TeeKeyPair> {
    vec![
        TeeKeyPair::generate_ec(Curve::P256).unwrap(),
        TeeKeyPair::generate_ec(Curve::P521).unwrap(),
        TeeKeyPair::generate_rsa().unwrap(),
    ]
}

/// Decrypt with josekit (OpenSSL): an implementation no one here wrote.
fn josekit_decrypt(key: &TeeKeyPair, jwe_json: &str) -> Vec<u8> {
    let pkcs8 = key.private_pkcs8().unwrap();
    let decrypter: Box<dyn josekit::jwe::JweDecrypter> = match key {
        TeeKeyPair::Ec { .. } => Box::new(
            josekit::jwe::ECDH_ES_A256KW
                .decrypter_from_der(&*pkcs8)
                .unwrap(),
        ),
        TeeKeyPair::Rsa { .. } => Box::new(
            josekit::jwe::RSA_OAEP_256
                .decrypter_from_der(&*pkcs8)
                .unwrap(),
        ),
    };
    let (payload, _) = josekit::jwe::deserialize_json(jwe_json, &*decrypter).unwrap();
    payload
}

#[test]
fn resources_decrypt_with_our_client_and_an_independent_jose_library() {
    let secret = b"image key: 0123456789abcdef";
    for key in keys() {
        let response = encrypt(secret, &key.public().unwrap()).unwrap();
        let wire = serde_json::to_string(&response).unwrap();
        assert_eq!(&*key.decrypt(&response).unwrap(), secret, "{key:?}");
        assert_eq!(josekit_decrypt(&key, &wire), secret, "{key:?}");
        // What a CoCo client parses back is byte-for-byte what was sealed.
        let parsed: kbs::Response = serde_json::from_str(&wire).unwrap();
        assert_eq!(&*key.decrypt(&parsed).unwrap(), secret);
    }
}

#[test]
fn the_protected_header_is_compact_with_cocos_key_order() {
    let key = TeeKeyPair::generate_ec(Curve::P256).unwrap();
    let wire: Value = serde_json::to_value(encrypt(b"x", &key.public().unwrap()).unwrap()).unwrap();
    let header = String::from_utf8(
        URL_SAFE_NO_PAD
            .decode(wire["protected"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert!(
        header.starts_with(
            r#"{"alg":"ECDH-ES+A256KW","enc":"A256GCM","epk":{"crv":"P-256","kty":"EC","x":""#
        ),
        "{header}"
    );
    assert!(!header.contains(' '), "{header}");
    assert!(wire.get("aad").is_none());
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(wire["iv"].as_str().unwrap())
            .unwrap()
            .len(),
        12
    );
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(wire["tag"].as_str().unwrap())
            .unwrap()
            .len(),
        16
    );
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(wire["encrypted_key"].as_str().unwrap())
            .unwrap()
            .len(),
        40
    );
    let rsa = TeeKeyPair::generate_rsa().unwrap();
    let wire: Value = serde_json::to_value(encrypt(b"x", &rsa.public().unwrap()).unwrap()).unwrap();
    let header = URL_SAFE_NO_PAD
        .decode(wire["protected"].as_str().unwrap())
        .unwrap();
    assert_eq!(header, br#"{"alg":"RSA-OAEP-256","enc":"A256GCM"}"#);
}

#[test]
fn a_tampered_response_or_another_key_does_not_decrypt() {
    let key = TeeKeyPair::generate_ec(Curve::P256).unwrap();
    let response = encrypt(b"secret", &key.public().unwrap()).unwrap();
    let mut flipped = response.clone();
    flipped.ciphertext[0] ^= 1;
    assert!(key.decrypt(&flipped).is_err());
    let mut flipped = response.clone();
    flipped.tag[0] ^= 1;
    assert!(key.decrypt(&flipped).is_err());
    let mut flipped = response.clone();
    flipped.encrypted_key[0] ^= 1;
    assert!(key.decrypt(&flipped).is_err());
    let mut reheadered = response.clone();
    reheadered
        .protected
        .other_fields
        .insert("kid".into(), json!("x"));
    assert!(
        key.decrypt(&reheadered).is_err(),
        "the header is authenticated"
    );
    let other = TeeKeyPair::generate_ec(Curve::P256).unwrap();
    assert!(other.decrypt(&response).is_err());
    assert!(matches!(
        encrypt(
            b"x",
            &serde_json::from_value(
                json!({"kty":"EC","crv":"P-384","alg":"ECDH-ES+A256KW","x":"AA","y":"AA"})
            )
            .unwrap()
        ),
        Err(KbsError::TeeKey(_))
    ));
}

fn new_signer() -> TokenSigner {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    TokenSigner::new(&key.serialize_der(), 300).unwrap()
}

#[test]
fn tokens_carry_the_tee_key_and_expire() {
    let signer = new_signer();
    let key = TeeKeyPair::generate_ec(Curve::P256)
        .unwrap()
        .public()
        .unwrap();
    let appraisal = Appraisal {
        tee: "sgx".into(),
        tee_claims: json!({"mr_enclave": "00"}),
        package: "app".into(),
        package_digest: "00".into(),
        runtime_data: json!({"nonce": "n", "tee-pubkey": key}),
        init_data: None,
        simulated: true,
        trust: Trust::manifest_affirmed(),
        policy_id: "cloister-manifest".into(),
    };
    let now = 1_800_000_000;
    let (token, issued) = signer.issue(&appraisal, now).unwrap();
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["jwk"]["crv"], "P-256");
    let claims = signer.verify(&token, now + 10).unwrap();
    assert_eq!(claims, issued);
    assert_eq!(claims["submods"]["cpu0"]["ear.status"], "affirming");
    let vector = &claims["submods"]["cpu0"]["ear.trustworthiness-vector"];
    assert_eq!(vector["executables"], 2);
    assert_eq!(vector["sourced-data"], 0);
    assert_eq!(claims["eat_profile"], kbs::token::EAR_PROFILE);
    assert_eq!(
        serde_json::to_value(tee_pubkey(&claims).unwrap()).unwrap(),
        serde_json::to_value(&key).unwrap()
    );
    assert!(matches!(
        signer.verify(&token, now + 301),
        Err(KbsError::Token(_))
    ));
    assert!(
        new_signer().verify(&token, now).is_err(),
        "another broker token"
    );
    let mut forged = token.clone();
    forged.insert(forged.len() - 3, 'A');
    assert!(signer.verify(&forged, now).is_err());
}

#[test]
fn admin_tokens_are_checked_against_the_users_key() {
    let user = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let now = 1_800_000_000u64;
    let rules = AdminTokenRules {
        now,
        max_lifetime_secs: 3600,
    };
    let sign = |claims: Value| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA),
            &claims,
            &jsonwebtoken::EncodingKey::from_ed_der(&user.serialize_der()),
        )
        .unwrap()
    };
    let pem = user.public_key_pem();
    let verify = |claims: Value| verify_admin(&sign(claims), &pem, &rules);
    let accepted = verify(json!({"sub": "admin", "exp": now + 60})).unwrap();
    assert_eq!(accepted["sub"], "admin");
    verify(json!({"exp": now + 60, "iat": now - 10, "nbf": now - 10, "aud": "cloister"})).unwrap();
    verify(json!({"exp": now + 60, "aud": ["other", "cloister"]})).unwrap();
    // Issued an hour ago for two: its lifetime, not what is left of it, counts.
    let refusals = [
        (json!({"exp": now - 1}), "expired"),
        (json!({"sub": "admin"}), "no exp"),
        (
            json!({"exp": now + 60, "nbf": now + 600}),
            "not valid before",
        ),
        (json!({"exp": now + 7200}), "longer than"),
        (json!({"exp": now + 3600, "iat": now - 3600}), "longer than"),
        (json!({"exp": now + 60, "iat": now + 600}), "in the future"),
        (json!({"exp": now + 60, "aud": "trustee"}), "audience"),
        (json!({"exp": "soon"}), "malformed exp"),
    ];
    for (claims, why) in refusals {
        match verify(claims.clone()) {
            Err(e @ AdminTokenError::Claims(_)) => assert!(e.to_string().contains(why), "{e}"),
            other => panic!("{claims}: {other:?}"),
        }
    }
    let stranger = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let signed = sign(json!({"exp": now + 60}));
    assert!(matches!(
        verify_admin(&signed, &stranger.public_key_pem(), &rules),
        Err(AdminTokenError::Signature(_))
    ));
    assert!(matches!(
        verify_admin("not.a.jwt", &pem, &rules),
        Err(AdminTokenError::Signature(_))
    ));
}

#[test]
fn resource_policies_decide_with_cocos_input_shape() {
    let claims =
        json!({"submods": {"cpu0": {"ear.veraison.annotated-evidence": {"sample": {"svn": "1"}}}}});
    let allow_all =
        kbs::policy::ResourcePolicy::new("package policy\ndefault allow = true\n").unwrap();
    let none = ReferenceValues::default();
    assert!(allow_all.allows(&claims, "default/key/1", &none).unwrap());
    // CoCo's default: everything except the sample attester.
    let default = kbs::policy::ResourcePolicy::new(
        "package policy\nimport rego.v1\ndefault allow = false\nallow if {\n  not input.submods.cpu0[\"ear.veraison.annotated-evidence\"].sample\n}\n",
    )
    .unwrap();
    assert!(!default.allows(&claims, "default/key/1", &none).unwrap());
    assert!(
        default
            .allows(
                &json!({"submods": {"cpu0": {"ear.veraison.annotated-evidence": {"tdx": {}}}}}),
                "a/b/c",
                &none
            )
            .unwrap()
    );
    let by_path = kbs::policy::ResourcePolicy::new(
        "package policy\nimport rego.v1\ndefault allow = false\nallow if { data[\"resource-path\"][0] == \"public\" }\n",
    )
    .unwrap();
    assert!(by_path.allows(&claims, "public/key/1", &none).unwrap());
    assert!(!by_path.allows(&claims, "secret/key/1", &none).unwrap());
    assert!(kbs::policy::ResourcePolicy::new("package policy\nallow if {").is_err());

    // CoCo's reference-value builtin: the registered list, or null when nothing is registered.
    let by_reference = kbs::policy::ResourcePolicy::new(
        "package policy\nimport rego.v1\ndefault allow = false\nallow if { input.submods.cpu0[\"ear.veraison.annotated-evidence\"].sample.svn in query_reference_value(\"svn\") }\n",
    )
    .unwrap();
    let registered: ReferenceValues =
        std::sync::Arc::new(json!({"svn": ["1", "2"]}).as_object().unwrap().clone());
    assert!(by_reference.allows(&claims, "a/b/c", &registered).unwrap());
    let other: ReferenceValues =
        std::sync::Arc::new(json!({"svn": ["3"]}).as_object().unwrap().clone());
    assert!(!by_reference.allows(&claims, "a/b/c", &other).unwrap());
    assert!(!by_reference.allows(&claims, "a/b/c", &none).unwrap());
}

/// A `default_cpu`-style policy in CoCo's style: defaults that contraindicate, raised to
/// affirming when the evidence matches registered reference values.
const ATTESTATION_POLICY: &str = r#"package policy
import rego.v1
default executables := 33
default hardware := 97
default configuration := 36
executables := 3 if { input.sample.launch_digest in query_reference_value("launch_digest") }
hardware := 2 if { input.sample.svn in query_reference_value("svn") }
configuration := 2 if { input.sample.debug == false }
"#;

#[test]
fn attestation_policies_set_the_trust_vector_and_its_tier() {
    let policy = AttestationPolicy::new(ATTESTATION_POLICY).unwrap();
    let input = json!({"sample": {"svn": "1", "launch_digest": "abcde", "debug": false}});
    let refs =
        |v: Value| -> ReferenceValues { std::sync::Arc::new(v.as_object().unwrap().clone()) };

    let matched = policy
        .appraise(
            &input,
            &refs(json!({"svn": ["1"], "launch_digest": ["abcde"]})),
        )
        .unwrap();
    assert_eq!(matched.status, EarStatus::Affirming);
    assert_eq!(matched.vector["executables"], 3);
    assert_eq!(matched.vector["hardware"], 2);
    assert_eq!(matched.vector["instance-identity"], 0);

    let unknown_hardware = policy
        .appraise(&input, &refs(json!({"launch_digest": ["abcde"]})))
        .unwrap();
    assert_eq!(unknown_hardware.status, EarStatus::Contraindicated);
    assert_eq!(unknown_hardware.vector["hardware"], 97);

    let unknown_binary = policy
        .appraise(&input, &refs(json!({"svn": ["1"]})))
        .unwrap();
    assert_eq!(unknown_binary.status, EarStatus::Warning);

    // One `trust_claims` object works as well as one rule per claim.
    let object = AttestationPolicy::new(
        "package policy\ntrust_claims := {\"hardware\": 2, \"file-system\": 40}\n",
    )
    .unwrap();
    let trust = object.appraise(&input, &refs(json!({}))).unwrap();
    assert_eq!(trust.vector["file-system"], 40);
    assert_eq!(trust.status, EarStatus::Warning);

    // A policy that sets nothing, or sets something that is not a number, is an error.
    let silent = AttestationPolicy::new("package policy\nallow := true\n").unwrap();
    assert!(matches!(
        silent.appraise(&input, &refs(json!({}))),
        Err(KbsError::Policy(_))
    ));
    let wrong = AttestationPolicy::new("package policy\nhardware := \"yes\"\n").unwrap();
    assert!(matches!(
        wrong.appraise(&input, &refs(json!({}))),
        Err(KbsError::Policy(_))
    ));
}

#[test]
fn attestation_policy_extensions_reach_the_token() {
    let policy = AttestationPolicy::new(
        r#"package policy
hardware := 2
extensions := [
    {"name": "workload-region", "key": 1001, "value": "eu-west"},
    {"name": "svn-floor", "key": 1002, "value": {"tcb": input.sample.svn}},
]
"#,
    )
    .unwrap();
    let none: ReferenceValues = std::sync::Arc::new(serde_json::Map::new());
    let input = json!({"sample": {"svn": "7"}});
    let trust = policy.appraise(&input, &none).unwrap();
    let signer = new_signer();
    let appraisal = Appraisal {
        tee: "sample".into(),
        tee_claims: input["sample"].clone(),
        package: "pod".into(),
        package_digest: "00".into(),
        runtime_data: json!({"nonce": "n"}),
        init_data: None,
        simulated: true,
        trust,
        policy_id: "default_cpu".into(),
    };
    let (token, _) = signer.issue(&appraisal, 1_800_000_000).unwrap();
    let claims = signer.verify(&token, 1_800_000_001).unwrap();
    let cpu0 = &claims["submods"]["cpu0"];
    assert_eq!(cpu0["workload-region"], "eu-west");
    assert_eq!(cpu0["svn-floor"], json!({"tcb": "7"}));
    assert_eq!(cpu0["ear.status"], "affirming");

    // Malformed lists, reused names or keys, and standard claims are policy errors.
    for extensions in [
        r#"{"name": "a", "key": 1, "value": 1}"#,
        r#"[{"name": "a", "value": 1}]"#,
        r#"[{"name": "a", "key": 1, "value": 1}, {"name": "b", "key": 1, "value": 2}]"#,
        r#"[{"name": "a", "key": 1, "value": 1}, {"name": "a", "key": 2, "value": 2}]"#,
        r#"[{"name": "ear.status", "key": 1, "value": "affirming"}]"#,
    ] {
        let bad = AttestationPolicy::new(&format!(
            "package policy\nhardware := 2\nextensions := {extensions}\n"
        ))
        .unwrap();
        assert!(
            matches!(bad.appraise(&input, &none), Err(KbsError::Policy(_))),
            "{extensions}"
        );
    }
}

#[test]
fn init_data_digests_the_exact_toml_and_binds_padded() {
    let body = "version = \"0.1.0\"\nalgorithm = \"sha384\"\n[data]\n\"aa.toml\" = \"x\"\n";
    let parsed = kbs::initdata::parse("toml", body).unwrap();
    assert_eq!(parsed.digest.len(), 48);
    assert_eq!(parsed.claims["aa.toml"], "x");
    assert!(kbs::initdata::binds(&parsed.digest, &parsed.digest));
    let mut host_data = [0u8; 32];
    host_data.copy_from_slice(&parsed.digest[..32]);
    assert!(
        kbs::initdata::binds(&host_data, &parsed.digest),
        "truncated to HOST_DATA"
    );
    let mut config_id = [0u8; 64];
    config_id[..48].copy_from_slice(&parsed.digest);
    assert!(
        kbs::initdata::binds(&config_id, &parsed.digest),
        "padded to CONFIGID"
    );
    assert!(!kbs::initdata::binds(&[0u8; 48], &parsed.digest));
    assert!(kbs::initdata::parse("json", body).is_err());
    assert!(kbs::initdata::parse("toml", "algorithm = \"md5\"").is_err());
}

#[test]
fn errors_use_cocos_shape_and_statuses() {
    let e = kbs::check_version("0.1.1").unwrap_err();
    assert_eq!(e.status(), 401);
    assert_eq!(
        e.to_string(),
        "KBS Client Protocol Version Mismatch: expect =0.4.0 while the request is 0.1.1"
    );
    let info =
        serde_json::to_value(KbsError::ResourceNotFound("a/b/c".into()).information()).unwrap();
    assert_eq!(
        info["type"],
        "https://github.com/confidential-containers/kbs/errors/ResourceNotFound"
    );
    assert_eq!(KbsError::ResourceNotFound("x".into()).status(), 404);
    assert_eq!(KbsError::PolicyDeny("x".into()).status(), 401);
    assert!(kbs::check_version("0.4.0").is_ok());
}

#[test]
fn sessions_expire() {
    use kbs::session::{Sessions, State};
    let sessions = Sessions::new(std::time::Duration::from_millis(30), 1024);
    sessions.put(
        "a",
        State::Authed {
            tee: kbs::Tee::Sample,
            nonce: "n".into(),
        },
    );
    assert!(matches!(sessions.get("a"), Some(State::Authed { .. })));
    assert!(sessions.get("b").is_none());
    std::thread::sleep(std::time::Duration::from_millis(60));
    assert!(
        sessions.get("a").is_none(),
        "an expired session is gone: authenticate again"
    );
}

/// A resource policy whose `allow` rule holds `expression`.
fn policy_allowing(expression: &str) -> String {
    format!("package policy\nimport rego.v1\ndefault allow = false\nallow if {{ {expression} }}\n")
}

#[test]
fn pathological_policies_are_refused_before_the_parser_sees_them() {
    let nested = |open: &str, inner: &str, close: &str, depth: usize| {
        format!("{}{inner}{}", open.repeat(depth), close.repeat(depth))
    };
    let shapes = [
        (
            "unary chain",
            format!("x := {}1", "- ".repeat(600)),
            "minus signs",
        ),
        ("unary run", "x := ---1".to_string(), "minus signs"),
        (
            "nested arrays",
            format!("x := {}", nested("[", "1", "]", 30)),
            "nests",
        ),
        (
            "nested objects",
            format!("x := {}", nested("{\"a\": ", "1", "}", 30)),
            "nests",
        ),
        (
            "nested sets",
            format!("x := {}", nested("{", "1", "}", 30)),
            "nests",
        ),
        (
            "nested comprehensions",
            format!("x := {}", nested("[1 | ", "true", "]", 30)),
            "nests",
        ),
        (
            "nested calls",
            format!("x := {}", nested("abs(", "1", ")", 30)),
            "nests",
        ),
    ];
    for (what, expression, why) in shapes {
        match kbs::policy::ResourcePolicy::new(&policy_allowing(&expression)) {
            Err(e @ KbsError::InvalidPolicy(_)) => {
                assert!(e.to_string().contains(why), "{what}: {e}");
                assert_eq!(e.status(), 400);
            }
            other => panic!("{what}: {other:?}"),
        }
    }
    let oversized = format!(
        "package policy\n# {}\nallow := true\n",
        "x".repeat(40 << 10)
    );
    assert!(matches!(
        kbs::policy::ResourcePolicy::new(&oversized),
        Err(KbsError::InvalidPolicy(_))
    ));
    // Brackets, minus signs and hashes inside strings and comments are text, and what real
    // policies do stays allowed.
    let allowed = [
        r#"x := "[[[[[[[[[[ ---- \" ]]""#,
        "x := `{{{{{{{{ ---- #`",
        "x := 1 - -1 # ((((((((((\n",
        r#"input.submods.cpu0["ear.veraison.annotated-evidence"].sample.svn in {"1", "2"}"#,
        "x := [y | some y in [1, 2, 3]; y > 1]",
    ];
    for expression in allowed {
        kbs::policy::ResourcePolicy::new(&policy_allowing(expression))
            .unwrap_or_else(|e| panic!("{expression}: {e}"));
    }
}

#[test]
fn evaluation_is_bounded_in_time_and_runs_deep_on_a_deep_stack() {
    let claims = json!({"submods": {"cpu0": {}}});
    let none = ReferenceValues::default();
    // Thirteen million steps: stopped by the engine's time limit, not run to the end.
    let xs = (0..60)
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let slow = kbs::policy::ResourcePolicy::new(&format!(
        "package policy\nimport rego.v1\nxs := [{xs}]\nallow if count([1 | some a in xs; \
         some b in xs; some c in xs; some d in xs]) > 0\n"
    ))
    .unwrap();
    let started = std::time::Instant::now();
    assert!(slow.allows(&claims, "a/b/c", &none).is_err());
    assert!(started.elapsed() < kbs::policy::EVALUATION_LIMIT * 5);
    // A chain of rules within the size bound recurses far deeper than 2 MiB of stack allows;
    // on a thread with the documented stack it evaluates.
    let mut chain = String::from("package policy\nimport rego.v1\nallow if r0\n");
    for n in 0..2000 {
        chain.push_str(&format!("r{n} if r{}\n", n + 1));
    }
    chain.push_str("r2000 := true\n");
    assert!(chain.len() < kbs::policy::MAX_POLICY_BYTES);
    let allowed = std::thread::Builder::new()
        .stack_size(kbs::policy::STACK_BYTES)
        .spawn(move || {
            let policy = kbs::policy::ResourcePolicy::new(&chain).unwrap();
            policy.allows(&claims, "a/b/c", &none).unwrap()
        })
        .unwrap()
        .join()
        .unwrap();
    assert!(allowed);
}

/// Run `f` on a thread with the stack policies are compiled and evaluated on.
fn on_policy_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(kbs::policy::STACK_BYTES)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap()
}

#[test]
fn recursive_functions_and_allocating_builtins_are_refused_at_compile_time() {
    on_policy_stack(refuses_recursion_and_allocating_builtins);
}

fn refuses_recursion_and_allocating_builtins() {
    let refused = [
        (
            "direct",
            "package policy\nf(x) := f(x)\nallow if f(1)\n",
            "function f calls itself",
        ),
        (
            "mutual",
            "package policy\nf(x) := g(x)\ng(x) := y if { y := f(x) }\nallow if f(1)\n",
            "through",
        ),
        (
            "through data",
            "package policy\nf(x) := data.policy.f(x)\n",
            "function f calls itself",
        ),
        (
            "range",
            "package policy\nallow if count(numbers.range(1, 10)) > 0\n",
            "numbers.range",
        ),
        (
            "range step",
            "package policy\nallow if count(numbers.range_step (1, 10, 2)) > 0\n",
            "numbers.range",
        ),
        (
            "operator chain",
            &format!("package policy\nx := {}1\n", "1 + ".repeat(200)),
            "too deeply nested",
        ),
    ];
    for (what, policy, why) in refused {
        for compiled in [
            kbs::policy::ResourcePolicy::new(policy).map(|_| ()),
            AttestationPolicy::new(policy).map(|_| ()),
        ] {
            match compiled {
                Err(e @ KbsError::InvalidPolicy(_)) => {
                    assert!(e.to_string().contains(why), "{what}: {e}")
                }
                other => panic!("{what}: {other:?}"),
            }
        }
    }
    // Functions calling other functions, and the words in strings, are fine.
    kbs::policy::ResourcePolicy::new(
        "package policy\nf(x) := g(x) + 1\ng(x) := x * 2\nmsg := \"numbers.range(1, 2)\"\nallow if f(1) == 3\n",
    )
    .unwrap();
}

#[test]
fn an_attestation_policy_doubling_a_value_is_refused_not_serialized() {
    let mut policy = String::from("package policy\nhardware := 2\ntrust_claims := r0\n");
    for n in 0..30 {
        policy.push_str(&format!("r{n} := [r{}, r{}]\n", n + 1, n + 1));
    }
    policy.push_str("r30 := 1\n");
    let policy = AttestationPolicy::new(&policy).unwrap();
    let started = std::time::Instant::now();
    let refused = policy.appraise(&json!({"sample": {}}), &ReferenceValues::default());
    assert!(
        matches!(refused, Err(KbsError::Policy(ref why)) if why.contains("larger than")),
        "{refused:?}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}
