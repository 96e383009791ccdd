//! AMD SEV-SNP: attestation reports, VCEK/VLEK certificates, and their verification.
