//! The typed manifest, in cloister's canonical (snake_case) spelling.
//!
//! These structs only see documents whose keys were already folded to canonical names by
//! [`crate::normalize`]; they stay lenient about what a key holds only where MarbleRun is
//! (ports as numbers or strings, policy as number or hex string).

use std::collections::BTreeMap;

use attest::TcbStatus;
use attest::claims::SnpTcb;
use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error as _};
use serde_json::Value;

use crate::hex::{Hex8, Hex16, Hex32, Hex48};

/// The whole deployment: which workloads may run, what they get, who may change it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Manifest {
    /// Allowed TEE images, by name.
    pub packages: BTreeMap<String, Package>,
    /// Allowed workloads (MarbleRun's "Marbles"), by workload type.
    pub workloads: BTreeMap<String, Workload>,
    /// Secrets the coordinator generates or users upload.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, SecretSpec>,
    /// Client-certificate identities.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub users: BTreeMap<String, User>,
    /// Permissions that users hold.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub roles: BTreeMap<String, Role>,
    /// PEM RSA public keys that recovery secrets are encrypted to.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub recovery_keys: BTreeMap<String, String>,
    /// Transparent-TLS tags.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tls: BTreeMap<String, TlsTag>,
    /// Coordinator options.
    pub config: Config,
    /// The key broker (CoCo KBS): which secrets are released under which resource paths.
    #[serde(skip_serializing_if = "Kbs::is_empty")]
    pub kbs: Kbs,
}

/// What the coordinator's key broker releases, and to whom.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Kbs {
    /// Resources by KBS path `repo/type/tag`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub resources: BTreeMap<String, KbsResource>,
    /// A Rego resource policy (`package policy`, rule `allow`) consulted after the manifest's
    /// mapping, with CoCo's input shape.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_policy: Option<String>,
}

impl Kbs {
    /// Whether the section says nothing.
    pub fn is_empty(&self) -> bool {
        self.resources.is_empty() && self.resource_policy.is_none()
    }
}

/// One resource the key broker serves.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct KbsResource {
    /// The secret whose value is released (shared or user-defined).
    pub secret: String,
    /// The packages whose evidence may have it; empty means any package of the manifest.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<String>,
}

/// Which TEE a package runs in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum PackageTee {
    /// Intel SGX enclave (the default, as in MarbleRun).
    #[default]
    Sgx,
    /// Intel TDX trust domain.
    Tdx,
    /// AMD SEV-SNP guest.
    Snp,
    /// Azure confidential VM on SEV-SNP (vTPM).
    AzSnpVtpm,
    /// Azure confidential VM on TDX (vTPM).
    AzTdxVtpm,
    /// Simulated evidence only, accepted only when the coordinator enables simulation.
    Simulation,
    /// CoCo's `sample` attester (no hardware, no signature): key-broker clients in tests,
    /// accepted only when the coordinator enables simulation.
    Sample,
}

impl PackageTee {
    /// The TEE kind claims must carry, or `None` for simulation packages.
    pub fn tee_kind(self) -> Option<attest::TeeKind> {
        use attest::TeeKind;
        match self {
            Self::Sgx => Some(TeeKind::Sgx),
            Self::Tdx => Some(TeeKind::Tdx),
            Self::Snp => Some(TeeKind::Snp),
            Self::AzSnpVtpm => Some(TeeKind::AzSnpVtpm),
            Self::AzTdxVtpm => Some(TeeKind::AzTdxVtpm),
            Self::Simulation | Self::Sample => None,
        }
    }

    /// The manifest spelling.
    pub fn as_str(self) -> &'static str {
        match (self, self.tee_kind()) {
            (_, Some(kind)) => kind.as_str(),
            (Self::Sample, None) => "sample",
            (_, None) => "simulation",
        }
    }
}

/// One allowed TEE image: the measurements evidence must carry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Package {
    /// The TEE.
    pub tee: PackageTee,
    /// Must equal the evidence's debug flag (a production TEE does not satisfy `debug: true`).
    pub debug: bool,
    /// Accepted TCB statuses; `None` means UpToDate and SWHardeningNeeded. UpToDate is always
    /// accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepted_tcb_statuses: Option<Vec<TcbStatus>>,
    /// Accepted advisory IDs; `None` or an empty list accepts any (MarbleRun semantics).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepted_advisories: Option<Vec<String>>,
    /// SGX MRENCLAVE.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unique_id: Option<Hex32>,
    /// SGX MRSIGNER.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signer_id: Option<Hex32>,
    /// SGX ISVPRODID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_id: Option<u16>,
    /// SGX minimum ISVSVN.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_version: Option<u16>,
    /// TDX MRTD.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mr_td: Option<Hex48>,
    /// TDX RTMR0..3; `null` entries are not checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtmrs: Option<[Option<Hex48>; 4]>,
    /// TDX MRCONFIGID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mr_config_id: Option<Hex48>,
    /// TDX TD_ATTRIBUTES, in quote byte order, compared exactly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub td_attributes: Option<Hex8>,
    /// TDX XFAM, in quote byte order, compared exactly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub xfam: Option<Hex8>,
    /// TDX minimum TEE_TCB_SVN, compared per byte.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_tee_tcb_svn: Option<Hex16>,
    /// SNP MEASUREMENT.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub measurement: Option<Hex48>,
    /// SNP HOST_DATA.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_data: Option<Hex32>,
    /// SNP ID_KEY_DIGEST.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_key_digest: Option<Hex48>,
    /// SNP guest policy bits that must be set.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "u64_or_hex"
    )]
    pub policy: Option<u64>,
    /// SNP maximum VMPL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_vmpl: Option<u32>,
    /// SNP minimum REPORTED_TCB, per component.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_reported_tcb: Option<SnpTcb>,
    /// Azure vTPM: expected SHA-256 PCR values by index (0..=23).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pcrs: Option<BTreeMap<u8, Hex32>>,
}

