use manifest::{Field, Reference, Reserved, Target, Template, TemplateError};

use crate::TestValues;

fn render(text: &str) -> Result<Vec<u8>, TemplateError> {
    Template::parse(text)?.render(&TestValues::standard())
}

fn render_str(text: &str) -> String {
    String::from_utf8(render(text).unwrap()).unwrap()
}

#[test]
fn each_encoder_renders() {
    assert_eq!(render_str("k={{ hex .Secrets.key }}"), "k=deadbeef");
    assert_eq!(render_str("{{base64 .Secrets.key}}"), "3q2+7w==");
    assert_eq!(
        render("{{ raw .Secrets.key }}").unwrap(),
        [0xde, 0xad, 0xbe, 0xef]
    );
    assert_eq!(render_str("{{ string .Secrets.token }}"), "s3cret");
    assert_eq!(
        render_str("{{ pem .Secrets.tls.Cert }}"),
        "-----BEGIN CERTIFICATE-----\nEBAQ\n-----END CERTIFICATE-----\n"
    );
    assert_eq!(
        render_str("{{ pem .Secrets.tls.Private }}"),
        "-----BEGIN PRIVATE KEY-----\nERER\n-----END PRIVATE KEY-----\n"
    );
    assert_eq!(
        render_str("{{ pem .Secrets.tls.Public }}"),
        "-----BEGIN PUBLIC KEY-----\nEhIS\n-----END PUBLIC KEY-----\n"
    );
    // A whole certificate secret means its public key (MarbleRun).
    assert_eq!(render_str("{{ hex .Secrets.tls }}"), "121212");
    assert_eq!(render_str("{{ .Secrets.key | hex }}"), "deadbeef");
    assert_eq!(render_str("{{ hex .Previous.Secrets.key }}"), "0102");
}

#[test]
fn pem_wraps_at_64_columns() {
    let mut values = TestValues::standard();
    values.secrets.insert("big".into(), crate::cert_value(1));
    if let Some(v) = values.secrets.get_mut("big") {
        v.cert_der = Some(vec![0; 96]);
    }
    let out = Template::parse("{{ pem .Secrets.big.Cert }}")
        .unwrap()
        .render(&values)
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[1].len(), 64);
    assert_eq!(lines[2].len(), 64);
}

#[test]
fn reserved_names_in_both_spellings() {
    let pairs = [
        (
            ".MarbleRun.RootCA.Cert",
            ".Cloister.RootCA.Cert",
            Reserved::RootCa,
            Field::Cert,
        ),
        (
            ".MarbleRun.MarbleCert.Private",
            ".Cloister.WorkloadCert.Private",
            Reserved::WorkloadCert,
            Field::Private,
        ),
        (
            ".MarbleRun.CoordinatorRoot.Cert",
            ".Cloister.CoordinatorRoot.Cert",
            Reserved::CoordinatorRoot,
            Field::Cert,
        ),
        (
            ".MarbleRun.CoordinatorIntermediate.Cert",
            ".Cloister.CoordinatorIntermediate.Cert",
            Reserved::CoordinatorIntermediate,
            Field::Cert,
        ),
    ];
    for (marblerun, cloister, name, field) in pairs {
        let a = Template::parse(&format!("{{{{ hex {marblerun} }}}}")).unwrap();
        let b = Template::parse(&format!("{{{{ hex {cloister} }}}}")).unwrap();
        let expected = Reference::Reserved { name, field };
        assert_eq!(a.references().collect::<Vec<_>>(), [&expected]);
        assert_eq!(a, b);
        assert_eq!(
            a.render(&TestValues::standard()).unwrap(),
            b.render(&TestValues::standard()).unwrap()
        );
    }
    assert_eq!(
        render_str("{{ hex .Cloister.WorkloadCert.Cert }}"),
        "303030"
    );
    // The namespaces keep their own name for the workload certificate.
    assert!(matches!(
        Template::parse("{{ hex .Cloister.MarbleCert.Cert }}"),
        Err(TemplateError::BadPath { .. })
    ));
    // CA private keys are never handed out.
    assert!(matches!(
        Template::parse("{{ pem .Cloister.RootCA.Private }}"),
        Err(TemplateError::BadPath { .. })
    ));
}

#[test]
fn trim_markers_and_comments() {
    assert_eq!(
        render_str("a  \n {{- hex .Secrets.key -}} \n  b"),
        "adeadbeefb"
    );
    assert_eq!(render_str("a {{- hex .Secrets.key }} b"), "adeadbeef b");
    assert_eq!(render_str("x {{/* a comment */}}y"), "x y");
    assert_eq!(render_str("no actions } here {"), "no actions } here {");
}

#[test]
fn syntax_errors_are_precise() {
    assert_eq!(
        Template::parse("ab{{ hex .Secrets.k"),
        Err(TemplateError::Unclosed { offset: 2 })
    );
    assert!(
        matches!(Template::parse("{{ sha256 .Secrets.k }}"), Err(TemplateError::UnknownFunction { name, .. }) if name == "sha256")
    );
    assert!(matches!(
        Template::parse("{{ hex .Secrets.k.Nope }}"),
        Err(TemplateError::BadPath { .. })
    ));
    assert!(matches!(
        Template::parse("{{ hex .Other.k }}"),
        Err(TemplateError::BadPath { .. })
    ));
    assert!(matches!(
        Template::parse("{{ .Secrets.k }}"),
        Err(TemplateError::Syntax { .. })
    ));
    assert!(matches!(
        Template::parse("{{ }}"),
        Err(TemplateError::Syntax { .. })
    ));
}

#[test]
fn render_refuses_wrong_kinds_and_unknown_secrets() {
    let string_on_cert = render("{{ string .Secrets.tls }}");
    assert!(
        matches!(string_on_cert, Err(TemplateError::StringNeedsPlain { .. })),
        "{string_on_cert:?}"
    );
    assert!(matches!(
        render("{{ pem .Secrets.key }}"),
        Err(TemplateError::PemNeedsCertificate { .. })
    ));
    assert!(matches!(
        render("{{ hex .Secrets.key.Cert }}"),
        Err(TemplateError::MissingField {
            field: Field::Cert,
            ..
        })
    ));
    let unknown = render("{{ hex .Secrets.ghost }}").unwrap_err();
    assert_eq!(
        unknown.to_string(),
        ".Secrets.ghost refers to a secret that is not in the manifest"
    );
    let t = Template::parse("{{ string .Secrets.token }}").unwrap();
    assert!(t.check_target(Target::Env).is_ok());
    assert!(t.check_target(Target::File).is_err());
}

#[test]
fn workload_env_must_be_text() {
    let doc = r#"{"packages": {"p": {"tee": "simulation"}},
                  "secrets": {"k": {"type": "symmetric-key", "size": 32}},
                  "workloads": {"w": {"package": "p", "parameters": {"env": {"K": "{{ raw .Secrets.k }}"}}}}}"#;
    let m = manifest::Manifest::parse(doc.as_bytes()).unwrap().manifest;
    // The dry run's 0x41 bytes are text, so validation passes ...
    m.validate().unwrap();
    // ... but a real key with a NUL byte is refused at render time, naming the variable.
    let mut values = TestValues::standard();
    values.secrets.insert(
        "k".into(),
        manifest::SecretValue::bytes(
            manifest::SecretKind::SymmetricKey,
            vec![0x41, 0, 0x41, 0x41],
        ),
    );
    let err = m.workloads["w"].render(&values).unwrap_err();
    assert_eq!(
        err.to_string(),
        "env K: the value must be UTF-8 text without NUL bytes"
    );
}
