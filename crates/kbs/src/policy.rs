//! Rego policies (evaluated by regorus) with CoCo's shapes.
//!
//! * [`ResourcePolicy`]: `input` is the token's claims, `data` says which resource is asked for,
//!   and `data.policy.allow` decides.
//! * [`AttestationPolicy`]: `input` is the appraised evidence keyed by TEE kind
//!   (`input.tdx`, `input.snp`, `input.sample`, …, plus `init_data_claims`), and the policy sets
//!   EAR trust-vector claims (`executables := 3`, or one `trust_claims` object); the token's
//!   `ear.status` is the worst tier among them. An `extensions` list of `{name, key, value}`
//!   adds each value to the token's appraisal under its name, as CoCo's EAR extensions.
//!
//! Both may call CoCo's `query_reference_value(name)`, which returns the values registered under
//! `name` (see [`ReferenceValues`]) or `null`.
//!
//! # Bounds
//!
//! regorus 0.14's parser re-parses the first element of every `[`, `{` or set literal after a
//! failed comprehension attempt, so parse time doubles with each level of nesting (depth 20
//! takes seconds); a chain of unary minus recurses with no limit and overflows the stack at a
//! few hundred levels. [`check_text`] refuses both shapes on the text, before the parser sees
//! it: at most [`MAX_POLICY_BYTES`], [`MAX_NESTING`] levels of brackets of any kind, and
//! [`MAX_MINUS_RUN`] minus signs in a row. CoCo's own policies nest three deep at most. After
//! parsing, the module's syntax tree (regorus's own, as JSON) must nest less than 128 deep (a
//! chain of that many operators in one expression recurses as deep when evaluated), and no
//! function may call itself, directly or through others: OPA refuses that at compile time,
//! while regorus 0.14 catches recursive rules but recurses into recursive functions until the
//! stack overflows. `numbers.range` and `numbers.range_step`, which allocate in proportion to
//! their arguments, are refused. Long chains of rules are within these bounds yet recurse
//! deeply when evaluated: callers compile and evaluate on threads with [`STACK_BYTES`] of stack,
//! and an evaluation stops after [`EVALUATION_LIMIT`] (checked by the engine between steps).
//!
//! What these bounds leave: a policy whose rules double a value again and again (a string or
//! array concatenated with itself rule after rule) can still make one evaluation allocate
//! without bound. Policies come only from the manifest's owner and its admins.

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::KbsError;

/// Registered reference values: name → the accepted values (CoCo's RVPS `sample` form).
pub type ReferenceValues = Arc<Map<String, Value>>;

/// The name of CoCo's reference-value builtin.
const QUERY_REFERENCE_VALUE: &str = "query_reference_value";

/// The AR4SI trust-vector claims, as EAR names them.
pub const TRUST_CLAIMS: [&str; 8] = [
    "instance-identity",
    "configuration",
    "executables",
    "file-system",
    "hardware",
    "runtime-opaque",
    "storage-opaque",
    "sourced-data",
];

/// The largest policy accepted, in bytes (CoCo's largest is 12 KiB).
pub const MAX_POLICY_BYTES: usize = 32 << 10;
/// The deepest nesting of `(`, `[` and `{` accepted, rule bodies included (CoCo's: 3).
pub const MAX_NESTING: usize = 6;
/// The most minus signs in a row (`a - -1` has two).
pub const MAX_MINUS_RUN: usize = 2;
/// How long one evaluation may run.
pub const EVALUATION_LIMIT: Duration = Duration::from_secs(1);
/// The stack a thread compiling or evaluating policies within these bounds needs, with room
/// (measured: 16 MiB for the deepest evaluation of a 32 KiB policy).
pub const STACK_BYTES: usize = 64 << 20;
/// Builtins refused because they allocate in proportion to an argument.
const REFUSED_BUILTINS: [&str; 2] = ["numbers.range", "numbers.range_step"];
/// The most JSON nodes an attestation policy's results may take.
const MAX_RESULT_NODES: usize = 10_000;

fn policy_error(e: impl std::fmt::Display) -> KbsError {
    KbsError::Policy(e.to_string())
}

