//! The rules a manifest must satisfy (MarbleRun's `Check()`, plus cloister's TEE fields).

use std::collections::BTreeMap;

use crate::access::{Action, ResourceType, pem_der};
use crate::error::ValidationErrors;
use crate::path_child;
use crate::schema::{
    Manifest, Package, PackageTee, Role, SecretKind, SecretSpec, TlsTag, Workload,
};

impl Manifest {
    /// Check every rule and dry-run every template; `Err` lists every problem at its path.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::default();
        if self.packages.is_empty() {
            errors.push("$.packages", "at least one package is required");
        }
        if self.workloads.is_empty() && self.kbs.resources.is_empty() {
            errors.push(
                "$.workloads",
                "at least one workload (or a key-broker resource) is required",
            );
        }
        for (name, package) in &self.packages {
            check_package(&path_child("$.packages", name), package, &mut errors);
        }
        for (name, workload) in &self.workloads {
            self.check_workload(&path_child("$.workloads", name), workload, &mut errors);
        }
        for (name, secret) in &self.secrets {
            check_secret(&path_child("$.secrets", name), secret, &mut errors);
        }
        self.check_users(&mut errors);
        for (name, role) in &self.roles {
            self.check_role(&path_child("$.roles", name), role, &mut errors);
        }
        for (name, tag) in &self.tls {
            self.check_tls_tag(&path_child("$.tls", name), tag, &mut errors);
        }
        for (name, pem) in &self.recovery_keys {
            if let Err(reason) = check_rsa_public_key(pem) {
                errors.push(path_child("$.recovery_keys", name), reason);
            }
        }
        self.check_config(&mut errors);
        self.check_kbs(&mut errors);
        self.dry_run_into(&mut errors);
        errors.into_result()
    }

    fn check_workload(&self, path: &str, workload: &Workload, errors: &mut ValidationErrors) {
        if !self.packages.contains_key(&workload.package) {
            errors.push(
                format!("{path}.package"),
                format!("package {:?} is not defined in packages", workload.package),
            );
        }
        for (i, tag) in workload.tls.iter().enumerate() {
            if !self.tls.contains_key(tag) {
                errors.push(
                    format!("{path}.tls[{i}]"),
                    format!("TLS tag {tag:?} is not defined in tls"),
                );
            }
        }
        if let Some(wasm) = &workload.wasm {
            check_wasm(&format!("{path}.wasm"), wasm, errors);
        }
        if let Some(policy) = &workload.image_policy {
            let parsed = serde_json::to_vec(policy)
                .map_err(|e| e.to_string())
                .and_then(|json| image::policy::Policy::parse(&json).map_err(|e| e.to_string()));
            if let Err(reason) = parsed {
                errors.push(format!("{path}.image_policy"), reason);
            }
        }
        // Values (NUL, UTF-8) are checked by the dry run, which renders every env value.
        for name in workload.parameters.env.keys() {
            if name.is_empty() || name.contains(['=', '\0']) {
                errors.push(
                    path_child(&format!("{path}.parameters.env"), name),
                    "an environment variable name must be non-empty, without '=' or NUL",
                );
            }
        }
    }

    fn check_users(&self, errors: &mut ValidationErrors) {
        let mut seen: BTreeMap<Vec<u8>, &str> = BTreeMap::new();
        for (name, user) in &self.users {
            let path = path_child("$.users", name);
            match parse_certificate(&user.certificate) {
                Err(reason) => errors.push(format!("{path}.certificate"), reason),
                Ok(der) => {
                    if let Some(other) = seen.insert(der, name) {
                        errors.push(
                            format!("{path}.certificate"),
                            format!("the same certificate is already used by user {other:?}"),
                        );
                    }
                }
            }
            if let Some(pem) = &user.public_key
                && let Err(reason) = check_public_key(pem)
            {
                errors.push(format!("{path}.public_key"), reason);
            }
            for (i, role) in user.roles.iter().enumerate() {
                if !self.roles.contains_key(role) {
                    errors.push(
                        format!("{path}.roles[{i}]"),
                        format!("role {role:?} is not defined in roles"),
                    );
                }
            }
        }
    }

    fn check_role(&self, path: &str, role: &Role, errors: &mut ValidationErrors) {
        let resource_type = match role.resource_type.parse::<ResourceType>() {
            Ok(t) => t,
            Err(reason) => return errors.push(format!("{path}.resource_type"), reason),
        };
        if role.actions.is_empty() {
            errors.push(
                format!("{path}.actions"),
                "a role needs at least one action",
            );
        }
        let mut actions = Vec::new();
        for (i, text) in role.actions.iter().enumerate() {
            let at = format!("{path}.actions[{i}]");
            match text.parse::<Action>() {
                Err(reason) => errors.push(at, reason),
                Ok(a) if a.resource_type() != resource_type => errors.push(
                    at,
                    format!(
                        "action {} does not apply to resource type {resource_type:?}",
                        a.as_str()
                    ),
                ),
                Ok(a) => actions.push(a),
            }
        }
        for (i, name) in role.resource_names.iter().enumerate() {
            let at = format!("{path}.resource_names[{i}]");
            if let Err(reason) = self.check_resource_name(resource_type, name, &actions) {
                errors.push(at, reason);
            }
        }
    }

    fn check_resource_name(
        &self,
        kind: ResourceType,
        name: &str,
        actions: &[Action],
    ) -> Result<(), String> {
        match kind {
            ResourceType::Manifest => Err("a Manifest role takes no resource names".to_owned()),
            ResourceType::Kbs => Err("a Kbs role takes no resource names".to_owned()),
            ResourceType::Packages if !self.packages.contains_key(name) => {
                Err(format!("package {name:?} is not defined in packages"))
            }
            ResourceType::Packages => Ok(()),
            ResourceType::Secrets => {
                let secret = self
                    .secrets
                    .get(name)
                    .ok_or_else(|| format!("secret {name:?} is not defined in secrets"))?;
                if actions.contains(&Action::WriteSecret) && !secret.user_defined {
                    return Err(format!(
                        "secret {name:?} is generated, not user_defined: it cannot be written"
                    ));
                }
                if actions.contains(&Action::ReadSecret) && !secret.shared && !secret.user_defined {
                    return Err(format!(
                        "secret {name:?} is unique per instance (neither shared nor user_defined): it cannot be read"
                    ));
                }
                Ok(())
            }
        }
    }

    fn check_tls_tag(&self, path: &str, tag: &TlsTag, errors: &mut ValidationErrors) {
        for (i, rule) in tag.outgoing.iter().enumerate() {
            let at = format!("{path}.outgoing[{i}]");
            if rule.addr.is_empty() || parse_port(&rule.port).is_none() {
                errors.push(at, "an outgoing rule needs addr and a port (1-65535)");
            }
        }
        for (i, rule) in tag.incoming.iter().enumerate() {
            let at = format!("{path}.incoming[{i}]");
            if parse_port(&rule.port).is_none() {
                errors.push(at.clone(), "an incoming rule needs a port (1-65535)");
            }
            if rule.cert.is_empty() {
                if rule.disable_client_auth {
                    errors.push(
                        at,
                        "disable_client_auth needs cert (a certificate secret to serve)",
                    );
                }
                continue;
            }
            match self.secrets.get(&rule.cert) {
                None => errors.push(format!("{at}.cert"), format!("secret {:?} is not defined in secrets", rule.cert)),
                Some(s) if !s.kind.is_certificate() => {
                    errors.push(format!("{at}.cert"), format!("secret {:?} is not a certificate", rule.cert))
                }
                Some(_) if !rule.disable_client_auth => errors.push(
                    format!("{at}.disable_client_auth"),
                    "with a custom cert, client authentication must be disabled (set disable_client_auth)",
                ),
                Some(_) => {}
            }
        }
    }

    fn check_config(&self, errors: &mut ValidationErrors) {
        let config = &self.config;
        let seal_modes = ["", "ProductKey", "UniqueKey", "Disabled"];
        if !seal_modes
            .iter()
            .any(|m| m.eq_ignore_ascii_case(&config.seal_mode))
        {
            errors.push(
                "$.config.seal_mode",
                "seal_mode must be ProductKey, UniqueKey or Disabled",
            );
        }
        let keys = self.recovery_keys.len() as u64;
        match config.recovery_threshold {
            0 => {}
            1 => errors.push(
                "$.config.recovery_threshold",
                "recovery_threshold 1 is not allowed: use 0 (all keys) or at least 2",
            ),
            t if t > keys => errors.push(
                "$.config.recovery_threshold",
                format!("recovery_threshold {t} exceeds the {keys} recovery keys"),
            ),
            _ => {}
        }
        let updaters = self
            .users
            .keys()
            .filter(|u| self.user_may(u, Action::UpdateManifest, crate::Resource::Manifest))
            .count() as u64;
        if config.update_threshold > updaters {
            errors.push(
                "$.config.update_threshold",
                format!(
                    "update_threshold {} exceeds the {updaters} users allowed to update the manifest",
                    config.update_threshold
                ),
            );
        }
    }
}

