//! Certificates, CRLs and chain verification, shared by the DCAP and SNP verifiers.
//!
//! Parsing is x509-parser's; signatures are checked with aws-lc-rs. Everything is checked at an
//! explicit time: certificate validity, CRL currency (a CRL issued after `now` is refused as
//! well as an expired one) and revocation.

use ::time::OffsetDateTime;
use aws_lc_rs::signature::{self, VerificationAlgorithm};
use der::{Decode as _, Reader as _, Tag, TagNumber};
use x509_parser::der_parser::oid::Oid;
use x509_parser::extensions::BasicConstraints;
use x509_parser::nom::Err as NomError;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_NIST_HASH_SHA256,
    OID_NIST_HASH_SHA384, OID_PKCS1_RSAENCRYPTION, OID_PKCS1_RSASSAPSS, OID_PKCS1_SHA256WITHRSA,
    OID_PKCS1_SHA384WITHRSA, OID_SIG_ECDSA_WITH_SHA256, OID_SIG_ECDSA_WITH_SHA384,
    OID_X509_EXT_BASIC_CONSTRAINTS, OID_X509_EXT_KEY_USAGE,
};
use x509_parser::prelude::*;
use x509_parser::signature_algorithm::SignatureAlgorithm;

use crate::anchor::{SIMULATION_MARKER_OID, TrustAnchor};

/// Why a certificate, CRL or chain was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// The bytes are not a DER/PEM certificate or CRL.
    #[error("{what} is malformed: {reason}")]
    Malformed {
        /// What was being parsed.
        what: String,
        /// The parser's complaint.
        reason: String,
    },
    /// A chain had no certificates in it.
    #[error("the certificate chain is empty: supply the issuer chain (PEM)")]
    EmptyChain,
    /// The signature or key algorithm is not one TEE vendors use.
    #[error("certificate {subject:?} uses an unsupported algorithm ({algorithm})")]
    UnsupportedAlgorithm {
        /// Subject of the certificate (or CRL issuer).
        subject: String,
        /// The algorithm.
        algorithm: String,
    },
    /// A signature did not verify under the issuer's key.
    #[error(
        "the signature on {subject:?} does not verify under the key of {issuer:?}: wrong issuer or tampered certificate"
    )]
    BadSignature {
        /// The signed object.
        subject: String,
        /// The claimed signer.
        issuer: String,
    },
    /// The next certificate in the chain is not the issuer of this one.
    #[error(
        "{subject:?} is issued by {expected:?}, but the next certificate in the chain is {actual:?}: supply the right chain"
    )]
    IssuerMismatch {
        /// The certificate.
        subject: String,
        /// Its issuer name.
        expected: String,
        /// The next certificate's subject.
        actual: String,
    },
    /// An intermediate or root is not a CA certificate.
    #[error("{subject:?} is used as an issuer but is not a CA certificate")]
    NotCa {
        /// The certificate.
        subject: String,
    },
    /// A certificate is not yet valid at the verification time.
    #[error(
        "certificate {subject:?} is not valid before {not_before} (verification time {now}): use collateral from that time or a later verification time"
    )]
    NotYetValid {
        /// The certificate.
        subject: String,
        /// Start of its validity.
        not_before: String,
        /// The verification time.
        now: String,
    },
    /// A certificate has expired at the verification time.
    #[error(
        "certificate {subject:?} expired at {not_after} (verification time {now}): fetch a current certificate"
    )]
    Expired {
        /// The certificate.
        subject: String,
        /// End of its validity.
        not_after: String,
        /// The verification time.
        now: String,
    },
    /// The chain ends in a root that the trust anchor does not pin.
    #[error("the chain ends in {subject:?}, which is not a trusted root for this verifier")]
    UntrustedRoot {
        /// The root's subject.
        subject: String,
    },
    /// The root claims to be self-signed but is not.
    #[error("root certificate {subject:?} is not self-signed")]
    NotSelfSigned {
        /// The root's subject.
        subject: String,
    },
    /// A certificate is listed on its issuer's CRL.
    #[error("certificate {subject:?} (serial {serial}) is revoked by {crl_issuer:?}")]
    Revoked {
        /// The revoked certificate.
        subject: String,
        /// Its serial number (hex).
        serial: String,
        /// Who revoked it.
        crl_issuer: String,
    },
    /// A CRL is not yet valid at the verification time.
    #[error(
        "the CRL of {issuer:?} is issued at {this_update}, after the verification time {now}: use a CRL from before that time"
    )]
    CrlNotYetValid {
        /// CRL issuer.
        issuer: String,
        /// thisUpdate.
        this_update: String,
        /// The verification time.
        now: String,
    },
    /// A CRL has passed its nextUpdate.
    #[error(
        "the CRL of {issuer:?} expired at {next_update} (verification time {now}): fetch a current CRL"
    )]
    CrlExpired {
        /// CRL issuer.
        issuer: String,
        /// nextUpdate.
        next_update: String,
        /// The verification time.
        now: String,
    },
    /// The CRL needed to check a certificate was not supplied.
    #[error("no CRL from {issuer:?} was supplied: add it to the collateral")]
    CrlMissing {
        /// The issuer whose CRL is needed.
        issuer: String,
    },
    /// A certificate marks as critical an extension this verifier does not process, so it must
    /// not be used (RFC 5280 §4.2).
    #[error(
        "certificate {subject:?} carries the critical extension {oid}, which this verifier does not process, so it cannot be used: supply the vendor's certificate"
    )]
    UnhandledCriticalExtension {
        /// The certificate.
        subject: String,
        /// The extension's OID.
        oid: String,
    },
    /// An issuer's keyUsage does not allow what it was used for.
    #[error("{subject:?} signed {what}, but its keyUsage does not allow it to: wrong issuer")]
    KeyUsage {
        /// The issuer.
        subject: String,
        /// What it signed: `certificates` or `CRLs`.
        what: &'static str,
    },
    /// A simulation root was given where a production root is required.
    #[error("this is a simulation root: enable simulation explicitly to trust it")]
    SimulationNotEnabled,
}