/// Check a policy's text against the bounds above, skipping strings, raw strings and comments.
pub fn check_text(source: &str) -> Result<(), KbsError> {
    let refuse = |why: String| Err(KbsError::InvalidPolicy(why));
    if source.len() > MAX_POLICY_BYTES {
        return refuse(format!(
            "it is {} bytes; at most {MAX_POLICY_BYTES} are accepted",
            source.len()
        ));
    }
    let bytes = source.as_bytes();
    let (mut depth, mut minus_run, mut line, mut at) = (0usize, 0usize, 1usize, 0usize);
    while let Some(&b) = bytes.get(at) {
        at += 1;
        match b {
            b'\n' => line += 1,
            b' ' | b'\t' | b'\r' => continue,
            b'#' => {
                at = memchr_or_end(b'\n', bytes, at);
                continue;
            }
            b'"' => {
                while let Some(&c) = bytes.get(at) {
                    at += if c == b'\\' { 2 } else { 1 };
                    if c == b'"' || c == b'\n' {
                        break;
                    }
                }
            }
            b'`' => {
                let end = memchr_or_end(b'`', bytes, at);
                line += bytes[at..end].iter().filter(|&&c| c == b'\n').count();
                at = end + 1;
            }
            b'(' | b'[' | b'{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return refuse(format!(
                        "it nests brackets deeper than {MAX_NESTING} levels (line {line}); \
                         name the inner parts as rules or functions"
                    ));
                }
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            b'n' if REFUSED_BUILTINS
                .iter()
                .any(|name| calls_at(bytes, at - 1, name)) =>
            {
                return refuse(format!(
                    "it calls numbers.range (line {line}), which allocates in proportion to its \
                     bounds; list the values instead"
                ));
            }
            b'-' => {
                minus_run += 1;
                if minus_run > MAX_MINUS_RUN {
                    return refuse(format!(
                        "it has more than {MAX_MINUS_RUN} minus signs in a row (line {line})"
                    ));
                }
                continue;
            }
            _ => {}
        }
        minus_run = 0;
    }
    Ok(())
}

/// Whether `bytes` at `at` holds `name(` (spaces allowed before the bracket), not as the end of
/// a longer identifier.
fn calls_at(bytes: &[u8], at: usize, name: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'.';
    let starts_word = at == 0 || !bytes.get(at - 1).copied().is_some_and(word);
    let rest = bytes.get(at..).unwrap_or_default();
    starts_word
        && rest.starts_with(name.as_bytes())
        && rest[name.len()..]
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|&b| b == b'(')
}

/// The position of the first `needle` in `bytes` from `from` on, or the end.
fn memchr_or_end(needle: u8, bytes: &[u8], from: usize) -> usize {
    bytes
        .get(from..)
        .and_then(|rest| rest.iter().position(|&b| b == needle))
        .map_or(bytes.len(), |i| from + i)
}

fn to_rego(value: &Value) -> Result<regorus::Value, KbsError> {
    regorus::Value::from_json_str(&value.to_string()).map_err(policy_error)
}

/// A compiled Rego module, its text, and the names it defines at its top level.
#[derive(Clone)]
struct Compiled {
    engine: regorus::Engine,
    source: String,
    defined: BTreeSet<String>,
}

impl Compiled {
    fn new(name: &str, source: &str) -> Result<Self, KbsError> {
        check_text(source)?;
        let mut engine = regorus::Engine::new();
        engine
            .add_policy(name.into(), source.into())
            .map_err(|e| KbsError::InvalidPolicy(e.to_string()))?;
        engine.set_execution_timer_config(regorus::utils::limits::ExecutionTimerConfig {
            limit: EVALUATION_LIMIT,
            check_interval: NonZeroU32::MIN.saturating_add(63),
        });
        let defined = inspect(&engine)?;
        Ok(Self {
            engine,
            source: source.to_string(),
            defined,
        })
    }

    /// A fresh engine for one evaluation, with `input` set and the reference values behind
    /// `query_reference_value`.
    fn prepare(
        &self,
        input: &Value,
        reference_values: &ReferenceValues,
    ) -> Result<regorus::Engine, KbsError> {
        let mut engine = self.engine.clone();
        engine.set_input(to_rego(input)?);
        let values = Arc::clone(reference_values);
        engine
            .add_extension(
                QUERY_REFERENCE_VALUE.into(),
                1,
                Box::new(move |args: Vec<regorus::Value>| {
                    let name = args
                        .first()
                        .and_then(|a| a.as_string().ok())
                        .map(|s| s.to_string())
                        .unwrap_or_default();
                    match values.get(&name) {
                        Some(v) => regorus::Value::from_json_str(&v.to_string()),
                        None => Ok(regorus::Value::Null),
                    }
                }),
            )
            .map_err(policy_error)?;
        Ok(engine)
    }
}