fn check_package(path: &str, package: &Package, errors: &mut ValidationErrors) {
    check_fields_apply(path, package, errors);
    match package.tee {
        PackageTee::Sgx => check_sgx_identity(path, package, errors),
        PackageTee::Tdx | PackageTee::AzTdxVtpm if package.mr_td.is_none() => {
            errors.push(format!("{path}.mr_td"), "a TDX package needs mr_td");
        }
        PackageTee::Snp | PackageTee::AzSnpVtpm if package.measurement.is_none() => {
            errors.push(
                format!("{path}.measurement"),
                "an SNP package needs measurement",
            );
        }
        _ => {}
    }
    if let Some(pcrs) = &package.pcrs
        && let Some(index) = pcrs.keys().find(|i| **i > 23)
    {
        errors.push(
            format!("{path}.pcrs"),
            format!("PCR index {index} is out of range 0..=23"),
        );
    }
}

/// MarbleRun: either UniqueID or the full SignerID+ProductID+SecurityVersion triple; anything
/// else is allowed only for debug packages.
fn check_sgx_identity(path: &str, package: &Package, errors: &mut ValidationErrors) {
    let unique = package.unique_id.is_some();
    let triple = [
        package.signer_id.is_some(),
        package.product_id.is_some(),
        package.security_version.is_some(),
    ];
    let any = triple.iter().any(|set| *set);
    let all = triple.iter().all(|set| *set);
    if package.debug {
        return;
    }
    if unique && any {
        errors.push(
            path,
            "set either unique_id or signer_id+product_id+security_version, not both",
        );
    } else if !unique && !all {
        errors.push(
            path,
            "an SGX package needs unique_id, or all of signer_id, product_id and security_version",
        );
    }
}