/// Format a time the way errors and claims print it.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&::time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// The signature algorithms found on TEE vendor certificates and CRLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SigAlg {
    /// ecdsa-with-SHA256 (Intel PCS).
    EcdsaSha256,
    /// ecdsa-with-SHA384.
    EcdsaSha384,
    /// ECDSA with SHA-256, the signature as raw `r || s`: how Intel signs TCB info, QE
    /// identities and QE reports (never a certificate's algorithm).
    EcdsaSha256Fixed,
    /// RSASSA-PSS with SHA-384, MGF1-SHA-384, 48-byte salt (AMD KDS).
    RsaPssSha384,
    /// RSASSA-PSS with SHA-256, MGF1-SHA-256, 32-byte salt.
    RsaPssSha256,
    /// sha256WithRSAEncryption.
    RsaPkcs1Sha256,
    /// sha384WithRSAEncryption.
    RsaPkcs1Sha384,
}

/// The public-key kinds we verify with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyKind {
    /// ECDSA on P-256 (`public_key` is the uncompressed point).
    EcP256,
    /// ECDSA on P-384 (`public_key` is the uncompressed point).
    EcP384,
    /// RSA (`public_key` is the PKCS#1 RSAPublicKey DER).
    Rsa,
    /// Anything else: usable as data, never as a verifier.
    Other,
}

/// One X.509 extension, raw, borrowed from its certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extension<'a> {
    /// The extnID, as encoded (the OBJECT IDENTIFIER's contents).
    pub oid: &'a [u8],
    /// Criticality.
    pub critical: bool,
    /// The extnValue contents (DER of the extension's value).
    pub value: &'a [u8],
}

impl Extension<'_> {
    /// The extnID in dotted form.
    pub fn oid_text(&self) -> String {
        oid_text(self.oid)
    }
}

/// An OID given as encoded, in dotted form.
fn oid_text(encoded: &[u8]) -> String {
    Oid::new(encoded.into()).to_id_string()
}

/// Where a field lies in a certificate's DER.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    /// The span of `inner`, a subslice of `outer`.
    fn of(outer: &[u8], inner: &[u8]) -> Self {
        let start = offset_in(outer, inner);
        // Inputs are far below 4 GiB (a DER length field here tops out at 256 MiB).
        let at = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Self {
            start: at(start),
            end: at(start.saturating_add(inner.len())),
        }
    }

    fn get(self, der: &[u8]) -> &[u8] {
        der.get(self.start as usize..self.end as usize)
            .unwrap_or_default()
    }
}

/// Where an extension's parts lie in its certificate's DER.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ExtensionSpan {
    oid: Span,
    critical: bool,
    value: Span,
}

/// A parsed, owned certificate: everything verification needs, read once. The fields are kept
/// as spans of the certificate's own DER, so a certificate is one allocation and a clone is a
/// copy of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cert {
    der: Vec<u8>,
    tbs: Span,
    subject: Span,
    issuer: Span,
    serial: Span,
    spki: Span,
    public_key: Span,
    /// The outer signatureAlgorithm, for the error when it is not supported.
    signature_algorithm: Span,
    signature: Span,
    extensions: Vec<ExtensionSpan>,
    /// Validity start.
    pub not_before: OffsetDateTime,
    /// Validity end.
    pub not_after: OffsetDateTime,
    /// The kind of `public_key`.
    pub key_kind: KeyKind,
    /// The algorithm of the signature on this certificate, if supported.
    pub sig_alg: Option<SigAlg>,
    /// basicConstraints cA.
    pub is_ca: bool,
    /// What keyUsage lets this key sign (everything when the extension is absent).
    rights: SigningRights,
    /// The first critical extension not processed here, if any (its OID).
    unhandled_critical: Option<Span>,
    /// The public key as last parsed for verification.
    parsed_key: ParsedKey,
}

/// A certificate's EC public key parsed for one signature algorithm, kept for the next signature
/// it checks: an issuer checks a certificate and its CRL with the same key and algorithm.
#[derive(Default)]
struct ParsedKey(std::sync::OnceLock<(SigAlg, signature::ParsedPublicKey)>);

impl Clone for ParsedKey {
    fn clone(&self) -> Self {
        let copy = std::sync::OnceLock::new();
        if let Some(parsed) = self.0.get() {
            let _ = copy.set(parsed.clone());
        }
        Self(copy)
    }
}

impl std::fmt::Debug for ParsedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "parsed"
        } else {
            "not parsed"
        })
    }
}

/// A cache: never part of what makes two certificates equal.
impl PartialEq for ParsedKey {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for ParsedKey {}

impl Cert {
    /// Parse one DER certificate (RFC 5280 §4.1). The fields verification reads are decoded
    /// with x509-parser's element parsers; names and extensions stay encoded, as webpki keeps
    /// them: chains are linked by comparing encoded names, and only basicConstraints (decoded
    /// here) and the vendor extensions are ever read.
    pub fn from_der(der: &[u8]) -> Result<Self, CertError> {
        const WHAT: &str = "certificate";
        let signed = SignedParts::read(Elements::of_exact_sequence(der, WHAT)?)?;
        let mut fields = Elements::of_sequence(signed.tbs, WHAT)?;
        read_version(&mut fields)?;
        let (_, serial) = fields.next_tagged(Tag::Integer, "serialNumber")?;
        signed.check_inner_algorithm(&mut fields)?;
        let (issuer, _) = fields.next_tagged(Tag::Sequence, "issuer")?;
        let validity = fields.parse(Validity::from_der)?;
        let (subject, _) = fields.next_tagged(Tag::Sequence, "subject")?;
        let (spki, spki_element) = fields.next_tagged(Tag::Sequence, "subjectPublicKeyInfo")?;
        let (key_kind, public_key) = read_spki(&spki_element)?;
        let extensions = read_extensions(&mut fields)?;
        fields.finish()?;
        let span = |part: &[u8]| Span::of(der, part);
        Ok(Self {
            der: der.to_vec(),
            tbs: span(signed.tbs),
            subject: span(subject),
            issuer: span(issuer),
            serial: span(serial.data),
            spki: span(spki),
            public_key: span(public_key),
            signature_algorithm: span(signed.algorithm_raw),
            signature: span(signed.signature),
            extensions: extensions
                .iter()
                .map(|e| ExtensionSpan {
                    oid: span(e.oid),
                    critical: e.critical,
                    value: span(e.value),
                })
                .collect(),
            not_before: validity.not_before.to_datetime(),
            not_after: validity.not_after.to_datetime(),
            key_kind,
            sig_alg: signed.sig_alg(),
            is_ca: is_ca(&extensions)?,
            rights: signing_rights(&extensions)?,
            unhandled_critical: extensions
                .iter()
                .find(|e| e.critical && !is_handled(e.oid))
                .map(|e| span(e.oid)),
            parsed_key: ParsedKey::default(),
        })
    }

