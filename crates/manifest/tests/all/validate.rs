use manifest::Manifest;

use crate::{ALICE_PEM, json_str};

const A32: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

fn errors_of(doc: &str) -> Vec<(String, String)> {
    let m = Manifest::parse(doc.as_bytes()).unwrap().manifest;
    let errors = m.validate().unwrap_err();
    // Display lists one error per line.
    assert_eq!(errors.to_string().lines().count(), errors.0.len());
    errors.0.into_iter().map(|e| (e.path, e.reason)).collect()
}

#[test]
fn every_error_is_reported_at_its_path() {
    let doc = format!(
        r#"{{
  "packages": {{
    "nothing": {{ }},
    "both": {{ "unique_id": "{A32}", "signer_id": "{A32}" }},
    "debugging": {{ "debug": true }},
    "td": {{ "tee": "tdx", "unique_id": "{A32}" }},
    "sim": {{ "tee": "simulation" }}
  }},
  "workloads": {{
    "a": {{
      "package": "missing",
      "tls": ["none"],
      "parameters": {{
        "files": {{ "/x": "{{{{ raw .Secrets.ghost }}}}", "/ok": "{{{{ hex .Secrets.k }}}}" }},
        "env": {{ "K": "{{{{ string .Secrets.e }}}}", "N": {{ "data": "00", "encoding": "hex" }} }}
      }}
    }}
  }},
  "secrets": {{
    "k": {{ "type": "symmetric-key", "size": 12, "valid_for": 3 }},
    "e": {{ "type": "cert-ecdsa", "size": 224 }},
    "r": {{ "type": "cert-rsa", "size": 1024 }},
    "ed": {{ "type": "cert-ed25519", "size": 256 }}
  }},
  "users": {{
    "u": {{ "certificate": "garbage", "roles": ["nope"] }},
    "v": {{ "certificate": {alice}, "roles": ["r"] }},
    "w": {{ "certificate": {alice}, "roles": [] }}
  }},
  "roles": {{
    "r": {{ "resource_type": "Manifest", "resource_names": ["x"], "actions": ["UpdateManifest"] }},
    "s": {{ "resource_type": "Secrets", "resource_names": ["k"], "actions": ["WriteSecret", "Fly"] }}
  }},
  "tls": {{ "t": {{ "incoming": [{{ "port": "1", "disable_client_auth": true }}] }} }},
  "recovery_keys": {{ "bad": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n" }},
  "config": {{ "recovery_threshold": 1, "update_threshold": 5 }}
}}"#,
        alice = json_str(ALICE_PEM)
    );
    let errors = errors_of(&doc);
    let mut paths: Vec<&str> = errors.iter().map(|(p, _)| p.as_str()).collect();
    paths.sort_unstable();
    let mut expected = vec![
        "$.packages.nothing",
        "$.packages.both",
        "$.packages.td.unique_id",
        "$.packages.td.mr_td",
        "$.workloads.a.package",
        "$.workloads.a.tls[0]",
        "$.secrets.k.size",
        "$.secrets.k.valid_for",
        "$.secrets.e.size",
        "$.secrets.r.size",
        "$.secrets.ed.size",
        "$.users.u.certificate",
        "$.users.u.roles[0]",
        "$.users.w.certificate",
        "$.roles.r.resource_names[0]",
        "$.roles.s.actions[1]",
        "$.roles.s.resource_names[0]",
        "$.tls.t.incoming[0]",
        "$.recovery_keys.bad",
        "$.config.recovery_threshold",
        "$.config.update_threshold",
        r#"$.workloads.a.parameters.files["/x"]"#,
        "$.workloads.a.parameters.env.K",
        // The dry run renders every env value: N holds a NUL.
        "$.workloads.a.parameters.env.N",
    ];
    expected.sort_unstable();
    assert_eq!(paths, expected, "{errors:#?}");

    let reason = |path: &str| {
        errors
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, r)| r.as_str())
            .unwrap()
    };
    assert!(reason("$.secrets.e.size").contains("not supported"));
    assert!(reason(r#"$.workloads.a.parameters.files["/x"]"#).contains(".Secrets.ghost"));
    assert!(
        reason("$.workloads.a.parameters.env.K").contains("`string` works only on plain secrets")
    );
    assert!(reason("$.users.w.certificate").contains("\"v\""));
}

#[test]
fn empty_manifest_needs_a_package_and_a_workload() {
    let errors = errors_of("{}");
    let paths: Vec<&str> = errors.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths, ["$.packages", "$.workloads"]);
}

#[test]
fn tls_cert_rules_follow_marblerun() {
    let doc = format!(
        r#"{{ "packages": {{ "p": {{ "unique_id": "{A32}" }} }},
             "workloads": {{ "w": {{ "package": "p", "tls": ["t"] }} }},
             "secrets": {{ "c": {{ "type": "cert-ed25519" }}, "k": {{ "type": "symmetric-key", "size": 128 }} }},
             "tls": {{ "t": {{
                "outgoing": [{{ "addr": "x" }}],
                "incoming": [{{ "port": "1", "cert": "c" }}, {{ "port": "2", "cert": "k", "disable_client_auth": true }},
                             {{ "port": "3", "cert": "c", "disable_client_auth": true }}] }} }} }}"#
    );
    let errors = errors_of(&doc);
    let paths: Vec<&str> = errors.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "$.tls.t.outgoing[0]",
            "$.tls.t.incoming[0].disable_client_auth",
            "$.tls.t.incoming[1].cert"
        ]
    );
}

