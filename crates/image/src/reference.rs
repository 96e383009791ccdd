//! Image references: `[registry/]repository[:tag][@sha256:digest]`, as docker and skopeo read
//! them (a first component with a `.` or `:`, or `localhost`, is a registry; no registry is
//! Docker Hub, where one-component names live under `library/`).

use std::fmt;

/// A parsed reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The registry host (and port).
    pub registry: String,
    /// The repository path.
    pub repository: String,
    /// The tag (`latest` when neither tag nor digest is given).
    pub tag: Option<String>,
    /// The manifest digest, `sha256:` and 64 hex digits.
    pub digest: Option<String>,
}

/// Why a reference does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not an image reference: {reason}")]
pub struct ReferenceError {
    /// The text.
    pub text: String,
    /// What is wrong.
    pub reason: &'static str,
}

const DOCKER_HUB: &str = "registry-1.docker.io";
const MAX_LEN: usize = 1024;
const MAX_NAME_LEN: usize = 255;

impl Reference {
    /// Parse `text`, with or without an `oci://` or `docker://` scheme.
    pub fn parse(text: &str) -> Result<Self, ReferenceError> {
        let bad = |reason| ReferenceError {
            text: text.chars().take(MAX_LEN).collect(),
            reason,
        };
        if text.len() > MAX_LEN {
            return Err(bad("longer than 1024 bytes"));
        }
        let rest = text
            .strip_prefix("oci://")
            .or_else(|| text.strip_prefix("docker://"))
            .unwrap_or(text);
        let (rest, digest) = match rest.split_once('@') {
            Some((name, digest)) => (name, Some(digest)),
            None => (rest, None),
        };
        if let Some(digest) = digest
            && !is_sha256_digest(digest)
        {
            return Err(bad(
                "the digest must be sha256: and 64 lowercase hex digits",
            ));
        }
        // A tag follows the last ':' after the last '/' (a ':' before it is a port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].find(':') {
            Some(at) => (&rest[..last_slash + at], Some(&rest[last_slash + at + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag
            && !is_tag(tag)
        {
            return Err(bad(
                "a tag is 1-128 of [A-Za-z0-9_.-], not starting with . or -",
            ));
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), path.to_string())
            }
            _ if !name.contains('/') => (DOCKER_HUB.to_string(), format!("library/{name}")),
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        // Docker's rule: the name with its registry is at most 255 characters (so a printed
        // reference, tag and digest included, stays well under the 1024 read here).
        if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
            return Err(bad(
                "the name with its registry is longer than 255 characters",
            ));
        }
        if repository.is_empty() || !repository.split('/').all(is_path_component) {
            return Err(bad(
                "a repository is lowercase [a-z0-9] components joined by ., _, __ or -, separated by /",
            ));
        }
        let tag = match (tag, digest) {
            (None, None) => Some("latest".to_string()),
            (tag, _) => tag.map(str::to_string),
        };
        Ok(Self {
            registry,
            repository,
            tag,
            digest: digest.map(str::to_string),
        })
    }

    /// What to ask the registry's manifest endpoint for: the digest when there is one.
    pub fn manifest_ref(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// Whether the registry is on this machine (plain HTTP is allowed there).
    pub fn is_loopback(&self) -> bool {
        let host = match self.registry.rsplit_once(':') {
            Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
            _ => &self.registry,
        };
        host == "localhost"
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Whether `text` is `sha256:` and 64 lowercase hex digits.
pub(crate) fn is_sha256_digest(text: &str) -> bool {
    text.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

fn is_tag(tag: &str) -> bool {
    (1..=128).contains(&tag.len())
        && !tag.starts_with(['.', '-'])
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn is_path_component(part: &str) -> bool {
    !part.is_empty()
        && part
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && part
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && part.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Reference {
        Reference::parse(text).unwrap()
    }

    #[test]
    fn references_read_as_docker_reads_them() {
        let r = parse("oci://127.0.0.1:5000/apps/api:1.0");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("127.0.0.1:5000", "apps/api", Some("1.0"))
        );
        assert!(r.is_loopback());
        assert_eq!(r.to_string(), "127.0.0.1:5000/apps/api:1.0");
        let hub = parse("alpine");
        assert_eq!(hub.registry, "registry-1.docker.io");
        assert_eq!(hub.repository, "library/alpine");
        assert_eq!(hub.manifest_ref(), "latest");
        let digest = format!("sha256:{}", "ab".repeat(32));
        let pinned = parse(&format!("docker://ghcr.io/org/app@{digest}"));
        assert_eq!(pinned.tag, None);
        assert_eq!(pinned.manifest_ref(), digest);
        assert!(!pinned.is_loopback());
        assert_eq!(parse("localhost:5000/a").registry, "localhost:5000");
        for bad in [
            "",
            "UPPER/case",
            "a/b:",
            "a/b:-x",
            "a@sha256:12",
            "a//b",
            &"x".repeat(2000),
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?}");
        }
    }
}