    /// The whole certificate, DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The whole certificate, DER, owned.
    pub fn into_der(self) -> Vec<u8> {
        self.der
    }

    /// The signed TBSCertificate bytes.
    pub fn tbs(&self) -> &[u8] {
        self.tbs.get(&self.der)
    }

    /// Serial number, big-endian bytes as encoded.
    pub fn serial(&self) -> &[u8] {
        self.serial.get(&self.der)
    }

    /// SubjectPublicKeyInfo, DER.
    pub fn spki_der(&self) -> &[u8] {
        self.spki.get(&self.der)
    }

    /// The subjectPublicKey bits (EC point or RSAPublicKey DER).
    pub fn public_key(&self) -> &[u8] {
        self.public_key.get(&self.der)
    }

    /// The signature value.
    pub fn signature(&self) -> &[u8] {
        self.signature.get(&self.der)
    }

    /// All extensions, raw, in order.
    pub fn extensions(&self) -> impl Iterator<Item = Extension<'_>> {
        self.extensions.iter().map(|e| Extension {
            oid: e.oid.get(&self.der),
            critical: e.critical,
            value: e.value.get(&self.der),
        })
    }

    /// The extension whose extnID is `oid`, as encoded.
    pub fn extension_encoded(&self, oid: &[u8]) -> Option<Extension<'_>> {
        self.extensions().find(|e| e.oid == oid)
    }

    /// Parse one certificate given as DER or PEM.
    pub fn from_der_or_pem(input: &[u8]) -> Result<Self, CertError> {
        if input.starts_with(b"-----") || input.trim_ascii_start().starts_with(b"-----BEGIN") {
            let mut certs = parse_pem_chain(input)?;
            if certs.is_empty() {
                return Err(CertError::EmptyChain);
            }
            return Ok(certs.remove(0));
        }
        Self::from_der(input)
    }

    /// Subject, RFC 4514 text (formatted on demand: only errors and classification need it).
    pub fn subject(&self) -> String {
        name_text(self.subject.get(&self.der))
    }

    /// Issuer, RFC 4514 text.
    pub fn issuer(&self) -> String {
        name_text(self.issuer.get(&self.der))
    }

    /// Whether an attribute of the subject contains the ASCII `text`, read from the encoded
    /// name without formatting it: for telling certificates' roles apart (collateral files), never
    /// for trusting them.
    pub fn subject_mentions(&self, text: &str) -> bool {
        memchr::memmem::find(self.subject.get(&self.der), text.as_bytes()).is_some()
    }

    /// The raw value of the extension with this dotted OID.
    pub fn extension(&self, oid: &str) -> Option<Extension<'_>> {
        let oid: Oid<'_> = oid.parse().ok()?;
        self.extension_encoded(oid.as_bytes())
    }

    /// Whether this certificate belongs to cloister's simulation hierarchy.
    pub fn is_simulation(&self) -> bool {
        self.extension(SIMULATION_MARKER_OID).is_some()
    }

    /// Check that `now` lies within the validity period.
    pub fn check_validity(&self, now: OffsetDateTime) -> Result<(), CertError> {
        if now < self.not_before {
            return Err(CertError::NotYetValid {
                subject: self.subject(),
                not_before: rfc3339(self.not_before),
                now: rfc3339(now),
            });
        }
        if now > self.not_after {
            return Err(CertError::Expired {
                subject: self.subject(),
                not_after: rfc3339(self.not_after),
                now: rfc3339(now),
            });
        }
        Ok(())
    }

    /// Refuse a certificate that marks as critical an extension we do not process.
    fn check_critical_extensions(&self) -> Result<(), CertError> {
        match self.unhandled_critical {
            None => Ok(()),
            Some(oid) => Err(CertError::UnhandledCriticalExtension {
                subject: self.subject(),
                oid: oid_text(oid.get(&self.der)),
            }),
        }
    }

    /// Refuse this key as the signer of `what` unless keyUsage allows it (`allowed`).
    fn check_may_sign(&self, allowed: bool, what: &'static str) -> Result<(), CertError> {
        if allowed {
            return Ok(());
        }
        Err(CertError::KeyUsage {
            subject: self.subject(),
            what,
        })
    }

    /// Whether `issuer`'s subject is this certificate's issuer name.
    pub fn is_issued_by_name(&self, issuer: &Cert) -> bool {
        self.issuer.get(&self.der) == issuer.subject.get(&issuer.der)
    }

    /// Check the signature on this certificate with `issuer`'s key, which keyUsage must allow
    /// to sign certificates.
    pub fn verify_signed_by(&self, issuer: &Cert) -> Result<(), CertError> {
        issuer.check_may_sign(issuer.rights.certificates, "certificates")?;
        let alg = self
            .sig_alg
            .ok_or_else(|| CertError::UnsupportedAlgorithm {
                subject: self.subject(),
                algorithm: algorithm_text(self.signature_algorithm.get(&self.der)),
            })?;
        verify_signature(issuer, alg, self.tbs(), self.signature()).map_err(|e| match e {
            VerifyFail::Unsupported => CertError::UnsupportedAlgorithm {
                subject: issuer.subject(),
                algorithm: format!("{alg:?} with a {:?} key", issuer.key_kind),
            },
            VerifyFail::Bad => CertError::BadSignature {
                subject: self.subject(),
                issuer: issuer.subject(),
            },
        })
    }

    /// Verify `signature` over `message` with this certificate's key.
    pub fn verify(&self, alg: SigAlg, message: &[u8], signature: &[u8]) -> Result<(), CertError> {
        verify_signature(self, alg, message, signature).map_err(|_| CertError::BadSignature {
            subject: "signed data".into(),
            issuer: self.subject(),
        })
    }
}