/// The names a compiled module defines at its top level; refuses a syntax tree nested too
/// deep and functions that call themselves, directly or through other functions.
fn inspect(engine: &regorus::Engine) -> Result<BTreeSet<String>, KbsError> {
    let refuse = |why: String| KbsError::InvalidPolicy(why);
    let ast = engine.get_ast_as_json().map_err(policy_error)?;
    // serde_json stops at 128 levels: deeper is one expression with a very long operator chain.
    let ast: Value = serde_json::from_str(&ast).map_err(|_| {
        refuse("an expression in it is too deeply nested (a chain of over 100 operators?)".into())
    })?;
    let rules = ast
        .pointer("/0/ast/rules")
        .and_then(Value::as_array)
        .ok_or_else(|| policy_error("the engine described the module in an unknown form"))?;
    let mut defined = BTreeSet::new();
    let mut calls: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for rule in rules {
        let (head, is_function) = match (rule.get("Default"), rule.pointer("/Spec/head")) {
            (Some(default), _) => (default, false),
            (None, Some(head)) => match head.get("Func") {
                Some(function) => (function, true),
                None => match head.as_object().and_then(|h| h.values().next()) {
                    Some(inner) => (inner, false),
                    None => continue,
                },
            },
            (None, None) => continue,
        };
        let Some(refr) = head.get("refr") else {
            continue;
        };
        if let Some(root) = ref_path(refr).first() {
            defined.insert(root.clone());
        }
        if is_function {
            let mut callees = BTreeSet::new();
            called_functions(rule, &mut callees);
            calls
                .entry(ref_path(refr).join("."))
                .or_default()
                .extend(callees);
        }
    }
    if let Some(cycle) = cycle(&calls) {
        return Err(refuse(format!(
            "function {} calls itself{}: Rego functions may not recurse",
            cycle[0],
            if cycle.len() > 1 {
                format!(" (through {})", cycle[1..].join(", "))
            } else {
                String::new()
            }
        )));
    }
    Ok(defined)
}

/// The segments of a reference in the syntax tree (`a.b[x]` → `a`, `b`), without a leading
/// `data.policy`.
fn ref_path(refr: &Value) -> Vec<String> {
    let mut path = match (
        refr.pointer("/Var/value"),
        refr.get("RefDot"),
        refr.get("RefBrack"),
    ) {
        (Some(Value::String(name)), _, _) => vec![name.clone()],
        (_, Some(dot), _) => {
            let mut path = dot.get("refr").map(ref_path).unwrap_or_default();
            if let Some(Value::String(field)) = dot.pointer("/field/1") {
                path.push(field.clone());
            }
            path
        }
        (_, _, Some(bracket)) => bracket.get("refr").map(ref_path).unwrap_or_default(),
        _ => Vec::new(),
    };
    if path.starts_with(&["data".to_string(), "policy".to_string()]) {
        path.drain(..2);
    }
    path
}

/// Every function called anywhere in `node`.
fn called_functions(node: &Value, into: &mut BTreeSet<String>) {
    match node {
        Value::Object(fields) => {
            if let Some(function) = node.pointer("/Call/fcn") {
                into.insert(ref_path(function).join("."));
            }
            fields.values().for_each(|v| called_functions(v, into));
        }
        Value::Array(items) => items.iter().for_each(|v| called_functions(v, into)),
        _ => {}
    }
}

/// A cycle in the call graph, as the functions on it, if there is one.
fn cycle(calls: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        at: &str,
        calls: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|p| p == at) {
            return Some(path[start..].to_vec());
        }
        if done.contains(at) {
            return None;
        }
        path.push(at.to_string());
        for next in calls.get(at).into_iter().flatten() {
            if calls.contains_key(next)
                && let Some(found) = visit(next, calls, path, done)
            {
                return Some(found);
            }
        }
        path.pop();
        done.insert(at.to_string());
        None
    }
    let mut done = BTreeSet::new();
    calls
        .keys()
        .find_map(|f| visit(f, calls, &mut Vec::new(), &mut done))
}

