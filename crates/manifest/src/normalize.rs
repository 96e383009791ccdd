//! Key folding: rewrite every struct key to its canonical name before typed deserialization.
//!
//! MarbleRun decodes with Go's `encoding/json`, which matches keys case-insensitively and ignores
//! unknown ones. We match more loosely still (ignoring `_` and `-`, so `UniqueID`, `uniqueId` and
//! `unique_id` are one key), keep map keys (names, paths) verbatim, and report every key we drop
//! as a warning with its path instead of ignoring it silently.

use serde_json::{Map, Value};

use crate::{Warning, path_child};

/// What a JSON value is expected to be.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// A struct with known keys.
    Struct(&'static StructShape),
    /// A map whose keys are names (kept verbatim).
    Map(&'static Shape),
    /// A list.
    List(&'static Shape),
    /// A scalar or anything we do not look into.
    Leaf,
    /// A plain string or a struct (MarbleRun's `File`).
    StringOr(&'static StructShape),
}

/// A struct: its canonical keys (with aliases) and whether unknown keys are kept.
#[derive(Debug)]
struct StructShape {
    fields: &'static [Field],
    /// Unknown keys are kept verbatim (Config's extras) instead of dropped.
    open: bool,
    /// Keys accepted for compatibility but ignored, with why.
    ignored: &'static [(&'static str, &'static str)],
}

#[derive(Debug)]
struct Field {
    canonical: &'static str,
    aliases: &'static [&'static str],
    shape: Shape,
}

const fn field(canonical: &'static str, shape: Shape) -> Field {
    Field {
        canonical,
        aliases: &[],
        shape,
    }
}

const fn aliased(canonical: &'static str, aliases: &'static [&'static str], shape: Shape) -> Field {
    Field {
        canonical,
        aliases,
        shape,
    }
}

const fn closed(fields: &'static [Field]) -> StructShape {
    StructShape {
        fields,
        open: false,
        ignored: &[],
    }
}

static MANIFEST: StructShape = StructShape {
    fields: &[
        field("packages", Shape::Map(&Shape::Struct(&PACKAGE))),
        aliased(
            "workloads",
            &["marbles"],
            Shape::Map(&Shape::Struct(&WORKLOAD)),
        ),
        field("secrets", Shape::Map(&Shape::Struct(&SECRET))),
        field("users", Shape::Map(&Shape::Struct(&USER))),
        field("roles", Shape::Map(&Shape::Struct(&ROLE))),
        field("recovery_keys", Shape::Map(&Shape::Leaf)),
        field("tls", Shape::Map(&Shape::Struct(&TLS_TAG))),
        field("config", Shape::Struct(&CONFIG)),
        field("kbs", Shape::Struct(&KBS)),
    ],
    open: false,
    ignored: &[(
        "infrastructures",
        "MarbleRun's Infrastructures are not enforced (MarbleRun ignores them too); TCB levels come from the evidence",
    )],
};

static PACKAGE: StructShape = closed(&[
    aliased("tee", &["tee_kind", "kind"], Shape::Leaf),
    field("debug", Shape::Leaf),
    aliased(
        "accepted_tcb_statuses",
        &["accepted_tcb_status"],
        Shape::Leaf,
    ),
    field("accepted_advisories", Shape::Leaf),
    aliased("unique_id", &["mr_enclave"], Shape::Leaf),
    aliased("signer_id", &["mr_signer"], Shape::Leaf),
    aliased("product_id", &["isv_prod_id"], Shape::Leaf),
    aliased("security_version", &["isv_svn"], Shape::Leaf),
    field("mr_td", Shape::Leaf),
    aliased("rtmrs", &["rtmr"], Shape::Leaf),
    field("mr_config_id", Shape::Leaf),
    field("td_attributes", Shape::Leaf),
    field("xfam", Shape::Leaf),
    field("min_tee_tcb_svn", Shape::Leaf),
    field("measurement", Shape::Leaf),
    field("host_data", Shape::Leaf),
    field("id_key_digest", Shape::Leaf),
    field("policy", Shape::Leaf),
    field("max_vmpl", Shape::Leaf),
    field("min_reported_tcb", Shape::Struct(&SNP_TCB)),
    field("pcrs", Shape::Map(&Shape::Leaf)),
]);

static SNP_TCB: StructShape = closed(&[
    field("bootloader", Shape::Leaf),
    field("tee", Shape::Leaf),
    field("snp", Shape::Leaf),
    field("microcode", Shape::Leaf),
    field("fmc", Shape::Leaf),
]);

static WORKLOAD: StructShape = closed(&[
    field("package", Shape::Leaf),
    field("max_activations", Shape::Leaf),
    field("parameters", Shape::Struct(&PARAMETERS)),
    field("dns_names", Shape::Leaf),
    field("tls", Shape::Leaf),
    field("disable_secret_binding", Shape::Leaf),
    field("wasm", Shape::Struct(&WASM)),
    // A containers-policy.json, kept verbatim (its keys are case-sensitive).
    field("image_policy", Shape::Leaf),
]);

static WASM: StructShape = closed(&[
    field("digest", Shape::Leaf),
    field("reference", Shape::Leaf),
    field("dirs", Shape::Map(&Shape::Struct(&WASM_DIR))),
    field("connect", Shape::Leaf),
    field("listen", Shape::Leaf),
    field("limits", Shape::Struct(&WASM_LIMITS)),
    field("disable_client_auth", Shape::Leaf),
]);

static WASM_DIR: StructShape =
    closed(&[field("host", Shape::Leaf), field("writable", Shape::Leaf)]);

static WASM_LIMITS: StructShape = closed(&[
    field("memory_mib", Shape::Leaf),
    field("table_elements", Shape::Leaf),
    field("instances", Shape::Leaf),
    field("deadline_ms", Shape::Leaf),
]);

static PARAMETERS: StructShape = closed(&[
    field("files", Shape::Map(&Shape::StringOr(&FILE))),
    field("env", Shape::Map(&Shape::StringOr(&FILE))),
    field("argv", Shape::Leaf),
]);

static FILE: StructShape = closed(&[
    field("data", Shape::Leaf),
    field("encoding", Shape::Leaf),
    field("no_templates", Shape::Leaf),
]);

static SECRET: StructShape = closed(&[
    aliased("type", &["kind"], Shape::Leaf),
    field("size", Shape::Leaf),
    field("shared", Shape::Leaf),
    field("user_defined", Shape::Leaf),
    field("valid_for", Shape::Leaf),
    field("cert", Shape::Struct(&CERT)),
]);

static CERT: StructShape = closed(&[
    field("subject", Shape::Struct(&SUBJECT)),
    field("dns_names", Shape::Leaf),
    field("ip_addresses", Shape::Leaf),
    field("email_addresses", Shape::Leaf),
    aliased("uris", &["uri"], Shape::Leaf),
    field("key_usage", Shape::Leaf),
    field("ext_key_usage", Shape::Leaf),
    field("not_after", Shape::Leaf),
]);

static SUBJECT: StructShape = closed(&[
    field("common_name", Shape::Leaf),
    field("organization", Shape::Leaf),
    field("organizational_unit", Shape::Leaf),
    field("country", Shape::Leaf),
    field("province", Shape::Leaf),
    field("locality", Shape::Leaf),
    field("street_address", Shape::Leaf),
    field("postal_code", Shape::Leaf),
    field("serial_number", Shape::Leaf),
]);

static USER: StructShape = closed(&[
    field("certificate", Shape::Leaf),
    field("roles", Shape::Leaf),
    field("public_key", Shape::Leaf),
]);

static KBS: StructShape = closed(&[
    field("resources", Shape::Map(&Shape::Struct(&KBS_RESOURCE))),
    field("resource_policy", Shape::Leaf),
]);

static KBS_RESOURCE: StructShape =
    closed(&[field("secret", Shape::Leaf), field("packages", Shape::Leaf)]);

static ROLE: StructShape = closed(&[
    field("resource_type", Shape::Leaf),
    field("resource_names", Shape::Leaf),
    field("actions", Shape::Leaf),
]);

static TLS_TAG: StructShape = closed(&[
    field("outgoing", Shape::List(&Shape::Struct(&TLS_OUTGOING))),
    field("incoming", Shape::List(&Shape::Struct(&TLS_INCOMING))),
]);

static TLS_OUTGOING: StructShape =
    closed(&[field("addr", Shape::Leaf), field("port", Shape::Leaf)]);

static TLS_INCOMING: StructShape = closed(&[
    field("port", Shape::Leaf),
    field("cert", Shape::Leaf),
    field("disable_client_auth", Shape::Leaf),
]);

static CONFIG: StructShape = StructShape {
    fields: &[
        field("seal_mode", Shape::Leaf),
        field("feature_gates", Shape::Leaf),
        field("update_threshold", Shape::Leaf),
        field("recovery_threshold", Shape::Leaf),
        field("rotate_root_secret", Shape::Leaf),
    ],
    open: true,
    ignored: &[],
};

/// Fold a key for comparison: lowercase, without `_` and `-`.
fn fold(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

/// Rewrite the manifest document's struct keys to canonical names, collecting warnings.
pub(crate) fn normalize_manifest(doc: Value, warnings: &mut Vec<Warning>) -> Value {
    normalize(doc, Shape::Struct(&MANIFEST), "$", warnings)
}

fn normalize(value: Value, shape: Shape, path: &str, warnings: &mut Vec<Warning>) -> Value {
    match (shape, value) {
        (Shape::Struct(s) | Shape::StringOr(s), Value::Object(map)) => {
            Value::Object(normalize_struct(map, s, path, warnings))
        }
        (Shape::Map(inner), Value::Object(map)) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let child = path_child(path, &k);
                    (k, normalize(v, *inner, &child, warnings))
                })
                .collect(),
        ),
        (Shape::List(inner), Value::Array(items)) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| normalize(v, *inner, &format!("{path}[{i}]"), warnings))
                .collect(),
        ),
        // Anything else is either a leaf or a type error that typed parsing reports with its path.
        (_, other) => other,
    }
}

