//! The certificate table of an SNP extended report (GHCB specification): GUID-tagged entries
//! `{ guid[16], offset: u32, length: u32 }` ended by an all-zero entry, then the certificates.

use super::SnpError;

/// What a table entry holds, by its GUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertKind {
    /// The VCEK.
    Vcek,
    /// The VLEK.
    Vlek,
    /// The ASK.
    Ask,
    /// The ARK.
    Ark,
    /// Another GUID (kept raw).
    Other([u8; 16]),
}

const ENTRY_LEN: usize = 24;

/// GUIDs in their on-the-wire (EFI, mixed-endian) byte order.
const GUIDS: [(CertKind, [u8; 16]); 4] = [
    (
        CertKind::Vcek,
        guid(
            0x63da758d,
            0xe664,
            0x4564,
            [0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8, 0xac, 0xcd],
        ),
    ),
    (
        CertKind::Vlek,
        guid(
            0xa8074bc2,
            0xa25a,
            0x483e,
            [0xaa, 0xe6, 0x39, 0xc0, 0x45, 0xa0, 0xb8, 0xa1],
        ),
    ),
    (
        CertKind::Ask,
        guid(
            0x4ab7b379,
            0xbbac,
            0x4fe4,
            [0xa0, 0x2f, 0x05, 0xae, 0xf3, 0x27, 0xc7, 0x82],
        ),
    ),
    (
        CertKind::Ark,
        guid(
            0xc0b406a4,
            0xa803,
            0x4952,
            [0x97, 0x43, 0x3f, 0xb6, 0x01, 0x4c, 0xd0, 0xae],
        ),
    ),
];

const fn guid(a: u32, b: u16, c: u16, d: [u8; 8]) -> [u8; 16] {
    let a = a.to_le_bytes();
    let b = b.to_le_bytes();
    let c = c.to_le_bytes();
    [
        a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5], d[6],
        d[7],
    ]
}

fn kind_of(g: [u8; 16]) -> CertKind {
    GUIDS
        .iter()
        .find(|(_, known)| *known == g)
        .map_or(CertKind::Other(g), |(k, _)| *k)
}

fn guid_of(kind: CertKind) -> [u8; 16] {
    match kind {
        CertKind::Other(g) => g,
        known => GUIDS
            .iter()
            .find(|(k, _)| *k == known)
            .map_or([0; 16], |(_, g)| *g),
    }
}

fn bad(reason: &str) -> SnpError {
    SnpError::BadChain {
        reason: format!("certificate table: {reason}"),
    }
}

/// Parse a certificate table into `(kind, DER)` pairs.
pub fn parse(table: &[u8]) -> Result<Vec<(CertKind, Vec<u8>)>, SnpError> {
    let mut out = Vec::new();
    for entry in table.chunks(ENTRY_LEN) {
        let entry: &[u8; ENTRY_LEN] = entry.try_into().map_err(|_| bad("no terminating entry"))?;
        if entry.iter().all(|&b| b == 0) {
            return Ok(out);
        }
        let mut g = [0u8; 16];
        g.copy_from_slice(&entry[..16]);
        let offset = u32::from_le_bytes([entry[16], entry[17], entry[18], entry[19]]) as usize;
        let len = u32::from_le_bytes([entry[20], entry[21], entry[22], entry[23]]) as usize;
        let cert = table
            .get(offset..offset.saturating_add(len))
            .ok_or_else(|| bad("an entry points past the end"))?;
        out.push((kind_of(g), cert.to_vec()));
    }
    Err(bad("no terminating entry"))
}

/// Build a certificate table from `(kind, DER)` pairs.
pub fn build(certs: &[(CertKind, &[u8])]) -> Vec<u8> {
    let header = ENTRY_LEN * (certs.len() + 1);
    let mut table = Vec::new();
    let mut body: Vec<u8> = Vec::new();
    for (kind, der) in certs {
        let offset = header + body.len();
        table.extend(guid_of(*kind));
        table.extend(u32::try_from(offset).unwrap_or(u32::MAX).to_le_bytes());
        table.extend(u32::try_from(der.len()).unwrap_or(u32::MAX).to_le_bytes());
        body.extend(*der);
    }
    table.extend([0u8; ENTRY_LEN]);
    table.extend(body);
    table
}
