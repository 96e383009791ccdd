//! Users, roles and what they permit.

use std::collections::BTreeMap;
use std::str::FromStr;

use crate::schema::{Manifest, Package, User};

/// Something a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Action {
    /// Propose or acknowledge a full manifest update.
    UpdateManifest,
    /// Read a secret.
    ReadSecret,
    /// Upload a user-defined secret.
    WriteSecret,
    /// Raise a package's minimum security version.
    UpdateSecurityVersion,
    /// Upload or delete key-broker resources.
    WriteResource,
    /// Set the key broker's resource policy, attestation policy or reference values.
    SetPolicy,
}

impl Action {
    /// MarbleRun's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UpdateManifest => "UpdateManifest",
            Self::ReadSecret => "ReadSecret",
            Self::WriteSecret => "WriteSecret",
            Self::UpdateSecurityVersion => "UpdateSecurityVersion",
            Self::WriteResource => "WriteResource",
            Self::SetPolicy => "SetPolicy",
        }
    }

    /// The resource type the action applies to.
    pub fn resource_type(self) -> ResourceType {
        match self {
            Self::UpdateManifest => ResourceType::Manifest,
            Self::ReadSecret | Self::WriteSecret => ResourceType::Secrets,
            Self::UpdateSecurityVersion => ResourceType::Packages,
            Self::WriteResource | Self::SetPolicy => ResourceType::Kbs,
        }
    }
}

impl FromStr for Action {
    type Err = String;
    /// Case-insensitive, as in MarbleRun.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Self::UpdateManifest,
            Self::ReadSecret,
            Self::WriteSecret,
            Self::UpdateSecurityVersion,
            Self::WriteResource,
            Self::SetPolicy,
        ]
        .into_iter()
        .find(|a| a.as_str().eq_ignore_ascii_case(s))
        .ok_or_else(|| {
            format!(
                "unknown action {s:?} (UpdateManifest, ReadSecret, WriteSecret, UpdateSecurityVersion, WriteResource, SetPolicy)"
            )
        })
    }
}

/// What a role's resource names refer to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ResourceType {
    /// Packages, by name.
    Packages,
    /// Secrets, by name.
    Secrets,
    /// The manifest itself (no names).
    Manifest,
    /// The key broker (no names).
    Kbs,
}

impl FromStr for ResourceType {
    type Err = String;
    /// Case-insensitive, as in MarbleRun.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "packages" => Ok(Self::Packages),
            "secrets" => Ok(Self::Secrets),
            "manifest" => Ok(Self::Manifest),
            "kbs" => Ok(Self::Kbs),
            _ => Err(format!(
                "unknown resource type {s:?} (Packages, Secrets, Manifest or Kbs)"
            )),
        }
    }
}

/// The resource an action is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Resource<'a> {
    /// A package, by name.
    Package(&'a str),
    /// A secret, by name.
    Secret(&'a str),
    /// The manifest.
    Manifest,
    /// The key broker.
    Kbs,
}

impl Resource<'_> {
    fn resource_type(&self) -> ResourceType {
        match self {
            Self::Package(_) => ResourceType::Packages,
            Self::Secret(_) => ResourceType::Secrets,
            Self::Manifest => ResourceType::Manifest,
            Self::Kbs => ResourceType::Kbs,
        }
    }

    fn name(&self) -> Option<&str> {
        match self {
            Self::Package(name) | Self::Secret(name) => Some(name),
            Self::Manifest | Self::Kbs => None,
        }
    }
}

impl Manifest {
    /// The users holding a role that permits `action` on `resource`, by name.
    pub fn users_who_may(&self, action: Action, resource: Resource<'_>) -> Vec<String> {
        self.users
            .keys()
            .filter(|user| self.user_may(user, action, resource))
            .cloned()
            .collect()
    }

    /// If this manifest is a package update (MarbleRun's: nothing but packages, each with
    /// nothing but `security_version`), the new security version of each package.
    pub fn as_package_update(&self) -> Option<BTreeMap<String, u16>> {
        let only_packages = Self {
            packages: self.packages.clone(),
            ..Self::default()
        };
        if self.packages.is_empty() || *self != only_packages {
            return None;
        }
        self.packages
            .iter()
            .map(|(name, package)| {
                let svn = package.security_version?;
                let only_svn = Package {
                    security_version: Some(svn),
                    ..Package::default()
                };
                (*package == only_svn).then(|| (name.clone(), svn))
            })
            .collect()
    }

    /// Users who registered a public key for Bearer JWTs: `(name, PEM)`.
    pub fn users_with_public_keys(&self) -> impl Iterator<Item = (&str, &str)> {
        self.users
            .iter()
            .filter_map(|(name, user)| Some((name.as_str(), user.public_key.as_deref()?)))
    }

    /// The user whose manifest certificate is byte-identical (DER) to `cert_der`.
    ///
    /// Expiry and issuer are deliberately not checked (MarbleRun): users cannot lock themselves out.
    pub fn find_user_by_cert(&self, cert_der: &[u8]) -> Option<(&str, &User)> {
        self.users
            .iter()
            .find(|(_, user)| pem_der(&user.certificate).is_some_and(|der| der == cert_der))
            .map(|(name, user)| (name.as_str(), user))
    }

    /// Whether `user` holds a role permitting `action` on `resource`.
    pub fn user_may(&self, user: &str, action: Action, resource: Resource<'_>) -> bool {
        if action.resource_type() != resource.resource_type() {
            return false;
        }
        let Some(user) = self.users.get(user) else {
            return false;
        };
        user.roles
            .iter()
            .filter_map(|name| self.roles.get(name))
            .any(|role| {
                let type_matches = role
                    .resource_type
                    .parse::<ResourceType>()
                    .is_ok_and(|t| t == resource.resource_type());
                let action_matches = role
                    .actions
                    .iter()
                    .any(|a| a.parse::<Action>().is_ok_and(|a| a == action));
                let name_matches = resource
                    .name()
                    .is_none_or(|name| role.resource_names.iter().any(|n| n == name));
                type_matches && action_matches && name_matches
            })
    }
}

/// The DER inside the first CERTIFICATE block of `pem`.
pub(crate) fn pem_der(pem: &str) -> Option<Vec<u8>> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.trim_start().as_bytes()).ok()?;
    (block.label == "CERTIFICATE").then_some(block.contents)
}