/// The outside of a certificate or CRL: SEQUENCE { signed part, signatureAlgorithm,
/// signatureValue BIT STRING }, each element's tag and class checked.
struct SignedParts<'a> {
    tbs: &'a [u8],
    algorithm_raw: &'a [u8],
    /// The signatureAlgorithm's OID, as encoded.
    algorithm: &'a [u8],
    /// The signatureValue's octets.
    signature: &'a [u8],
}

impl<'a> SignedParts<'a> {
    fn read(mut outer: Elements<'a>) -> Result<Self, CertError> {
        let (tbs, _) = outer.next_tagged(Tag::Sequence, "the signed part")?;
        let (algorithm_raw, algorithm) = outer.next_tagged(Tag::Sequence, "signatureAlgorithm")?;
        let (algorithm, _) = read_algorithm(&algorithm)?;
        let (_, signature) = outer.next_tagged(Tag::BitString, "signatureValue")?;
        // Signatures are whole octets: a nonzero unused-bits count would be an unsigned,
        // ignored field.
        let [0, signature @ ..] = signature.data else {
            return Err(outer.malformed("the signature BIT STRING has unused bits".into()));
        };
        outer.finish()?;
        Ok(Self {
            tbs,
            algorithm_raw,
            algorithm,
            signature,
        })
    }

    /// The signature algorithm, if it is one we verify.
    fn sig_alg(&self) -> Option<SigAlg> {
        let oid = self.algorithm;
        if oid == OID_SIG_ECDSA_WITH_SHA256.as_bytes() {
            Some(SigAlg::EcdsaSha256)
        } else if oid == OID_SIG_ECDSA_WITH_SHA384.as_bytes() {
            Some(SigAlg::EcdsaSha384)
        } else if oid == OID_PKCS1_SHA256WITHRSA.as_bytes() {
            Some(SigAlg::RsaPkcs1Sha256)
        } else if oid == OID_PKCS1_SHA384WITHRSA.as_bytes() {
            Some(SigAlg::RsaPkcs1Sha384)
        } else if oid == OID_PKCS1_RSASSAPSS.as_bytes() {
            let (_, alg) = AlgorithmIdentifier::from_der(self.algorithm_raw).ok()?;
            pss_alg(&alg)
        } else {
            None
        }
    }

    /// RFC 5280 §4.1.1.2 and §5.1.1.2: the algorithm inside the signed part must be the one
    /// outside it, or an unsigned field could change what the signature is checked as.
    fn check_inner_algorithm(&self, fields: &mut Elements<'a>) -> Result<(), CertError> {
        let (inner, _) = fields.next_tagged(Tag::Sequence, "signature")?;
        if inner != self.algorithm_raw {
            return Err(fields.malformed(
                "the signature algorithm inside the signed part differs from the outer one".into(),
            ));
        }
        Ok(())
    }
}

/// version [0] EXPLICIT INTEGER DEFAULT v1: v1, v2 or v3.
fn read_version(fields: &mut Elements<'_>) -> Result<(), CertError> {
    if fields.next_tag() != Some(context_tag(0, true)) {
        return Ok(());
    }
    let (_, tagged) = fields.next()?;
    let mut inner = Elements::of_contents(tagged.data, "certificate version");
    let (_, version) = inner.next_tagged(Tag::Integer, "version")?;
    inner.finish()?;
    match version.data {
        [0..=2] => Ok(()),
        other => Err(fields.malformed(format!("unknown certificate version {other:02x?}"))),
    }
}

/// issuerUniqueID [1] and subjectUniqueID [2] (skipped), then extensions [3] EXPLICIT, each
/// kept raw; an extension listed twice is refused (RFC 5280 §4.2).
fn read_extensions<'a>(fields: &mut Elements<'a>) -> Result<Vec<Extension<'a>>, CertError> {
    let mut out: Vec<Extension> = Vec::new();
    let mut last_tag = 0;
    while !fields.is_empty() {
        let (_, tagged) = fields.next()?;
        let tag = match tagged.tag {
            Tag::ContextSpecific { number, .. } => number.value(),
            other => return Err(fields.malformed(format!("unexpected {other} in the certificate"))),
        };
        if tag <= last_tag || tag > 3 {
            return Err(fields.malformed(format!("unexpected [{tag}] in the certificate")));
        }
        last_tag = tag;
        if tag != 3 {
            continue;
        }
        let mut list = Elements::of_exact_sequence(tagged.data, "certificate extensions")?;
        while !list.is_empty() {
            // Extension ::= SEQUENCE { extnID OID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }
            let (_, extension) = list.next_tagged(Tag::Sequence, "an extension")?;
            let mut parts = Elements::of(&extension, "certificate extension")?;
            let (_, id) = parts.next_tagged(Tag::ObjectIdentifier, "extnID")?;
            if id.data.is_empty() {
                return Err(parts.malformed("an empty extnID".into()));
            }
            let critical = match parts.next_tag() {
                Some(Tag::Boolean) => der_boolean(parts.next()?.1.data)
                    .ok_or_else(|| parts.malformed("critical is not a DER BOOLEAN".into()))?,
                _ => false,
            };
            let (_, value) = parts.next_tagged(Tag::OctetString, "extnValue")?;
            parts.finish()?;
            if out.iter().any(|e| e.oid == id.data) {
                let oid = oid_text(id.data);
                return Err(list.malformed(format!("extension {oid} appears twice")));
            }
            out.push(Extension {
                oid: id.data,
                critical,
                value: value.data,
            });
        }
    }
    Ok(out)
}

/// A DER BOOLEAN's contents (X.690 §11.1).
fn der_boolean(contents: &[u8]) -> Option<bool> {
    match contents {
        [0x00] => Some(false),
        [0xff] => Some(true),
        _ => None,
    }
}

/// What a key may sign, from keyUsage (RFC 5280 §4.2.1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SigningRights {
    certificates: bool,
    crls: bool,
}

