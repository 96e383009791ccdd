//! Rego policies as an administrator writes them (resource and attestation policies, compiled by
//! regorus behind `kbs::policy::check_text`): any text, compiled as either kind and, when it
//! compiles, evaluated once against a small fixed input, must give Ok or Err — never a panic,
//! an abort or a stack overflow. Like the coordinator, the work runs on a thread with
//! `kbs::policy::STACK_BYTES` of stack; evaluation stops after `kbs::policy::EVALUATION_LIMIT`.
#![no_main]

use std::sync::OnceLock;

use kbs::policy::{AttestationPolicy, ReferenceValues, ResourcePolicy};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

struct Fixed {
    claims: Value,
    evidence: Value,
    reference_values: ReferenceValues,
}

fn fixed() -> &'static Fixed {
    static FIXED: OnceLock<Fixed> = OnceLock::new();
    FIXED.get_or_init(|| {
        let Value::Object(values) = json!({ "svn": ["1"], "executables": [3] }) else {
            unreachable!("an object literal")
        };
        Fixed {
            claims: json!({
                "submods": { "cpu0": { "ear.veraison.annotated-evidence": {
                    "sample": { "svn": "1" } } } }
            }),
            evidence: json!({ "sample": { "svn": "1" }, "runtime_data_claims": {} }),
            reference_values: values.into(),
        }
    })
}

fn exercise(text: &str) {
    let fixed = fixed();
    if let Ok(policy) = ResourcePolicy::new(text) {
        let _ = policy.allows(&fixed.claims, "repo/type/tag", &fixed.reference_values);
    }
    if let Ok(policy) = AttestationPolicy::new(text) {
        let _ = policy.appraise(&fixed.evidence, &fixed.reference_values);
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let text = text.to_owned();
    let worker = std::thread::Builder::new()
        .name("rego_policy".into())
        .stack_size(kbs::policy::STACK_BYTES)
        .spawn(move || exercise(&text))
        .expect("spawn the policy thread");
    if let Err(panic) = worker.join() {
        std::panic::resume_unwind(panic);
    }
});
