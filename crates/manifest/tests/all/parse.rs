use manifest::{Action, Encoding, Format, Manifest, ManifestError, PackageTee, Resource};

use crate::{ALICE_PEM, BOB_PEM, RECOVERY_PEM, TestValues, json_str};

const A32: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B48: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const C48: &str = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";

pub(crate) fn native_json() -> String {
    format!(
        r#"{{
  "packages": {{
    "web": {{ "tee": "sgx", "unique_id": "{A32}", "accepted_tcb_statuses": ["UpToDate", "SWHardeningNeeded"] }},
    "db": {{ "tee": "tdx", "mr_td": "{B48}", "rtmrs": [null, "{C48}", null, null] }},
    "vm": {{ "tee": "az-snp-vtpm", "measurement": "{B48}", "policy": 196608, "pcrs": {{ "4": "{A32}" }},
            "min_reported_tcb": {{ "bootloader": 3, "tee": 0, "snp": 8, "microcode": 115 }} }}
  }},
  "workloads": {{
    "frontend": {{
      "package": "web",
      "max_activations": 2,
      "parameters": {{
        "files": {{
          "/etc/tls.key": "{{{{ pem .Secrets.tls.Private }}}}",
          "/etc/blob": {{ "data": "AAEC", "encoding": "base64", "no_templates": true }}
        }},
        "env": {{ "KEY": "{{{{ hex .Secrets.key }}}}" }},
        "argv": ["web", "--port", "443"]
      }},
      "tls": ["web"]
    }}
  }},
  "secrets": {{
    "tls": {{ "type": "cert-ecdsa", "size": 256, "shared": true, "valid_for": 30,
             "cert": {{ "subject": {{ "common_name": "web" }}, "dns_names": ["web.local"] }} }},
    "key": {{ "type": "symmetric-key", "size": 128 }}
  }},
  "tls": {{ "web": {{ "incoming": [{{ "port": "443", "cert": "tls", "disable_client_auth": true }}] }} }},
  "config": {{ "seal_mode": "ProductKey" }}
}}"#
    )
}

fn native_yaml() -> String {
    format!(
        r#"# the same manifest as native_json()
packages:
  web:
    tee: sgx
    unique_id: "0x{upper}"
    accepted_tcb_statuses: [UpToDate, SWHardeningNeeded]
  db:
    tee: tdx
    mr_td: {B48}
    rtmrs: [null, {C48}, null, null]
  vm:
    tee: az-snp-vtpm
    measurement: {B48}
    policy: 0x30000
    pcrs:
      4: {A32}
    min_reported_tcb: {{bootloader: 3, tee: 0, snp: 8, microcode: 115}}
workloads:
  frontend:
    package: web
    max_activations: 2
    parameters:
      files:
        /etc/tls.key: "{{{{ pem .Secrets.tls.Private }}}}"
        /etc/blob:
          data: AAEC
          encoding: base64
          no_templates: true
      env:
        KEY: "{{{{ hex .Secrets.key }}}}"
      argv: [web, --port, "443"]
    tls: [web]
secrets:
  tls:
    type: cert-ecdsa
    size: 256
    shared: true
    valid_for: 30
    cert:
      subject: {{common_name: web}}
      dns_names: [web.local]
  key: {{type: symmetric-key, size: 128}}
tls:
  web:
    incoming:
      - {{port: 443, cert: tls, disable_client_auth: true}}
config:
  seal_mode: ProductKey
users:
"#,
        upper = A32.to_uppercase()
    )
}

#[test]
fn native_json_and_yaml_parse_equal() {
    let json = Manifest::parse(native_json().as_bytes()).unwrap();
    let yaml = Manifest::parse(native_yaml().as_bytes()).unwrap();
    assert_eq!(json.format, Format::Json);
    assert_eq!(yaml.format, Format::Yaml);
    assert_eq!(json.warnings, vec![]);
    assert_eq!(yaml.warnings, vec![]);
    assert_eq!(json.manifest, yaml.manifest);
    json.manifest.validate().unwrap();

    let m = &json.manifest;
    assert_eq!(m.packages["vm"].tee, PackageTee::AzSnpVtpm);
    assert_eq!(m.packages["vm"].policy, Some(0x30000));
    let blob = &m.workloads["frontend"].parameters.files["/etc/blob"];
    assert_eq!(
        (blob.data.as_slice(), blob.encoding, blob.no_templates),
        (&[0u8, 1, 2][..], Encoding::Base64, true)
    );
    assert_eq!(m.tls["web"].incoming[0].port, "443");
}