fn normalize_struct(
    map: Map<String, Value>,
    shape: &StructShape,
    path: &str,
    warnings: &mut Vec<Warning>,
) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, value) in map {
        let folded = fold(&key);
        let child = path_child(path, &key);
        let known = shape
            .fields
            .iter()
            .find(|f| fold(f.canonical) == folded || f.aliases.iter().any(|a| fold(a) == folded));
        match known {
            // Go treats null as "not set"; so do we (YAML's empty `Secrets:` is null).
            Some(_) if value.is_null() => {}
            Some(f) => {
                let normalized =
                    normalize(value, f.shape, &path_child(path, f.canonical), warnings);
                if out.insert(f.canonical.to_owned(), normalized).is_some() {
                    warn(
                        warnings,
                        child,
                        format!("key {key:?} repeats {:?}; the last one wins", f.canonical),
                    );
                }
            }
            None if shape.open => {
                out.insert(key, value);
            }
            None => match shape.ignored.iter().find(|(name, _)| fold(name) == folded) {
                Some((_, why)) => warn(warnings, child, format!("ignored: {why}")),
                None => warn(warnings, child, "unknown key ignored".to_owned()),
            },
        }
    }
    out
}

fn warn(warnings: &mut Vec<Warning>, path: String, message: String) {
    warnings.push(Warning { path, message });
}