/// keyUsage, read from the raw extension (a malformed one is an error).
fn signing_rights(extensions: &[Extension<'_>]) -> Result<SigningRights, CertError> {
    let Some(ext) = find_extension(extensions, &OID_X509_EXT_KEY_USAGE) else {
        return Ok(SigningRights {
            certificates: true,
            crls: true,
        });
    };
    let usage = x509_cert::ext::pkix::KeyUsage::from_der(ext.value)
        .map_err(|e| malformed_der("keyUsage extension", e))?;
    Ok(SigningRights {
        certificates: usage.key_cert_sign(),
        crls: usage.crl_sign(),
    })
}

/// The critical extensions chain verification processes: basicConstraints and keyUsage.
fn is_handled(oid: &[u8]) -> bool {
    oid == OID_X509_EXT_BASIC_CONSTRAINTS.as_bytes() || oid == OID_X509_EXT_KEY_USAGE.as_bytes()
}

/// The extension with this OID among those just read.
fn find_extension<'e, 'a>(
    extensions: &'e [Extension<'a>],
    oid: &Oid<'_>,
) -> Option<&'e Extension<'a>> {
    extensions.iter().find(|e| e.oid == oid.as_bytes())
}

/// basicConstraints cA, read from the raw extension (a malformed one is an error).
fn is_ca(extensions: &[Extension<'_>]) -> Result<bool, CertError> {
    let Some(ext) = find_extension(extensions, &OID_X509_EXT_BASIC_CONSTRAINTS) else {
        return Ok(false);
    };
    let (_, constraints) =
        BasicConstraints::from_der(ext.value).map_err(|e| CertError::Malformed {
            what: "basicConstraints extension".into(),
            reason: e.to_string(),
        })?;
    Ok(constraints.ca)
}

/// AlgorithmIdentifier ::= SEQUENCE { algorithm OBJECT IDENTIFIER, parameters ANY OPTIONAL }:
/// the OID as encoded, and the parameters if present.
fn read_algorithm<'a>(
    algorithm: &Element<'a>,
) -> Result<(&'a [u8], Option<Element<'a>>), CertError> {
    let mut parts = Elements::of(algorithm, "AlgorithmIdentifier")?;
    let (_, oid) = parts.next_tagged(Tag::ObjectIdentifier, "algorithm")?;
    let parameters = if parts.is_empty() {
        None
    } else {
        Some(parts.next()?.1)
    };
    parts.finish()?;
    Ok((oid.data, parameters))
}

/// SubjectPublicKeyInfo ::= SEQUENCE { algorithm AlgorithmIdentifier, subjectPublicKey BIT
/// STRING }: the key's kind and its bits.
fn read_spki<'a>(spki: &Element<'a>) -> Result<(KeyKind, &'a [u8]), CertError> {
    let mut parts = Elements::of(spki, "subjectPublicKeyInfo")?;
    let (_, algorithm) = parts.next_tagged(Tag::Sequence, "algorithm")?;
    let (oid, parameters) = read_algorithm(&algorithm)?;
    let (_, key) = parts.next_tagged(Tag::BitString, "subjectPublicKey")?;
    parts.finish()?;
    let [0, key @ ..] = key.data else {
        return Err(parts.malformed("the public key BIT STRING has unused bits".into()));
    };
    let curve = parameters
        .filter(|p| p.tag == Tag::ObjectIdentifier)
        .map(|p| p.data);
    let kind = if oid == OID_PKCS1_RSAENCRYPTION.as_bytes() {
        KeyKind::Rsa
    } else if oid != OID_KEY_TYPE_EC_PUBLIC_KEY.as_bytes() {
        KeyKind::Other
    } else if curve == Some(OID_EC_P256.as_bytes()) {
        KeyKind::EcP256
    } else if curve == Some(OID_NIST_EC_P384.as_bytes()) {
        KeyKind::EcP384
    } else {
        KeyKind::Other
    };
    Ok((kind, key))
}

/// An AlgorithmIdentifier's OID in dotted form, for errors.
fn algorithm_text(raw: &[u8]) -> String {
    AlgorithmIdentifier::from_der(raw).map_or_else(
        |_| hex::encode(raw),
        |(_, alg)| alg.algorithm.to_id_string(),
    )
}

/// Parse every certificate in a PEM buffer, in order (blocks with other labels are skipped).
pub fn parse_pem_chain(input: &[u8]) -> Result<Vec<Cert>, CertError> {
    parse_pem_chain_reusing(input, &[])
}

/// Like [`parse_pem_chain`], but a certificate whose DER equals one in `known` is a copy of
/// that one rather than parsed again: a quote's PCK chain ends in the Root CA that the
/// collateral's chains already hold.
pub fn parse_pem_chain_reusing(input: &[u8], known: &[&Cert]) -> Result<Vec<Cert>, CertError> {
    const WHAT: &str = "PEM certificate chain";
    let mut certs = Vec::new();
    let mut rest = input;
    while let Some(block) = next_pem_block(&mut rest, WHAT)? {
        if block.label == b"CERTIFICATE" {
            let der = block.decode(WHAT)?;
            certs.push(match known.iter().find(|k| k.der() == der) {
                Some(same) => (*same).clone(),
                None => Cert::from_der(&der)?,
            });
        }
    }
    Ok(certs)
}

/// One `-----BEGIN label-----` … `-----END label-----` block (RFC 7468), still encoded.
struct PemBlock<'a> {
    label: &'a [u8],
    body: &'a [u8],
}

impl PemBlock<'_> {
    /// The base64 body decoded, whitespace around lines ignored.
    fn decode(&self, what: &str) -> Result<Vec<u8>, CertError> {
        let mut compact = Vec::with_capacity(self.body.len());
        let mut start = 0;
        let ends = memchr::memchr_iter(b'\n', self.body).chain([self.body.len()]);
        for end in ends {
            compact.extend_from_slice(self.body[start..end].trim_ascii());
            start = end + 1;
        }
        base64_simd::STANDARD
            .decode_to_vec(compact)
            .map_err(|e| pem_malformed(what, format!("bad base64: {e}")))
    }
}

fn pem_malformed(what: &str, reason: String) -> CertError {
    CertError::Malformed {
        what: what.into(),
        reason,
    }
}