/// One workload type (MarbleRun: marble).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Workload {
    /// The package it must run as.
    pub package: String,
    /// How many activations are allowed; 0 is unlimited.
    pub max_activations: u64,
    /// Files, environment and arguments handed to it.
    pub parameters: Parameters,
    /// Extra DNS names for its certificate.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns_names: Vec<String>,
    /// Transparent-TLS tags.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tls: Vec<String>,
    /// Leave the workload type out of per-instance secret derivation (MarbleRun < 1.6).
    pub disable_secret_binding: bool,
    /// A WebAssembly workload: the module a keep must run (its digest is bound into the
    /// evidence) and how it runs it. Native workloads have none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wasm: Option<api::WasmSpec>,
    /// The containers-policy.json(5) the workload pulls images with (`cloister image pull`
    /// reads it from `CLOISTER_IMAGE_POLICY`): in the manifest, it is attested with the rest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_policy: Option<Value>,
}

/// What a workload receives at activation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Parameters {
    /// File path → content.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, FileSpec>,
    /// Environment variable → value.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, FileSpec>,
    /// Arguments, `argv[0]` first. Never templated.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub argv: Vec<String>,
}

/// How a [`FileSpec`]'s data is written in the manifest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Encoding {
    /// UTF-8 text.
    #[default]
    String,
    /// Standard base64.
    Base64,
    /// Hex.
    Hex,
}

/// A file or environment value: its bytes (decoded at parse time) and whether templates apply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FileSpec {
    /// The decoded content (a template unless `no_templates`).
    pub data: Vec<u8>,
    /// How `data` is written in the manifest (kept so output re-encodes the same way).
    pub encoding: Encoding,
    /// Hand `data` over verbatim.
    pub no_templates: bool,
}

impl FileSpec {
    /// A templated UTF-8 value, as a plain string in the manifest.
    pub fn text(data: &str) -> Self {
        Self {
            data: data.as_bytes().to_vec(),
            encoding: Encoding::String,
            no_templates: false,
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum FileSpecRepr {
    Plain(String),
    Object {
        #[serde(default)]
        data: String,
        #[serde(default)]
        encoding: Encoding,
        #[serde(default)]
        no_templates: bool,
    },
}

impl<'de> Deserialize<'de> for FileSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use base64::Engine as _;
        let (data, encoding, no_templates) = match FileSpecRepr::deserialize(d)? {
            FileSpecRepr::Plain(text) => (text, Encoding::String, false),
            FileSpecRepr::Object {
                data,
                encoding,
                no_templates,
            } => (data, encoding, no_templates),
        };
        let bytes = match encoding {
            Encoding::String => data.into_bytes(),
            Encoding::Base64 => base64::engine::general_purpose::STANDARD
                .decode(data.trim())
                .map_err(|e| D::Error::custom(format!("data is not valid base64: {e}")))?,
            Encoding::Hex => hex::decode(data.trim())
                .map_err(|e| D::Error::custom(format!("data is not valid hex: {e}")))?,
        };
        Ok(Self {
            data: bytes,
            encoding,
            no_templates,
        })
    }
}

impl Serialize for FileSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use base64::Engine as _;
        let text = match self.encoding {
            Encoding::String => String::from_utf8(self.data.clone())
                .map_err(|_| serde::ser::Error::custom("string-encoded data is not UTF-8"))?,
            Encoding::Base64 => base64::engine::general_purpose::STANDARD.encode(&self.data),
            Encoding::Hex => hex::encode(&self.data),
        };
        let repr = if self.encoding == Encoding::String && !self.no_templates {
            FileSpecRepr::Plain(text)
        } else {
            FileSpecRepr::Object {
                data: text,
                encoding: self.encoding,
                no_templates: self.no_templates,
            }
        };
        repr.serialize(s)
    }
}

/// The kind of a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum SecretKind {
    /// ECDSA key and certificate (P-256, P-384, P-521).
    CertEcdsa,
    /// RSA key and certificate.
    CertRsa,
    /// Ed25519 key and certificate.
    CertEd25519,
    /// Random bytes.
    SymmetricKey,
    /// Arbitrary bytes a user uploads.
    Plain,
}