#[test]
fn canonical_output_round_trips() {
    let m = Manifest::parse(native_yaml().as_bytes()).unwrap().manifest;
    let json = m.to_json().unwrap();
    assert!(json.contains("\"unique_id\": \"aaaa"), "{json}");
    assert_eq!(Manifest::parse(json.as_bytes()).unwrap().manifest, m);
    assert_eq!(
        Manifest::parse(m.to_yaml().unwrap().as_bytes())
            .unwrap()
            .manifest,
        m
    );
    assert_eq!(Manifest::convert(native_yaml().as_bytes()).unwrap(), json);
}

pub(crate) fn marblerun_json() -> String {
    format!(
        r#"{{
  "Packages": {{
    "backend": {{ "SignerID": "{A32}", "ProductID": 7, "SecurityVersion": 2, "Debug": false }}
  }},
  "Infrastructures": {{ "Azure": {{ "QESVN": 2, "PCESVN": 3 }} }},
  "Marbles": {{
    "server": {{
      "Package": "backend",
      "MaxActivations": 1,
      "Parameters": {{
        "Files": {{
          "/secrets/key": "{{{{ raw .Secrets.DataKey }}}}",
          "/secrets/chain.pem": "{{{{ pem .MarbleRun.MarbleCert.Cert }}}}{{{{ pem .MarbleRun.RootCA.Cert }}}}",
          "/secrets/svc.key": "{{{{ pem .Secrets.ServiceCert.Private }}}}",
          "/config/blob.bin": {{ "Data": "aGVsbG8=", "Encoding": "base64", "NoTemplates": true }}
        }},
        "Env": {{
          "API_TOKEN": "{{{{ string .Secrets.ApiToken }}}}",
          "COORDINATOR_ROOT": "{{{{ base64 .MarbleRun.CoordinatorRoot.Cert }}}}"
        }},
        "Argv": ["server", "--listen", ":8443"]
      }},
      "TLS": ["internal"],
      "DisableSecretBinding": true
    }}
  }},
  "Secrets": {{
    "DataKey": {{ "Type": "symmetric-key", "Size": 256, "Shared": true }},
    "ApiToken": {{ "Type": "plain", "UserDefined": true }},
    "ServiceCert": {{ "Type": "cert-rsa", "Size": 3072, "ValidFor": 90,
      "Cert": {{ "Subject": {{ "CommonName": "svc", "Organization": ["Example"] }},
                 "DNSNames": ["svc.internal"], "IPAddresses": ["10.0.0.1"] }} }}
  }},
  "Users": {{
    "alice": {{ "Certificate": {alice}, "Roles": ["Updater", "TokenWriter"] }},
    "bob": {{ "Certificate": {bob}, "Roles": ["Reader", "PkgAdmin"] }}
  }},
  "Roles": {{
    "Updater": {{ "ResourceType": "Manifest", "Actions": ["UpdateManifest"] }},
    "TokenWriter": {{ "ResourceType": "secrets", "ResourceNames": ["ApiToken"], "Actions": ["writesecret", "ReadSecret"] }},
    "Reader": {{ "ResourceType": "Secrets", "ResourceNames": ["DataKey"], "Actions": ["ReadSecret"] }},
    "PkgAdmin": {{ "ResourceType": "Packages", "ResourceNames": ["backend"], "Actions": ["UpdateSecurityVersion"] }}
  }},
  "RecoveryKeys": {{ "ops": {recovery} }},
  "TLS": {{
    "internal": {{
      "Outgoing": [{{ "Addr": "db.internal", "Port": "5432" }}],
      "Incoming": [{{ "Port": "8443", "Cert": "ServiceCert", "DisableClientAuth": true }}]
    }}
  }},
  "Config": {{ "SealMode": "ProductKey", "FeatureGates": ["MonotonicCounter"], "UpdateThreshold": 1,
              "RotateRootSecret": false, "CustomThing": 5 }},
  "Comment": "not a manifest key"
}}"#,
        alice = json_str(ALICE_PEM),
        bob = json_str(BOB_PEM),
        recovery = json_str(RECOVERY_PEM),
    )
}