/// The next PEM block in `rest`, advancing past it; `None` when no block begins. Text outside
/// blocks (explanatory lines, the NUL that ends a quote's PCK chain) is ignored, as RFC 7468
/// allows; the END line must name the BEGIN line's label. Base64 is decoded with `base64-simd`:
/// PEM framing is all that is read here.
fn next_pem_block<'a>(rest: &mut &'a [u8], what: &str) -> Result<Option<PemBlock<'a>>, CertError> {
    use memchr::memmem::Finder;
    use std::sync::LazyLock;
    // Built once: a quote's PCK chain and every collateral chain go through here.
    static BEGIN: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"-----BEGIN "));
    static END: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"-----END "));
    const DASHES: &[u8] = b"-----";
    let Some(start) = BEGIN.find(rest) else {
        return Ok(None);
    };
    let after_begin = &rest[start + BEGIN.needle().len()..];
    let label_len = memchr::memchr(b'-', after_begin)
        .filter(|&at| after_begin[at..].starts_with(DASHES))
        .ok_or_else(|| pem_malformed(what, "unterminated BEGIN line".into()))?;
    let label = &after_begin[..label_len];
    let body_and_rest = &after_begin[label_len + DASHES.len()..];
    let no_end = || {
        pem_malformed(
            what,
            format!("no END line for {}", String::from_utf8_lossy(label)),
        )
    };
    let body_len = END.find(body_and_rest).ok_or_else(no_end)?;
    let end_label = &body_and_rest[body_len + END.needle().len()..];
    if !(end_label.starts_with(label) && end_label[label.len()..].starts_with(DASHES)) {
        return Err(no_end());
    }
    *rest = &end_label[label.len() + DASHES.len()..];
    Ok(Some(PemBlock {
        label,
        body: &body_and_rest[..body_len],
    }))
}

/// A parsed, owned certificate revocation list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crl {
    der: Vec<u8>,
    tbs: Span,
    issuer: Span,
    /// thisUpdate.
    pub this_update: OffsetDateTime,
    /// nextUpdate.
    pub next_update: Option<OffsetDateTime>,
    /// Where each revoked serial number lies in `der`.
    revoked: Vec<Span>,
    sig_alg: Option<SigAlg>,
    signature_algorithm: Span,
    signature: Span,
    /// The SPKI this CRL's signature was verified with, so that a CRL checked for two chains
    /// (the Root CA CRL covers both the PCK and TCB-signing chains) costs one signature
    /// verification.
    verified_by: std::sync::OnceLock<Vec<u8>>,
}

impl Crl {
    /// Parse a CRL given as DER, PEM, or hex of DER.
    pub fn parse(input: &[u8]) -> Result<Self, CertError> {
        if input.trim_ascii_start().starts_with(b"-----BEGIN") {
            const WHAT: &str = "PEM CRL";
            let mut rest = input;
            while let Some(block) = next_pem_block(&mut rest, WHAT)? {
                if block.label == b"X509 CRL" {
                    return Self::from_der(&block.decode(WHAT)?);
                }
            }
            return Err(pem_malformed(WHAT, "no X509 CRL block".into()));
        }
        let (bytes, _) = crate::encoding::decode_input(input);
        Self::from_der(&bytes)
    }

    /// Parse a DER CRL (RFC 5280 §5.1). The fields verification reads are decoded with
    /// x509-parser's element parsers; the revoked entries are only delimited, not decoded, as
    /// webpki does: a platform CA's CRL lists many certificates and a check asks about one.
    pub fn from_der(der: &[u8]) -> Result<Self, CertError> {
        const CRL: &str = "CRL";
        let signed = SignedParts::read(Elements::of_exact_sequence(der, CRL)?)?;
        let mut fields = Elements::of_sequence(signed.tbs, CRL)?;
        if fields.next_tag() == Some(Tag::Integer) {
            fields.next()?; // version (v2)
        }
        signed.check_inner_algorithm(&mut fields)?;
        let (issuer, _) = fields.next_tagged(Tag::Sequence, "issuer")?;
        let this_update = fields.parse(ASN1Time::from_der)?;
        let next_update = match fields.next_tag() {
            Some(Tag::UtcTime | Tag::GeneralizedTime) => Some(fields.parse(ASN1Time::from_der)?),
            _ => None,
        };
        let mut revoked = Vec::new();
        if fields.next_tag() == Some(Tag::Sequence) {
            let (_, list) = fields.next()?;
            let mut entries = Elements::of(&list, CRL)?;
            while !entries.is_empty() {
                let (_, entry) = entries.next()?;
                let (_, serial) = Elements::of(&entry, CRL)?.next()?;
                if serial.tag != Tag::Integer {
                    return Err(
                        entries.malformed("a revoked entry's serial is not an INTEGER".into())
                    );
                }
                revoked.push(Span::of(der, serial.data));
            }
        }
        if !fields.is_empty() {
            // crlExtensions [0]: present, but nothing read here depends on them.
            let (_, extensions) = fields.next()?;
            if extensions.tag != context_tag(0, true) {
                return Err(fields.malformed(format!(
                    "expected crlExtensions [0], found {}",
                    extensions.tag
                )));
            }
        }
        fields.finish()?;
        Ok(Self {
            der: der.to_vec(),
            tbs: Span::of(der, signed.tbs),
            issuer: Span::of(der, issuer),
            this_update: this_update.to_datetime(),
            next_update: next_update.map(|t| t.to_datetime()),
            revoked,
            sig_alg: signed.sig_alg(),
            signature_algorithm: Span::of(der, signed.algorithm_raw),
            signature: Span::of(der, signed.signature),
            verified_by: std::sync::OnceLock::new(),
        })
    }

    /// The revoked serial numbers (big-endian, as encoded), in the CRL's order.
    pub fn revoked_serials(&self) -> impl Iterator<Item = &[u8]> {
        self.revoked.iter().map(|r| r.get(&self.der))
    }

    /// The whole CRL, DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// Issuer, RFC 4514 text.
    pub fn issuer(&self) -> String {
        name_text(self.issuer.get(&self.der))
    }

    /// Whether this CRL was issued by `ca` (by name).
    pub fn is_issued_by_name(&self, ca: &Cert) -> bool {
        self.issuer.get(&self.der) == ca.subject.get(&ca.der)
    }

    /// Check the CRL's signature with its issuer's key, which keyUsage must allow to sign CRLs.
    pub fn verify_signed_by(&self, ca: &Cert) -> Result<(), CertError> {
        ca.check_may_sign(ca.rights.crls, "CRLs")?;
        if self.verified_by.get().map(Vec::as_slice) == Some(ca.spki_der()) {
            return Ok(());
        }
        let alg = self
            .sig_alg
            .ok_or_else(|| CertError::UnsupportedAlgorithm {
                subject: self.issuer(),
                algorithm: algorithm_text(self.signature_algorithm.get(&self.der)),
            })?;
        verify_signature(
            ca,
            alg,
            self.tbs.get(&self.der),
            self.signature.get(&self.der),
        )
        .map_err(|_| CertError::BadSignature {
            subject: format!("CRL of {}", self.issuer()),
            issuer: ca.subject(),
        })?;
        let _ = self.verified_by.set(ca.spki_der().to_vec());
        Ok(())
    }