/// A field that the package's TEE never produces would silently never be checked: refuse it.
fn check_fields_apply(path: &str, package: &Package, errors: &mut ValidationErrors) {
    use PackageTee as T;
    let sgx: &[PackageTee] = &[T::Sgx];
    let tdx: &[PackageTee] = &[T::Tdx, T::AzTdxVtpm];
    let snp: &[PackageTee] = &[T::Snp, T::AzSnpVtpm];
    let vtpm: &[PackageTee] = &[T::AzSnpVtpm, T::AzTdxVtpm];
    let p = package;
    let fields: [(&str, bool, &[PackageTee]); 16] = [
        ("unique_id", p.unique_id.is_some(), sgx),
        ("signer_id", p.signer_id.is_some(), sgx),
        ("product_id", p.product_id.is_some(), sgx),
        ("security_version", p.security_version.is_some(), sgx),
        ("mr_td", p.mr_td.is_some(), tdx),
        ("rtmrs", p.rtmrs.is_some(), tdx),
        ("mr_config_id", p.mr_config_id.is_some(), tdx),
        ("td_attributes", p.td_attributes.is_some(), tdx),
        ("xfam", p.xfam.is_some(), tdx),
        ("min_tee_tcb_svn", p.min_tee_tcb_svn.is_some(), tdx),
        ("measurement", p.measurement.is_some(), snp),
        ("host_data", p.host_data.is_some(), snp),
        ("id_key_digest", p.id_key_digest.is_some(), snp),
        ("policy", p.policy.is_some(), snp),
        (
            "max_vmpl",
            p.max_vmpl.is_some() || p.min_reported_tcb.is_some(),
            snp,
        ),
        ("pcrs", p.pcrs.is_some(), vtpm),
    ];
    for (name, set, tees) in fields {
        if set && !tees.contains(&package.tee) {
            errors.push(
                format!("{path}.{name}"),
                format!("{name} does not apply to {} packages", package.tee.as_str()),
            );
        }
    }
}