#[test]
fn sgx_identity_rules() {
    let ok = |pkg: &str| {
        let doc =
            format!(r#"{{"packages": {{"p": {pkg}}}, "workloads": {{"w": {{"package": "p"}}}}}}"#);
        Manifest::parse(doc.as_bytes())
            .unwrap()
            .manifest
            .validate()
            .is_ok()
    };
    assert!(ok(&format!(r#"{{"unique_id": "{A32}"}}"#)));
    assert!(ok(&format!(
        r#"{{"signer_id": "{A32}", "product_id": 1, "security_version": 0}}"#
    )));
    assert!(!ok(&format!(
        r#"{{"signer_id": "{A32}", "product_id": 1}}"#
    )));
    assert!(ok(&format!(r#"{{"signer_id": "{A32}", "debug": true}}"#)));
    assert!(ok(r#"{"tee": "simulation"}"#));
    assert!(!ok(r#"{"tee": "snp"}"#));
}

#[test]
fn key_broker_resources_are_checked() {
    let doc = format!(
        r#"{{
  "packages": {{ "pod": {{ "tee": "sample" }}, "td": {{ "tee": "tdx", "mr_td": "{A48}" }} }},
  "secrets": {{
    "image_key": {{ "type": "symmetric-key", "size": 256, "shared": true }},
    "uploaded": {{ "type": "plain", "user_defined": true }},
    "mine": {{ "type": "symmetric-key", "size": 128 }}
  }},
  "users": {{ "admin": {{ "certificate": {alice}, "public_key": "not a key", "roles": ["broker"] }} }},
  "roles": {{
    "broker": {{ "resource_type": "Kbs", "actions": ["WriteResource", "SetPolicy"] }},
    "wrong": {{ "resource_type": "Kbs", "resource_names": ["x"], "actions": ["ReadSecret"] }}
  }},
  "kbs": {{
    "resources": {{
      "default/key/1": {{ "secret": "image_key", "packages": ["pod", "td"] }},
      "default/key/2": {{ "secret": "uploaded" }},
      "default/key/3": {{ "secret": "mine" }},
      "default/key/4": {{ "secret": "ghost", "packages": ["nope"] }},
      "bad path": {{ "secret": "image_key" }}
    }}
  }}
}}"#,
        alice = json_str(ALICE_PEM),
        A48 = "ab".repeat(48),
    );
    let errors = errors_of(&doc);
    let paths: Vec<&str> = errors.iter().map(|(p, _)| p.as_str()).collect();
    for expected in [
        "$.users.admin.public_key",
        "$.roles.wrong.actions[0]",
        "$.roles.wrong.resource_names[0]",
        r#"$.kbs.resources["default/key/3"].secret"#,
        r#"$.kbs.resources["default/key/4"].secret"#,
        r#"$.kbs.resources["default/key/4"].packages[0]"#,
        r#"$.kbs.resources["bad path"]"#,
    ] {
        assert!(
            paths.contains(&expected),
            "{expected} missing from {errors:#?}"
        );
    }
    for valid in [
        r#"$.kbs.resources["default/key/1"].secret"#,
        r#"$.kbs.resources["default/key/2"].secret"#,
        "$.workloads",
        "$.packages.pod",
    ] {
        assert!(!paths.contains(&valid), "{valid} flagged: {errors:#?}");
    }
    assert!(manifest::is_kbs_path("default/key/1.bin"));
    assert!(!manifest::is_kbs_path("default/.key/1"));
    assert!(!manifest::is_kbs_path("a/b"));
}

#[test]
fn a_wasm_section_is_checked_field_by_field() {
    let doc = format!(
        r#"{{
  "packages": {{ "p": {{ "unique_id": "{A32}" }} }},
  "workloads": {{
    "good": {{
      "package": "p",
      "Wasm": {{ "Digest": "sha256:{A32}", "dirs": {{ "/data": {{ "host": "/srv" }}, "/tmp": {{}} }},
                 "connect": ["10.0.0.1:5432", "[::1]:80"], "limits": {{ "memory_mib": 64 }} }}
    }},
    "bad": {{
      "package": "p",
      "wasm": {{
        "digest": "abc",
        "reference": "Registry/UPPER:case",
        "dirs": {{ "data": {{ "host": "/srv/../etc" }} }},
        "connect": ["db.example:5432"],
        "listen": ["8080"],
        "limits": {{ "memory_mib": 5000, "instances": 0 }}
      }}
    }}
  }}
}}"#
    );
    let errors = errors_of(&doc);
    let paths: Vec<&str> = errors.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "$.workloads.bad.wasm.digest",
            "$.workloads.bad.wasm.reference",
            "$.workloads.bad.wasm.dirs.data",
            "$.workloads.bad.wasm.dirs.data.host",
            "$.workloads.bad.wasm.connect[0]",
            "$.workloads.bad.wasm.listen[0]",
            "$.workloads.bad.wasm.limits.memory_mib",
            "$.workloads.bad.wasm.limits.instances",
        ]
    );
    assert!(errors[0].1.contains("sha256sum"), "{}", errors[0].1);
    let m = Manifest::parse(doc.as_bytes()).unwrap().manifest;
    let good = m.workloads["good"].wasm.as_ref().unwrap();
    assert_eq!(good.digest_bytes(), Some([0xaa; 32]));
    assert_eq!(good.limits.memory_mib, 64);
    assert_eq!(good.limits.instances, api::WasmLimits::default().instances);
}