/// A value the engine computed, as JSON, within `budget` nodes (a value built by doubling
/// is shared inside the engine, but would be exponential as JSON).
fn to_json(value: &regorus::Value, budget: &mut usize) -> Result<Option<Value>, KbsError> {
    use regorus::Value as R;
    *budget = budget.checked_sub(1).ok_or_else(|| {
        KbsError::Policy(format!(
            "the attestation policy's results are larger than {MAX_RESULT_NODES} values"
        ))
    })?;
    let mut list = |items: &mut dyn Iterator<Item = &R>| -> Result<Value, KbsError> {
        let mut out = Vec::new();
        for item in items {
            out.push(to_json(item, budget)?.unwrap_or(Value::Null));
        }
        Ok(Value::Array(out))
    };
    Ok(Some(match value {
        R::Undefined => return Ok(None),
        R::Null => Value::Null,
        R::Bool(b) => Value::Bool(*b),
        R::Number(n) => n
            .as_i64()
            .map(Value::from)
            .or_else(|| {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
            })
            .unwrap_or(Value::Null),
        R::String(text) => Value::String(text.to_string()),
        R::Array(items) => list(&mut items.iter())?,
        R::Set(items) => list(&mut items.iter())?,
        R::Object(fields) => {
            let mut out = Map::new();
            for (key, field) in fields.iter() {
                let key = match key {
                    R::String(text) => text.to_string(),
                    other => to_json(other, budget)?.unwrap_or(Value::Null).to_string(),
                };
                out.insert(key, to_json(field, budget)?.unwrap_or(Value::Null));
            }
            Value::Object(out)
        }
    }))
}

/// A compiled resource policy.
#[derive(Clone)]
pub struct ResourcePolicy(Compiled);

impl std::fmt::Debug for ResourcePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourcePolicy").finish_non_exhaustive()
    }
}

impl ResourcePolicy {
    /// Compile `source` (a Rego module in `package policy`).
    pub fn new(source: &str) -> Result<Self, KbsError> {
        Compiled::new("resource-policy.rego", source).map(Self)
    }

    /// The policy text.
    pub fn source(&self) -> &str {
        &self.0.source
    }

    /// Whether the claims may have `path` (`repo/type/tag`). Anything but `true` denies.
    pub fn allows(
        &self,
        claims: &Value,
        path: &str,
        reference_values: &ReferenceValues,
    ) -> Result<bool, KbsError> {
        let mut engine = self.0.prepare(claims, reference_values)?;
        let data = json!({
            "plugin": "resource",
            "resource-path": path.split('/').collect::<Vec<_>>(),
            "query": {},
        });
        engine.add_data(to_rego(&data)?).map_err(policy_error)?;
        let allow = engine
            .eval_rule("data.policy.allow".into())
            .map_err(policy_error)?;
        Ok(allow == regorus::Value::Bool(true))
    }
}

/// EAR's verdict tiers, worst last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EarStatus {
    /// No claim made.
    None,
    /// Every claim is in the affirming tier (2–31).
    Affirming,
    /// Some claim is a warning (32–95).
    Warning,
    /// Some claim is contraindicated (96–127, or outside AR4SI's range).
    Contraindicated,
}

impl EarStatus {
    /// The tier of one trust-claim value.
    pub fn of(value: i64) -> Self {
        match value {
            0 | 1 => Self::None,
            2..=31 => Self::Affirming,
            32..=95 => Self::Warning,
            _ => Self::Contraindicated,
        }
    }

    /// EAR's name for the tier.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Affirming => "affirming",
            Self::Warning => "warning",
            Self::Contraindicated => "contraindicated",
        }
    }
}

/// What an attestation policy concluded: the trust vector and its overall tier.
#[derive(Debug, Clone, PartialEq)]
pub struct Trust {
    /// `ear.status`.
    pub status: EarStatus,
    /// `ear.trustworthiness-vector`: every AR4SI claim, 0 where the policy set none.
    pub vector: Map<String, Value>,
    /// EAR extensions the policy added: name → value.
    pub extensions: Map<String, Value>,
}

impl Trust {
    /// The verdict when evidence matched a manifest package and no attestation policy is set:
    /// identity, configuration, executables and hardware affirmed.
    pub fn manifest_affirmed() -> Self {
        let affirmed = [
            "instance-identity",
            "configuration",
            "executables",
            "hardware",
        ];
        let vector = TRUST_CLAIMS
            .iter()
            .map(|c| {
                (
                    c.to_string(),
                    Value::from(if affirmed.contains(c) { 2 } else { 0 }),
                )
            })
            .collect();
        Self {
            status: EarStatus::Affirming,
            vector,
            extensions: Map::new(),
        }
    }
}