impl Manifest {
    fn check_kbs(&self, errors: &mut ValidationErrors) {
        for (resource_path, resource) in &self.kbs.resources {
            let path = path_child("$.kbs.resources", resource_path);
            if !is_kbs_path(resource_path) {
                errors.push(
                    path.clone(),
                    "a resource path is repo/type/tag, each of letters, digits, '_', '-' and '.' (not first)",
                );
            }
            match self.secrets.get(&resource.secret) {
                None => errors.push(
                    format!("{path}.secret"),
                    format!("secret {:?} is not defined in secrets", resource.secret),
                ),
                Some(s) if !s.shared && !s.user_defined => errors.push(
                    format!("{path}.secret"),
                    format!(
                        "secret {:?} is unique per instance: the key broker releases only shared or user_defined secrets",
                        resource.secret
                    ),
                ),
                Some(_) => {}
            }
            for (i, package) in resource.packages.iter().enumerate() {
                if !self.packages.contains_key(package) {
                    errors.push(
                        format!("{path}.packages[{i}]"),
                        format!("package {package:?} is not defined in packages"),
                    );
                }
            }
        }
    }
}

/// CoCo's resource path: three segments of `[A-Za-z0-9_-][A-Za-z0-9_.-]*`.
pub fn is_kbs_path(path: &str) -> bool {
    let segments: Vec<&str> = path.split('/').collect();
    segments.len() == 3
        && segments.iter().all(|segment| {
            let mut chars = segment.chars();
            chars
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        })
}

fn check_public_key(pem: &str) -> Result<(), String> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.trim_start().as_bytes())
        .map_err(|_| "not a PEM public key".to_string())?;
    if block.label != "PUBLIC KEY" {
        return Err(format!(
            "a PUBLIC KEY PEM block is needed, not {}",
            block.label
        ));
    }
    use x509_parser::prelude::FromDer as _;
    x509_parser::x509::SubjectPublicKeyInfo::from_der(&block.contents)
        .map(|_| ())
        .map_err(|_| "the public key does not parse".to_string())
}

fn check_secret(path: &str, secret: &SecretSpec, errors: &mut ValidationErrors) {
    if let Err(reason) = check_secret_size(secret.kind, secret.size) {
        errors.push(format!("{path}.size"), reason);
    }
    if secret.valid_for.is_some() && !secret.kind.is_certificate() {
        errors.push(
            format!("{path}.valid_for"),
            "valid_for applies to certificates only",
        );
    }
    if secret.valid_for.is_some() && secret.cert.not_after.is_some() {
        errors.push(
            format!("{path}.valid_for"),
            "set valid_for or cert.not_after, not both",
        );
    }
    if secret.kind == SecretKind::Plain && !secret.user_defined {
        errors.push(
            format!("{path}.user_defined"),
            "plain secrets cannot be generated: set user_defined",
        );
    }
    for (i, ip) in secret.cert.ip_addresses.iter().enumerate() {
        if ip.parse::<std::net::IpAddr>().is_err() {
            errors.push(
                format!("{path}.cert.ip_addresses[{i}]"),
                format!("{ip:?} is not an IP address"),
            );
        }
    }
}

/// The largest symmetric or plain secret the coordinator generates, in bits (8 KiB).
const MAX_GENERATED_BITS: u32 = 65_536;