    /// Check that `now` lies in `[thisUpdate, nextUpdate]`.
    pub fn check_current(&self, now: OffsetDateTime) -> Result<(), CertError> {
        if now < self.this_update {
            return Err(CertError::CrlNotYetValid {
                issuer: self.issuer(),
                this_update: rfc3339(self.this_update),
                now: rfc3339(now),
            });
        }
        if let Some(next) = self.next_update
            && now > next
        {
            return Err(CertError::CrlExpired {
                issuer: self.issuer(),
                next_update: rfc3339(next),
                now: rfc3339(now),
            });
        }
        Ok(())
    }

    /// Whether `cert`'s serial is listed.
    pub fn revokes(&self, cert: &Cert) -> bool {
        let serial = strip_leading_zeros(cert.serial());
        self.revoked_serials()
            .any(|s| strip_leading_zeros(s) == serial)
    }
}

/// Where `inner` (a subslice) starts in `outer`.
fn offset_in(outer: &[u8], inner: &[u8]) -> usize {
    (inner.as_ptr() as usize).saturating_sub(outer.as_ptr() as usize)
}

/// One DER element, borrowed: its tag (class, constructed bit and number), its contents, and
/// its whole encoding. The `der` crate reads the header and enforces DER's length rules.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Element<'a> {
    /// The tag.
    pub(crate) tag: Tag,
    /// The contents octets.
    pub(crate) data: &'a [u8],
}

/// `[number]`, context-specific.
fn context_tag(number: u8, constructed: bool) -> Tag {
    Tag::ContextSpecific {
        constructed,
        number: TagNumber::new(number),
    }
}

/// The element at the start of `input`, its whole encoding and what follows it.
fn read_element(input: &[u8]) -> der::Result<(&[u8], Element<'_>, &[u8])> {
    let mut reader = der::SliceReader::new(input)?;
    let header = der::Header::decode(&mut reader)?;
    let data = reader.read_slice(header.length)?;
    let used = usize::try_from(reader.position())?;
    let (raw, rest) = input
        .split_at_checked(used)
        .ok_or(der::ErrorKind::Incomplete {
            expected_len: reader.position(),
            actual_len: reader.input_len(),
        })?;
    Ok((
        raw,
        Element {
            tag: header.tag,
            data,
        },
        rest,
    ))
}

/// The elements of one DER SEQUENCE, read in order, each borrowed (the `der` crate reads each
/// element's header; this only walks a structure's fields). Errors name `what` is being read.
pub(crate) struct Elements<'a> {
    rest: &'a [u8],
    what: &'static str,
}

impl<'a> Elements<'a> {
    /// The elements of the SEQUENCE at the start of `der` (bytes after it are ignored).
    pub(crate) fn of_sequence(der: &'a [u8], what: &'static str) -> Result<Self, CertError> {
        let (_, seq, _) = read_element(der).map_err(|e| malformed_der(what, e))?;
        Self::of(&seq, what)
    }

    /// The elements of the SEQUENCE that is all of `der`.
    fn of_exact_sequence(der: &'a [u8], what: &'static str) -> Result<Self, CertError> {
        let (_, seq, after) = read_element(der).map_err(|e| malformed_der(what, e))?;
        let elements = Self::of(&seq, what)?;
        if !after.is_empty() {
            return Err(
                elements.malformed(format!("{} trailing bytes after the SEQUENCE", after.len()))
            );
        }
        Ok(elements)
    }

    /// The elements of an already read SEQUENCE (universal and constructed: `der` reads only
    /// 0x30 as a SEQUENCE).
    pub(crate) fn of(seq: &Element<'a>, what: &'static str) -> Result<Self, CertError> {
        let elements = Self::of_contents(seq.data, what);
        if seq.tag != Tag::Sequence {
            return Err(elements.malformed(format!("expected a SEQUENCE, found {}", seq.tag)));
        }
        Ok(elements)
    }

    /// The elements in `contents` (an explicitly tagged element's, say).
    pub(crate) fn of_contents(contents: &'a [u8], what: &'static str) -> Self {
        Self {
            rest: contents,
            what,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The next element's tag, if it has one `der` knows.
    fn next_tag(&self) -> Option<Tag> {
        self.rest.first().and_then(|&b| Tag::try_from(b).ok())
    }

    /// The next element, which must carry `tag` (`field` names it in the error).
    fn next_tagged(&mut self, tag: Tag, field: &str) -> Result<(&'a [u8], Element<'a>), CertError> {
        let (raw, element) = self.next()?;
        if element.tag != tag {
            return Err(self.malformed(format!("{field} is {}, expected {tag}", element.tag)));
        }
        Ok((raw, element))
    }

    /// The next element: its whole encoding and the element itself.
    pub(crate) fn next(&mut self) -> Result<(&'a [u8], Element<'a>), CertError> {
        let (raw, element, rest) =
            read_element(self.rest).map_err(|e| self.malformed(e.to_string()))?;
        self.rest = rest;
        Ok((raw, element))
    }

    /// The next element, decoded by `parser`.
    fn parse<T, E: std::fmt::Debug>(
        &mut self,
        parser: impl FnOnce(&'a [u8]) -> Result<(&'a [u8], T), NomError<E>>,
    ) -> Result<T, CertError> {
        let (rest, value) = parser(self.rest).map_err(|e| self.malformed(e.to_string()))?;
        self.rest = rest;
        Ok(value)
    }

    pub(crate) fn finish(&self) -> Result<(), CertError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(self.malformed(format!("{} unexpected bytes", self.rest.len())))
        }
    }

    fn malformed(&self, reason: String) -> CertError {
        CertError::Malformed {
            what: self.what.into(),
            reason,
        }
    }
}

fn malformed_der(what: &str, e: der::Error) -> CertError {
    CertError::Malformed {
        what: what.into(),
        reason: e.to_string(),
    }
}

