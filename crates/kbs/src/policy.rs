//! Resource policies in Rego (evaluated by regorus), with CoCo's input shape: `input` is the
//! token's claims, `data` says which resource is asked for, and `data.policy.allow` decides.

use serde_json::{Value, json};

use crate::KbsError;

/// A compiled resource policy.
#[derive(Clone)]
pub struct ResourcePolicy {
    engine: regorus::Engine,
    source: String,
}

impl std::fmt::Debug for ResourcePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourcePolicy").finish_non_exhaustive()
    }
}

fn policy_error(e: impl std::fmt::Display) -> KbsError {
    KbsError::Policy(e.to_string())
}

impl ResourcePolicy {
    /// Compile `source` (a Rego module in `package policy`).
    pub fn new(source: &str) -> Result<Self, KbsError> {
        let mut engine = regorus::Engine::new();
        engine
            .add_policy("resource-policy.rego".into(), source.into())
            .map_err(policy_error)?;
        Ok(Self {
            engine,
            source: source.to_string(),
        })
    }

    /// The policy text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the claims may have `path` (`repo/type/tag`). Anything but `true` denies.
    pub fn allows(&self, claims: &Value, path: &str) -> Result<bool, KbsError> {
        let mut engine = self.engine.clone();
        engine.set_input(regorus::Value::from_json_str(&claims.to_string()).map_err(policy_error)?);
        let data = json!({
            "plugin": "resource",
            "resource-path": path.split('/').collect::<Vec<_>>(),
            "query": {},
        });
        engine
            .add_data(regorus::Value::from_json_str(&data.to_string()).map_err(policy_error)?)
            .map_err(policy_error)?;
        let allow = engine
            .eval_rule("data.policy.allow".into())
            .map_err(policy_error)?;
        Ok(allow == regorus::Value::Bool(true))
    }
}
