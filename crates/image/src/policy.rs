//! `containers-policy.json(5)`: which images may be pulled, and which signatures they need.
//!
//! A policy has a `default` list of requirements and, per transport (`docker`, `oci`), lists
//! by scope; the most specific scope that names an image applies (for `docker`: the exact
//! reference, then its repository and each parent namespace, the registry, `*.domain`
//! wildcards, the transport's `""`, then `default`). Every requirement in the list must accept
//! the image: `insecureAcceptAnything`, `reject`, `signedBy` (GPG simple signing) and
//! `sigstoreSigned` (cosign's key-based signatures); for the last two, one accepted signature
//! is enough. Parsing is strict, as in containers/image: an unknown or duplicate field is an
//! error, not something to ignore.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::{ImageName, Reference};

/// Why a policy document is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the signature policy: {0}")]
pub struct PolicyError(pub String);

/// A policy.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// The requirements where no scope applies.
    pub default: Vec<Requirement>,
    /// Requirements by transport, then scope.
    #[serde(default)]
    pub transports: BTreeMap<String, BTreeMap<String, Vec<Requirement>>>,
}

/// What an image must satisfy.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum Requirement {
    /// Any image.
    #[serde(rename = "insecureAcceptAnything")]
    InsecureAcceptAnything {},
    /// No image.
    #[serde(rename = "reject")]
    Reject {},
    /// A simple-signing (GPG) signature by one of the keys.
    #[serde(rename = "signedBy", rename_all = "camelCase")]
    SignedBy {
        /// `GPGKeys` (the only kind implemented, as in containers/image).
        key_type: String,
        /// A keyring file (binary or armored).
        #[serde(default)]
        key_path: Option<PathBuf>,
        /// Several keyring files.
        #[serde(default)]
        key_paths: Option<Vec<PathBuf>>,
        /// A keyring, base64.
        #[serde(default)]
        key_data: Option<String>,
        /// Which references a signature may name.
        #[serde(default)]
        signed_identity: Option<Identity>,
    },
    /// A sigstore (cosign) signature by the key.
    #[serde(rename = "sigstoreSigned", rename_all = "camelCase")]
    SigstoreSigned {
        /// A PEM public key file.
        #[serde(default)]
        key_path: Option<PathBuf>,
        /// A PEM public key, base64.
        #[serde(default)]
        key_data: Option<String>,
        /// Which references a signature may name.
        #[serde(default)]
        signed_identity: Option<Identity>,
    },
}

/// Which references a signature's `docker-reference` may name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum Identity {
    /// Exactly the pulled reference.
    #[serde(rename = "matchExact")]
    MatchExact {},
    /// The pulled reference if it has a tag; the same repository if pulled by digest (the
    /// default).
    #[serde(rename = "matchRepoDigestOrExact")]
    MatchRepoDigestOrExact {},
    /// The same repository.
    #[serde(rename = "matchRepository")]
    MatchRepository {},
    /// This reference.
    #[serde(rename = "exactReference", rename_all = "camelCase")]
    ExactReference {
        /// The reference, with a tag or digest.
        docker_reference: String,
    },
    /// This repository.
    #[serde(rename = "exactRepository", rename_all = "camelCase")]
    ExactRepository {
        /// The repository.
        docker_repository: String,
    },
    /// The pulled reference with `prefix` replaced by `signed_prefix`, then as
    /// `matchRepoDigestOrExact`.
    #[serde(rename = "remapIdentity", rename_all = "camelCase")]
    RemapIdentity {
        /// The prefix of pulled references.
        prefix: String,
        /// What signatures name instead.
        signed_prefix: String,
    },
}

/// The policy without a policy file: signed images only, and nothing is signed by default,
/// so every pull needs a policy that says what to accept.
pub fn default_policy() -> Policy {
    Policy {
        default: vec![Requirement::Reject {}],
        transports: BTreeMap::new(),
    }
}

impl Policy {
    /// Parse a policy document.
    pub fn parse(json: &[u8]) -> Result<Self, PolicyError> {
        let policy: Self = serde_json::from_slice(json).map_err(|e| PolicyError(e.to_string()))?;
        for requirement in policy.all() {
            requirement.check()?;
        }
        Ok(policy)
    }

    fn all(&self) -> impl Iterator<Item = &Requirement> {
        self.default.iter().chain(
            self.transports
                .values()
                .flat_map(|scopes| scopes.values().flatten()),
        )
    }

    /// The requirements that apply to `name`, and the scope they come from.
    pub fn requirements_for(&self, name: &ImageName) -> (&[Requirement], String) {
        let (transport, scopes) = match name {
            ImageName::Registry(reference) => ("docker", docker_scopes(reference)),
            ImageName::Layout { dir, tag } => ("oci", layout_scopes(dir, tag.as_deref())),
        };
        if let Some(by_scope) = self.transports.get(transport) {
            for scope in scopes.iter().chain(std::iter::once(&String::new())) {
                if let Some(requirements) = by_scope.get(scope) {
                    return (requirements, format!("transports.{transport}[{scope:?}]"));
                }
            }
        }
        (&self.default, "default".into())
    }
}

