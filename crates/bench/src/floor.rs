//! The primitive floor: the signature verifications every verifier must do, timed in the same
//! run as the verifiers so that ratios compare like with like.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    self, ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair,
    KeyPair as _,
};

/// One signature ready to be verified again and again.
pub(crate) struct Signed {
    algorithm: &'static signature::EcdsaVerificationAlgorithm,
    public: Vec<u8>,
    message: Vec<u8>,
    signature: Vec<u8>,
}

impl Signed {
    fn new(
        signing: &'static signature::EcdsaSigningAlgorithm,
        algorithm: &'static signature::EcdsaVerificationAlgorithm,
        len: usize,
    ) -> anyhow::Result<Self> {
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::generate(signing).map_err(|_| anyhow::anyhow!("keygen"))?;
        let message = vec![0x5a; len];
        let signature = key
            .sign(&rng, &message)
            .map_err(|_| anyhow::anyhow!("sign"))?;
        Ok(Self {
            algorithm,
            public: key.public_key().as_ref().to_vec(),
            message,
            signature: signature.as_ref().to_vec(),
        })
    }

    /// One verification.
    pub(crate) fn verify(&self) -> Result<(), aws_lc_rs::error::Unspecified> {
        signature::UnparsedPublicKey::new(self.algorithm, &self.public)
            .verify(&self.message, &self.signature)
    }
}

/// ECDSA-P256-SHA256 over 384 bytes (a DCAP quote body's size).
pub(crate) fn p256() -> anyhow::Result<Signed> {
    Signed::new(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        &signature::ECDSA_P256_SHA256_FIXED,
        384,
    )
}

/// ECDSA-P384-SHA384 over 672 bytes (the signed part of an SNP report).
pub(crate) fn p384() -> anyhow::Result<Signed> {
    Signed::new(
        &ECDSA_P384_SHA384_FIXED_SIGNING,
        &signature::ECDSA_P384_SHA384_FIXED,
        0x2A0,
    )
}

/// The signatures one DCAP verification rests on, each with its real signed bytes, signer key
/// and signature, read from the quote and collateral with x509-parser (not with our code): the
/// floor no verifier can go below, hashing of the real messages included.
pub(crate) struct DcapSignatures {
    /// In verification order.
    items: Vec<OneSignature>,
}

/// One signature: who signed what.
struct OneSignature {
    algorithm: &'static signature::EcdsaVerificationAlgorithm,
    key: Vec<u8>,
    message: Vec<u8>,
    signature: Vec<u8>,
}

impl OneSignature {
    fn new(
        algorithm: &'static signature::EcdsaVerificationAlgorithm,
        key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Self {
        Self {
            algorithm,
            key: key.to_vec(),
            message: message.to_vec(),
            signature: signature.to_vec(),
        }
    }
}

impl DcapSignatures {
    /// All nine (chains, CRLs, collateral, QE report, quote), or the two a cached verification
    /// repeats (QE report and quote).
    pub(crate) fn read(quote: &[u8], collateral_json: &[u8], all: bool) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        use x509_parser::prelude::*;
        let quote = attest::dcap::Quote::parse(quote)?;
        let fixed = &signature::ECDSA_P256_SHA256_FIXED;
        let asn1 = &signature::ECDSA_P256_SHA256_ASN1;
        let pck_chain = pem_certs(&quote.certification.pck_chain_pem)?;
        let [pck_leaf, pck_ca, _] = pck_chain.as_slice() else {
            anyhow::bail!("the PCK chain is not [leaf, CA, root]");
        };
        let cert = &quote.certification;
        let mut items = vec![
            OneSignature::new(
                fixed,
                &pck_leaf.key,
                &cert.qe_report_raw,
                &cert.qe_report_signature,
            ),
            OneSignature::new(
                fixed,
                &[&[4u8][..], &quote.attestation_key].concat(),
                &quote.signed,
                &quote.signature,
            ),
        ];
        if !all {
            return Ok(Self { items });
        }
        let json: serde_json::Value = serde_json::from_slice(collateral_json)?;
        let field = |k: &str| -> anyhow::Result<&str> {
            json.get(k)
                .and_then(|v| v.as_str())
                .with_context(|| format!("collateral lacks {k}"))
        };
        let tcb_chain = pem_certs(field("tcb_info_issuer_chain")?.as_bytes())?;
        let [tcb_signer, root] = tcb_chain.as_slice() else {
            anyhow::bail!("the TCB signing chain is not [signer, root]");
        };
        for (text, sig) in [
            ("tcb_info", "tcb_info_signature"),
            ("qe_identity", "qe_identity_signature"),
        ] {
            items.push(OneSignature::new(
                fixed,
                &tcb_signer.key,
                field(text)?.as_bytes(),
                &hex::decode(field(sig)?)?,
            ));
        }
        for (signed, signer) in [(tcb_signer, root), (pck_ca, root), (pck_leaf, pck_ca)] {
            items.push(OneSignature::new(
                asn1,
                &signer.key,
                &signed.tbs,
                &signed.signature,
            ));
        }
        for (crl, signer) in [("pck_crl", pck_ca), ("root_ca_crl", root)] {
            let der = hex::decode(field(crl)?)?;
            let (_, crl) = CertificateRevocationList::from_der(&der)?;
            items.push(OneSignature::new(
                asn1,
                &signer.key,
                crl.tbs_cert_list.as_ref(),
                &crl.signature_value.data,
            ));
        }
        Ok(Self { items })
    }

    /// How many signatures one pass verifies.
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// Verify every signature once.
    pub(crate) fn verify(&self) -> Result<(), aws_lc_rs::error::Unspecified> {
        for one in &self.items {
            signature::UnparsedPublicKey::new(one.algorithm, &one.key)
                .verify(&one.message, &one.signature)?;
        }
        Ok(())
    }
}

/// What the floor needs of one certificate.
struct SignedCert {
    tbs: Vec<u8>,
    signature: Vec<u8>,
    key: Vec<u8>,
}

fn pem_certs(pem: &[u8]) -> anyhow::Result<Vec<SignedCert>> {
    use x509_parser::prelude::*;
    let mut out = Vec::new();
    for block in Pem::iter_from_buffer(pem) {
        let block = block?;
        let (_, cert) = X509Certificate::from_der(&block.contents)?;
        out.push(SignedCert {
            tbs: cert.tbs_certificate.as_ref().to_vec(),
            signature: cert.signature_value.data.to_vec(),
            key: cert.public_key().subject_public_key.data.to_vec(),
        });
    }
    Ok(out)
}
