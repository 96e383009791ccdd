//! Certificates and CRLs in any encoding: parsing must never panic, and a certificate or CRL
//! that both x509-parser and our lazy readers accept must read the same through both. (Ours are
//! the stricter: x509-parser ignores bytes left inside the TBSCertList, skips a revoked list it
//! cannot parse, and does not compare a certificate's two signature algorithms.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use x509_parser::prelude::FromDer as _;

fuzz_target!(|data: &[u8]| {
    let _ = attest::x509::Cert::from_der_or_pem(data);
    let _ = attest::x509::parse_pem_chain(data);
    let _ = attest::x509::Crl::parse(data);
    if let (Ok((_, theirs)), Ok(ours)) = (
        x509_parser::certificate::X509Certificate::from_der(data),
        attest::x509::Cert::from_der(data),
    ) {
        let tbs = &theirs.tbs_certificate;
        assert_eq!(ours.tbs(), tbs.as_ref());
        assert_eq!(ours.serial(), tbs.raw_serial());
        assert_eq!(ours.not_before, tbs.validity.not_before.to_datetime());
        assert_eq!(ours.not_after, tbs.validity.not_after.to_datetime());
        assert_eq!(ours.spki_der(), tbs.subject_pki.raw);
        assert_eq!(ours.signature(), theirs.signature_value.data.as_ref());
        let values: Vec<&[u8]> = tbs.extensions().iter().map(|e| e.value).collect();
        let our_values: Vec<&[u8]> = ours.extensions().map(|e| e.value).collect();
        assert_eq!(our_values, values);
    }
    if let (Ok((_, theirs)), Ok(ours)) = (
        x509_parser::revocation_list::CertificateRevocationList::from_der(data),
        attest::x509::Crl::from_der(data),
    ) {
        let tbs = &theirs.tbs_cert_list;
        assert_eq!(ours.this_update, tbs.this_update.to_datetime());
        assert_eq!(ours.next_update, tbs.next_update.map(|t| t.to_datetime()));
        let serials: Vec<&[u8]> = tbs
            .revoked_certificates
            .iter()
            .map(|r| r.raw_serial())
            .collect();
        assert_eq!(ours.revoked_serials().collect::<Vec<_>>(), serials);
    }
});