impl Requirement {
    fn check(&self) -> Result<(), PolicyError> {
        let bad = |reason: &str| Err(PolicyError(reason.into()));
        match self {
            Self::SignedBy {
                key_type,
                key_path,
                key_paths,
                key_data,
                ..
            } => {
                if key_type != "GPGKeys" {
                    return bad("signedBy supports keyType GPGKeys only");
                }
                let given = [key_path.is_some(), key_paths.is_some(), key_data.is_some()];
                if given.iter().filter(|g| **g).count() != 1 {
                    return bad("signedBy needs exactly one of keyPath, keyPaths and keyData");
                }
            }
            Self::SigstoreSigned {
                key_path, key_data, ..
            } => {
                if key_path.is_some() == key_data.is_some() {
                    return bad("sigstoreSigned needs exactly one of keyPath and keyData");
                }
            }
            Self::InsecureAcceptAnything {} | Self::Reject {} => {}
        }
        Ok(())
    }
}

/// The name containers/image gives a registry: Docker Hub is `docker.io`.
pub(crate) fn registry_name(registry: &str) -> &str {
    if registry == "registry-1.docker.io" || registry == "index.docker.io" {
        "docker.io"
    } else {
        registry
    }
}

/// `registry/repository`, as policies and signatures name it.
pub(crate) fn repository_name(reference: &Reference) -> String {
    format!(
        "{}/{}",
        registry_name(&reference.registry),
        reference.repository
    )
}

/// The scopes of a `docker` reference, most specific first (without `""`).
pub(crate) fn docker_scopes(reference: &Reference) -> Vec<String> {
    let name = repository_name(reference);
    let mut scopes = Vec::new();
    if let Some(digest) = &reference.digest {
        scopes.push(format!("{name}@{digest}"));
    } else if let Some(tag) = &reference.tag {
        scopes.push(format!("{name}:{tag}"));
    }
    let mut namespace = name.as_str();
    loop {
        scopes.push(namespace.to_string());
        match namespace.rfind('/') {
            Some(slash) => namespace = &namespace[..slash],
            None => break,
        }
    }
    let host = registry_name(&reference.registry);
    let host = host.split(':').next().unwrap_or(host);
    let mut rest = host;
    while let Some(dot) = rest.find('.') {
        rest = &rest[dot + 1..];
        scopes.push(format!("*.{rest}"));
    }
    scopes
}

fn layout_scopes(dir: &std::path::Path, tag: Option<&str>) -> Vec<String> {
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut scopes = Vec::new();
    if let Some(tag) = tag {
        scopes.push(format!("{}:{tag}", dir.display()));
    }
    scopes.extend(dir.ancestors().map(|a| a.display().to_string()));
    scopes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_specific_scope_applies_and_parsing_is_strict() {
        let policy = Policy::parse(
            br#"{
              "default": [{"type": "reject"}],
              "transports": {"docker": {
                "reg.example.com:5000/team/app": [{"type": "insecureAcceptAnything"}],
                "reg.example.com:5000": [{"type": "sigstoreSigned", "keyPath": "/k.pem"}],
                "*.example.com": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/k.gpg"}],
                "": [{"type": "reject"}]
              }}
            }"#,
        )
        .unwrap();
        let scope = |text: &str| {
            let name = ImageName::parse(text).unwrap();
            policy.requirements_for(&name).1
        };
        assert_eq!(
            scope("docker://reg.example.com:5000/team/app:1"),
            r#"transports.docker["reg.example.com:5000/team/app"]"#
        );
        assert_eq!(
            scope("docker://reg.example.com:5000/team/other:1"),
            r#"transports.docker["reg.example.com:5000"]"#
        );
        assert_eq!(
            scope("docker://mirror.example.com/x:1"),
            r#"transports.docker["*.example.com"]"#
        );
        assert_eq!(scope("docker://quay.io/x:1"), r#"transports.docker[""]"#);
        assert_eq!(scope("oci:/tmp/layout:1"), "default");

        for bad in [
            r#"{"default": [], "extra": 1}"#,
            r#"{"default": [{"type": "reject", "keyPath": "x"}]}"#,
            r#"{"default": [{"type": "signedBy", "keyType": "X509Certificates", "keyPath": "x"}]}"#,
            r#"{"default": [{"type": "signedBy", "keyType": "GPGKeys"}]}"#,
            r#"{"default": [{"type": "sigstoreSigned", "keyPath": "a", "keyData": "b"}]}"#,
            r#"{"transports": {}}"#,
        ] {
            assert!(Policy::parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