impl SecretKind {
    /// True for the three certificate kinds.
    pub fn is_certificate(self) -> bool {
        matches!(self, Self::CertEcdsa | Self::CertRsa | Self::CertEd25519)
    }

    /// The manifest spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CertEcdsa => "cert-ecdsa",
            Self::CertRsa => "cert-rsa",
            Self::CertEd25519 => "cert-ed25519",
            Self::SymmetricKey => "symmetric-key",
            Self::Plain => "plain",
        }
    }
}

impl std::fmt::Display for SecretKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How one secret is made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SecretSpec {
    /// The kind (`type` in the manifest, as in MarbleRun).
    #[serde(rename = "type")]
    pub kind: SecretKind,
    /// Key size in bits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u32>,
    /// One value for every instance (otherwise one per instance).
    #[serde(default)]
    pub shared: bool,
    /// Uploaded by a user, never generated.
    #[serde(default)]
    pub user_defined: bool,
    /// Certificate validity in days (certificates only; default 365).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_for: Option<u32>,
    /// Certificate template (certificates only).
    #[serde(default)]
    pub cert: CertTemplate,
}

/// The parts of a certificate a manifest may choose.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct CertTemplate {
    /// Subject name.
    pub subject: Subject,
    /// DNS subject alternative names.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns_names: Vec<String>,
    /// IP subject alternative names.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ip_addresses: Vec<String>,
    /// E-mail subject alternative names.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub email_addresses: Vec<String>,
    /// URI subject alternative names.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub uris: Vec<String>,
    /// Key usage bits (Go's `x509.KeyUsage` numbering).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_usage: Option<u32>,
    /// Extended key usages (Go's `x509.ExtKeyUsage` numbering).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ext_key_usage: Vec<u32>,
    /// Explicit expiry (RFC 3339); excludes `valid_for`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
}

/// A certificate subject (the common subset of X.509 names).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Subject {
    /// CN.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub common_name: String,
    /// O.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub organization: Vec<String>,
    /// OU.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub organizational_unit: Vec<String>,
    /// C.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub country: Vec<String>,
    /// ST.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub province: Vec<String>,
    /// L.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub locality: Vec<String>,
    /// Street.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub street_address: Vec<String>,
    /// Postal code.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub postal_code: Vec<String>,
    /// serialNumber attribute.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub serial_number: String,
}

/// A client-certificate identity.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct User {
    /// PEM X.509 certificate, compared byte-exactly (expiry and issuer are not checked).
    pub certificate: String,
    /// A PEM public key (Ed25519 or P-256) that signs the user's Bearer JWTs for the key
    /// broker's admin calls.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// Role names.
    pub roles: Vec<String>,
}

/// A permission: actions on named resources of one type.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Role {
    /// `Packages`, `Secrets` or `Manifest` (case-insensitive; checked by validation).
    pub resource_type: String,
    /// Resource names (none for `Manifest`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resource_names: Vec<String>,
    /// Action names (case-insensitive; checked by validation).
    pub actions: Vec<String>,
}

/// Transparent-TLS rules for one tag.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct TlsTag {
    /// Connections the workload makes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub outgoing: Vec<TlsOutgoing>,
    /// Connections the workload accepts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub incoming: Vec<TlsIncoming>,
}

/// One outgoing TTLS rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct TlsOutgoing {
    /// Host or address.
    pub addr: String,
    /// Port.
    #[serde(deserialize_with = "string_or_number")]
    pub port: String,
}

/// One incoming TTLS rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct TlsIncoming {
    /// Port.
    #[serde(deserialize_with = "string_or_number")]
    pub port: String,
    /// A certificate secret to serve instead of the workload certificate.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cert: String,
    /// Accept clients without certificates (requires `cert`).
    pub disable_client_auth: bool,
}

/// Coordinator options. Keys cloister does not know are kept in `extra`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Config {
    /// `ProductKey` (default), `UniqueKey` or `Disabled`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub seal_mode: String,
    /// Optional features.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub feature_gates: Vec<String>,
    /// Acknowledgements a full update needs; 0 means every UpdateManifest holder.
    pub update_threshold: u64,
    /// Recovery keys needed; 0 means all.
    pub recovery_threshold: u64,
    /// Rotate the root secret on every update.
    pub rotate_root_secret: bool,
    /// Other options, verbatim.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        Value::Null => Ok(String::new()),
        other => Err(D::Error::custom(format!(
            "expected a string or number, got {other}"
        ))),
    }
}

fn u64_or_hex<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::Number(n) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("{n} is not a 64-bit unsigned integer"))),
        Value::String(s) => {
            let digits = s.trim().trim_start_matches("0x").trim_start_matches("0X");
            u64::from_str_radix(digits, 16)
                .map(Some)
                .map_err(|e| D::Error::custom(format!("invalid hex number {s:?}: {e}")))
        }
        other => Err(D::Error::custom(format!(
            "expected a number or hex string, got {other}"
        ))),
    }
}