fn check_secret_size(kind: SecretKind, size: Option<u32>) -> Result<(), String> {
    let bits = size.unwrap_or(0);
    match kind {
        SecretKind::SymmetricKey if bits == 0 || !bits.is_multiple_of(8) => Err(format!(
            "a symmetric key needs a size in bits, a positive multiple of 8 (got {bits})"
        )),
        SecretKind::SymmetricKey | SecretKind::Plain if bits > MAX_GENERATED_BITS => Err(format!(
            "at most {MAX_GENERATED_BITS} bits are generated (got {bits})"
        )),
        SecretKind::CertEcdsa if bits == 224 => {
            Err("ECDSA P-224 is not supported: use 256 or 384".to_owned())
        }
        SecretKind::CertEcdsa if ![256, 384, 521].contains(&bits) => Err(format!(
            "an ECDSA size must be 256, 384 or 521 (got {bits})"
        )),
        SecretKind::CertRsa if ![0, 2048, 3072, 4096].contains(&bits) => Err(format!(
            "an RSA size must be 2048, 3072 or 4096 bits (got {bits})"
        )),
        SecretKind::CertEd25519 if bits != 0 => {
            Err("an Ed25519 key has a fixed size: leave size out".to_owned())
        }
        _ => Ok(()),
    }
}

fn parse_certificate(pem: &str) -> Result<Vec<u8>, String> {
    let der = pem_der(pem).ok_or("not a PEM CERTIFICATE")?;
    x509_parser::parse_x509_certificate(&der)
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    Ok(der)
}

fn check_rsa_public_key(pem: &str) -> Result<(), String> {
    use x509_parser::prelude::FromDer;
    use x509_parser::public_key::PublicKey;
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.trim_start().as_bytes())
        .map_err(|e| format!("not PEM: {e}"))?;
    if block.label != "PUBLIC KEY" {
        return Err(format!(
            "expected a PUBLIC KEY block, found {:?}",
            block.label
        ));
    }
    let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&block.contents)
        .map_err(|e| format!("not a public key: {e}"))?;
    match spki.parsed() {
        Ok(PublicKey::RSA(_)) => Ok(()),
        Ok(_) => Err("recovery keys must be RSA public keys".to_owned()),
        Err(e) => Err(format!("not a valid public key: {e}")),
    }
}

/// The limits a manifest may set: wasm32 memories stop at 4 GiB.
const MAX_WASM_MEMORY_MIB: u64 = 4096;

fn check_wasm(path: &str, wasm: &api::WasmSpec, errors: &mut ValidationErrors) {
    if wasm.digest_bytes().is_none() {
        errors.push(
            format!("{path}.digest"),
            "the module digest must be its SHA-256: 64 hex digits, optionally after \"sha256:\" \
             (`sha256sum app.wasm` prints it)",
        );
    }
    if !wasm.reference.is_empty()
        && let Err(e) = image::Reference::parse(&wasm.reference)
    {
        errors.push(format!("{path}.reference"), e.to_string());
    }
    for (guest, dir) in &wasm.dirs {
        let at = path_child(&format!("{path}.dirs"), guest);
        if !is_plain_absolute(guest) {
            errors.push(
                at.clone(),
                "a guest path must be absolute, without \"..\" or \".\" components",
            );
        }
        // No host path: the operator binds one with `keep run --dir`.
        if !dir.host.is_empty() && !is_plain_absolute(&dir.host) {
            errors.push(
                format!("{at}.host"),
                "the host directory must be an absolute path without \"..\" or \".\" components",
            );
        }
    }
    for (field, addresses) in [("connect", &wasm.connect), ("listen", &wasm.listen)] {
        for (i, address) in addresses.iter().enumerate() {
            if address.parse::<std::net::SocketAddr>().is_err() {
                errors.push(
                    format!("{path}.{field}[{i}]"),
                    format!("{address:?} is not an ip:port address (IPv6 as [::1]:port)"),
                );
            }
        }
    }
    let limits = &wasm.limits;
    if !(1..=MAX_WASM_MEMORY_MIB).contains(&limits.memory_mib) {
        errors.push(
            format!("{path}.limits.memory_mib"),
            format!("must be between 1 and {MAX_WASM_MEMORY_MIB}"),
        );
    }
    if limits.instances == 0 {
        errors.push(format!("{path}.limits.instances"), "must be at least 1");
    }
}

/// A TLS rule's port (MarbleRun writes it as a string or a number).
pub(crate) fn parse_port(text: &str) -> Option<u16> {
    text.trim().parse().ok().filter(|p| *p != 0)
}

fn is_plain_absolute(path: &str) -> bool {
    let path = std::path::Path::new(path);
    path.is_absolute()
        && path.components().all(|c| {
            matches!(
                c,
                std::path::Component::RootDir | std::path::Component::Normal(_)
            )
        })
}