/// A compiled attestation policy (CoCo's `default_cpu` role).
#[derive(Clone)]
pub struct AttestationPolicy(Compiled);

impl std::fmt::Debug for AttestationPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttestationPolicy").finish_non_exhaustive()
    }
}

impl AttestationPolicy {
    /// Compile `source` (a Rego module in `package policy`).
    pub fn new(source: &str) -> Result<Self, KbsError> {
        Compiled::new("attestation-policy.rego", source).map(Self)
    }

    /// The policy text.
    pub fn source(&self) -> &str {
        &self.0.source
    }

    /// The trust vector the policy assigns to `input`. Claims come from a `trust_claims`
    /// object if the policy defines one, else from rules named after the claims (`-` or `_`).
    pub fn appraise(
        &self,
        input: &Value,
        reference_values: &ReferenceValues,
    ) -> Result<Trust, KbsError> {
        let mut engine = self.0.prepare(input, reference_values)?;
        // Only the rules read below are evaluated and turned into JSON, within a budget.
        let wanted = TRUST_CLAIMS
            .iter()
            .flat_map(|c| [c.to_string(), c.replace('-', "_")])
            .chain(["trust_claims".to_string(), "extensions".to_string()]);
        let mut budget = MAX_RESULT_NODES;
        let mut rules = Map::new();
        for name in wanted.filter(|name| self.0.defined.contains(name)) {
            let value = engine
                .eval_rule(format!("data.policy.{name}"))
                .map_err(policy_error)?;
            if let Some(value) = to_json(&value, &mut budget)? {
                rules.insert(name, value);
            }
        }
        let mut trust = match rules.get("trust_claims") {
            Some(Value::Object(claims)) => trust_from(claims)?,
            _ => trust_from(&rules)?,
        };
        if let Some(list) = rules.get("extensions") {
            trust.extensions = extensions_from(list)?;
        }
        Ok(trust)
    }
}

/// Read `extensions`: a list of `{name, key, value}`, names and keys each used once, none
/// taking a standard EAR claim's place.
fn extensions_from(list: &Value) -> Result<Map<String, Value>, KbsError> {
    let bad = |why: String| KbsError::Policy(format!("policy extensions: {why}"));
    let entries = list.as_array().ok_or_else(|| {
        bad(format!(
            "must be a list of {{name, key, value}}, not {list}"
        ))
    })?;
    let mut extensions = Map::new();
    let mut keys = BTreeSet::new();
    for entry in entries {
        let (Some(name), Some(key), Some(value)) = (
            entry.get("name").and_then(Value::as_str),
            entry.get("key").and_then(Value::as_i64),
            entry.get("value"),
        ) else {
            return Err(bad(format!(
                "each entry needs a string name, an integer key and a value: {entry}"
            )));
        };
        if name.starts_with("ear.") {
            return Err(bad(format!("{name} is a standard EAR claim")));
        }
        if !keys.insert(key) || extensions.contains_key(name) {
            return Err(bad(format!("{name} (key {key}) is registered twice")));
        }
        extensions.insert(name.to_string(), value.clone());
    }
    Ok(extensions)
}

/// Read the trust claims out of an evaluated policy object.
fn trust_from(rules: &Map<String, Value>) -> Result<Trust, KbsError> {
    let mut vector = Map::new();
    let mut status = EarStatus::None;
    for claim in TRUST_CLAIMS {
        let value = rules
            .get(claim)
            .or_else(|| rules.get(&claim.replace('-', "_")));
        let number = match value {
            None => 0,
            Some(v) => v.as_i64().ok_or_else(|| {
                KbsError::Policy(format!("trust claim {claim} must be an integer, not {v}"))
            })?,
        };
        status = status.max(EarStatus::of(number));
        vector.insert(claim.to_string(), Value::from(number));
    }
    if status == EarStatus::None {
        return Err(KbsError::Policy(
            "the attestation policy set no trust claim: set at least one of executables, hardware, configuration, …".into(),
        ));
    }
    Ok(Trust {
        status,
        vector,
        extensions: Map::new(),
    })
}