/// Format a DER-encoded name as RFC 4514 text.
fn name_text(raw: &[u8]) -> String {
    X509Name::from_der(raw).map_or_else(|_| hex::encode(raw), |(_, name)| name.to_string())
}

fn strip_leading_zeros(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[start..]
}

/// How revocation is to be checked along a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    /// Every non-root certificate must be covered by a current CRL from its issuer.
    Required,
    /// CRLs are checked where supplied (AMD publishes ARK/ASK CRLs only online).
    IfPresent,
}

/// Verify `chain` (leaf first, root last) at `now`: validity of every certificate, each
/// signature by the next, CA flags, the root self-issued and pinned by `anchor`, and revocation
/// of every non-root certificate against `crls` (each CRL verified and current).
pub fn verify_chain(
    chain: &[Cert],
    anchor: &TrustAnchor,
    now: OffsetDateTime,
    crls: &[Crl],
    revocation: Revocation,
) -> Result<(), CertError> {
    let root = chain.last().ok_or(CertError::EmptyChain)?;
    for cert in chain {
        cert.check_validity(now)?;
        cert.check_critical_extensions()?;
    }
    for pair in chain.windows(2) {
        let (cert, issuer) = (&pair[0], &pair[1]);
        if !cert.is_issued_by_name(issuer) {
            return Err(CertError::IssuerMismatch {
                subject: cert.subject(),
                expected: cert.issuer(),
                actual: issuer.subject(),
            });
        }
        if !issuer.is_ca {
            return Err(CertError::NotCa {
                subject: issuer.subject(),
            });
        }
        cert.verify_signed_by(issuer)?;
        check_revocation(cert, issuer, crls, now, revocation)?;
    }
    // The root is trusted because its key is pinned, not because it signs itself: checking the
    // self-signature would add a signature verification and no assurance (RFC 5280 §6.1).
    if !root.is_issued_by_name(root) {
        return Err(CertError::NotSelfSigned {
            subject: root.subject(),
        });
    }
    if !anchor.trusts(root) {
        return Err(CertError::UntrustedRoot {
            subject: root.subject(),
        });
    }
    Ok(())
}

fn check_revocation(
    cert: &Cert,
    issuer: &Cert,
    crls: &[Crl],
    now: OffsetDateTime,
    revocation: Revocation,
) -> Result<(), CertError> {
    let mut covered = false;
    for crl in crls.iter().filter(|c| c.is_issued_by_name(issuer)) {
        crl.verify_signed_by(issuer)?;
        crl.check_current(now)?;
        if crl.revokes(cert) {
            return Err(CertError::Revoked {
                subject: cert.subject(),
                serial: hex::encode(cert.serial()),
                crl_issuer: crl.issuer(),
            });
        }
        covered = true;
    }
    if !covered && revocation == Revocation::Required {
        return Err(CertError::CrlMissing {
            issuer: issuer.subject(),
        });
    }
    Ok(())
}

enum VerifyFail {
    Unsupported,
    Bad,
}

fn verify_signature(
    signer: &Cert,
    alg: SigAlg,
    message: &[u8],
    sig: &[u8],
) -> Result<(), VerifyFail> {
    let algorithm: &dyn VerificationAlgorithm = match (alg, signer.key_kind) {
        (SigAlg::EcdsaSha256, KeyKind::EcP256) => &signature::ECDSA_P256_SHA256_ASN1,
        (SigAlg::EcdsaSha256Fixed, KeyKind::EcP256) => &signature::ECDSA_P256_SHA256_FIXED,
        (SigAlg::EcdsaSha384, KeyKind::EcP256) => &signature::ECDSA_P256_SHA384_ASN1,
        (SigAlg::EcdsaSha256, KeyKind::EcP384) => &signature::ECDSA_P384_SHA256_ASN1,
        (SigAlg::EcdsaSha384, KeyKind::EcP384) => &signature::ECDSA_P384_SHA384_ASN1,
        (SigAlg::RsaPssSha384, KeyKind::Rsa) => &signature::RSA_PSS_2048_8192_SHA384,
        (SigAlg::RsaPssSha256, KeyKind::Rsa) => &signature::RSA_PSS_2048_8192_SHA256,
        (SigAlg::RsaPkcs1Sha256, KeyKind::Rsa) => &signature::RSA_PKCS1_2048_8192_SHA256,
        (SigAlg::RsaPkcs1Sha384, KeyKind::Rsa) => &signature::RSA_PKCS1_2048_8192_SHA384,
        _ => return Err(VerifyFail::Unsupported),
    };
    if signer.key_kind == KeyKind::Rsa {
        // Each RSA key (AMD's ARK and ASK) checks one signature per chain, and parsing one for
        // reuse costs more than the check's own parse.
        return signature::UnparsedPublicKey::new(algorithm, signer.public_key())
            .verify(message, sig)
            .map_err(|_| VerifyFail::Bad);
    }
    if let Some((parsed_for, key)) = signer.parsed_key.0.get()
        && *parsed_for == alg
    {
        return key.verify_sig(message, sig).map_err(|_| VerifyFail::Bad);
    }
    let key = signature::ParsedPublicKey::new(algorithm, signer.public_key())
        .map_err(|_| VerifyFail::Bad)?;
    let verified = key.verify_sig(message, sig).map_err(|_| VerifyFail::Bad);
    let _ = signer.parsed_key.0.set((alg, key));
    verified
}

/// Accept RSASSA-PSS only with matching hash and MGF1 hash and a salt as long as the hash,
/// which is what aws-lc-rs verifies and what AMD issues.
fn pss_alg(alg: &AlgorithmIdentifier<'_>) -> Option<SigAlg> {
    let SignatureAlgorithm::RSASSA_PSS(params) = SignatureAlgorithm::try_from(alg).ok()? else {
        return None;
    };
    let hash = params.hash_algorithm_oid();
    let mgf_hash = params.mask_gen_algorithm().ok()?.hash;
    if *hash != mgf_hash {
        return None;
    }
    match params.salt_length() {
        48 if *hash == OID_NIST_HASH_SHA384 => Some(SigAlg::RsaPssSha384),
        32 if *hash == OID_NIST_HASH_SHA256 => Some(SigAlg::RsaPssSha256),
        _ => None,
    }
}