#[test]
fn marblerun_manifest_parses_and_validates() {
    let parsed = Manifest::parse(marblerun_json().as_bytes()).unwrap();
    let paths: Vec<&str> = parsed.warnings.iter().map(|w| w.path.as_str()).collect();
    assert_eq!(paths, ["$.Infrastructures", "$.Comment"]);
    let m = parsed.manifest;
    m.validate().unwrap();

    let server = &m.workloads["server"];
    assert!(server.disable_secret_binding);
    assert_eq!(server.parameters.files["/config/blob.bin"].data, b"hello");
    assert_eq!(m.packages["backend"].product_id, Some(7));
    assert_eq!(
        m.secrets["ServiceCert"].cert.subject.organization,
        ["Example"]
    );
    assert_eq!(m.config.extra["CustomThing"], 5);
    assert_eq!(m.tls["internal"].outgoing[0].addr, "db.internal");

    let rendered = server.render(&TestValues::marblerun()).unwrap();
    assert_eq!(rendered.env["API_TOKEN"], "s3cret");
    assert_eq!(rendered.files["/secrets/key"], vec![7u8; 32]);
    assert_eq!(rendered.files["/config/blob.bin"], b"hello");
    assert_eq!(rendered.argv, ["server", "--listen", ":8443"]);
}

impl TestValues {
    fn marblerun() -> Self {
        use manifest::{SecretKind, SecretValue};
        let mut v = Self::standard();
        v.secrets.insert(
            "DataKey".into(),
            SecretValue::bytes(SecretKind::SymmetricKey, vec![7; 32]),
        );
        v.secrets.insert(
            "ApiToken".into(),
            SecretValue::bytes(SecretKind::Plain, b"s3cret".to_vec()),
        );
        v.secrets
            .insert("ServiceCert".into(), crate::cert_value(0x60));
        v
    }
}

#[test]
fn users_and_roles_decide_access() {
    let m = Manifest::parse(marblerun_json().as_bytes())
        .unwrap()
        .manifest;
    let (_, block) = x509_parser::pem::parse_x509_pem(ALICE_PEM.as_bytes()).unwrap();
    let (name, user) = m.find_user_by_cert(&block.contents).unwrap();
    assert_eq!(name, "alice");
    assert_eq!(user.roles, ["Updater", "TokenWriter"]);
    assert!(m.find_user_by_cert(b"not a cert").is_none());

    assert!(m.user_may("alice", Action::UpdateManifest, Resource::Manifest));
    assert!(m.user_may("alice", Action::WriteSecret, Resource::Secret("ApiToken")));
    assert!(!m.user_may("alice", Action::WriteSecret, Resource::Secret("DataKey")));
    assert!(!m.user_may("bob", Action::UpdateManifest, Resource::Manifest));
    assert!(m.user_may("bob", Action::ReadSecret, Resource::Secret("DataKey")));
    assert!(m.user_may(
        "bob",
        Action::UpdateSecurityVersion,
        Resource::Package("backend")
    ));
    assert!(!m.user_may(
        "bob",
        Action::UpdateSecurityVersion,
        Resource::Package("other")
    ));
    assert!(!m.user_may("carol", Action::ReadSecret, Resource::Secret("DataKey")));
}

#[test]
fn keys_fold_case_and_separators() {
    let doc = format!(
        r#"{{ "pAcKaGeS": {{
              "a": {{ "uniqueId": "{A32}" }},
              "b": {{ "Unique-ID": "{A32}" }},
              "c": {{ "UNIQUE_ID": "0X{upper}" }} }},
            "marbles": {{ "w": {{ "PACKAGE": "a", "max-activations": 3 }} }},
            "Recovery_Keys": {{ "Ops": {rk} }} }}"#,
        upper = A32.to_uppercase(),
        rk = json_str(RECOVERY_PEM)
    );
    let parsed = Manifest::parse(doc.as_bytes()).unwrap();
    assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
    let m = parsed.manifest;
    for name in ["a", "b", "c"] {
        assert_eq!(
            m.packages[name].unique_id.unwrap().0,
            [0xaa; 32],
            "package {name}"
        );
    }
    assert_eq!(m.workloads["w"].max_activations, 3);
    // Map keys stay verbatim.
    assert!(m.recovery_keys.contains_key("Ops"));
    m.validate().unwrap();
}

#[test]
fn unknown_keys_warn_with_their_path() {
    let doc = r#"{"packages": {"p": {"UniqueId": "00", "Colour": "blue"}},
                  "workloads": {"w": {"package": "p", "parameters": {"files": {"/a b": {"data": "x", "Mode": 7}}}}}}"#;
    let parsed = Manifest::parse(doc.as_bytes());
    // "00" is one byte, not 32: a schema error at the canonical path.
    match parsed {
        Err(ManifestError::Schema { path, .. }) => assert_eq!(path, "$.packages.p.unique_id"),
        other => panic!("expected a schema error, got {other:?}"),
    }
    let doc = doc.replace(r#""UniqueId": "00""#, &format!(r#""UniqueId": "{A32}""#));
    let warnings = Manifest::parse(doc.as_bytes()).unwrap().warnings;
    let paths: Vec<&str> = warnings.iter().map(|w| w.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "$.packages.p.Colour",
            r#"$.workloads.w.parameters.files["/a b"].Mode"#
        ]
    );
}

#[test]
fn unparseable_inputs_are_typed_errors() {
    assert!(matches!(
        Manifest::parse(b"  \n"),
        Err(ManifestError::Empty)
    ));
    assert!(matches!(
        Manifest::parse(b"{\"packages\": "),
        Err(ManifestError::Json { .. })
    ));
    assert!(matches!(
        Manifest::parse(b"- a\n- b\n"),
        Err(ManifestError::NotAMapping { found: "a list" })
    ));
    assert!(matches!(
        Manifest::parse(b"a: [\n"),
        Err(ManifestError::YamlSyntax { .. })
    ));
    let bad_b64 = br#"{"workloads": {"w": {"parameters": {"env": {"E": {"data": "%%", "encoding": "base64"}}}}}}"#;
    match Manifest::parse(bad_b64) {
        Err(ManifestError::Schema { path, .. }) => {
            assert_eq!(path, "$.workloads.w.parameters.env.E")
        }
        other => panic!("expected a schema error, got {other:?}"),
    }
}

#[test]
fn fuzz_seeds_are_valid_manifests() {
    for seed in [
        include_str!("../../../../fuzz/seeds/manifest/marblerun.json"),
        include_str!("../../../../fuzz/seeds/manifest/native.yaml"),
    ] {
        let parsed = Manifest::parse(seed.as_bytes()).unwrap();
        parsed.manifest.validate().unwrap();
    }
}

#[test]
fn pathological_documents_are_refused_before_a_tree_is_built() {
    let megabyte_of_brackets = vec![b'['; manifest::MAX_MANIFEST_BYTES];
    for (what, doc) in [
        ("yaml flow", megabyte_of_brackets.clone()),
        (
            "json",
            [b"{\"a\": ".as_slice(), &megabyte_of_brackets[6..]].concat(),
        ),
        (
            "yaml block",
            "- ".repeat(manifest::MAX_MANIFEST_BYTES / 2).into_bytes(),
        ),
    ] {
        // The YAML scanner stops flow collections at its own recursion limit first.
        match Manifest::parse(&doc) {
            Err(ManifestError::TooDeep { limit, line: 1 }) => {
                assert_eq!(limit, manifest::MAX_DEPTH)
            }
            Err(ManifestError::YamlSyntax { reason }) if reason.contains("recursion limit") => {}
            other => panic!("{what}: {other:?}"),
        }
    }
    let too_large = vec![b'a'; manifest::MAX_MANIFEST_BYTES + 1];
    assert!(matches!(
        Manifest::parse(&too_large),
        Err(ManifestError::TooLarge { .. })
    ));
    // A billion laughs: aliases count as values.
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for level in 0..12 {
        let prev = (b'a' + level) as char;
        let next = (b'a' + level + 1) as char;
        bomb.push_str(&format!("{next}: &{next} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
    }
    assert!(Manifest::parse(bomb.as_bytes()).is_err());
}

#[test]
fn a_package_update_is_packages_with_only_security_versions() {
    let update = |text: &str| {
        Manifest::parse(text.as_bytes())
            .unwrap()
            .manifest
            .as_package_update()
    };
    // MarbleRun's spelling and ours.
    assert_eq!(
        update(r#"{"Packages": {"backend": {"SecurityVersion": 3}}}"#),
        Some([("backend".to_string(), 3)].into())
    );
    assert_eq!(
        update("packages:\n  a: {security_version: 2}\n  b: {isv_svn: 5}\n"),
        Some([("a".to_string(), 2), ("b".to_string(), 5)].into())
    );
    // Anything else in a package, or beside the packages, makes it a full update.
    assert_eq!(
        update(r#"{"packages": {"backend": {"security_version": 3, "debug": true}}}"#),
        None
    );
    assert_eq!(
        update(
            r#"{"packages": {"backend": {"security_version": 3}}, "workloads": {"w": {"package": "backend"}}}"#
        ),
        None
    );
    assert_eq!(
        update(&format!(
            r#"{{"packages": {{"backend": {{"signer_id": "{A32}"}}}}}}"#
        )),
        None
    );
    assert_eq!(update(r#"{"packages": {}}"#), None);
}
