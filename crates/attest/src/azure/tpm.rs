//! The TPM 2.0 quote (`TPMS_ATTEST` of type `TPM_ST_ATTEST_QUOTE`), big-endian TPM encoding.

use serde::Serialize;

use super::AzureError;
use crate::crypto::sha256;
use crate::hexser;

const TPM_GENERATED_VALUE: u32 = 0xff54_4347;
const TPM_ST_ATTEST_QUOTE: u16 = 0x8018;
const TPM_ALG_SHA256: u16 = 0x000B;

/// A TPM quote with its signature and the PCR values it covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TpmQuote {
    /// The signed `TPMS_ATTEST` bytes.
    #[serde(with = "hexser")]
    pub message: Vec<u8>,
    /// The RSASSA-PKCS1-v1_5 signature.
    #[serde(with = "hexser")]
    pub signature: Vec<u8>,
    /// extraData: the verifier's nonce.
    #[serde(with = "hexser")]
    pub extra_data: Vec<u8>,
    /// Selected PCR indices of the SHA-256 bank, in selection order.
    pub selected: Vec<u8>,
    /// The quote's PCR digest.
    #[serde(with = "hexser")]
    pub pcr_digest: Vec<u8>,
    /// The PCR values supplied with the quote (PCR0 first).
    #[serde(skip)]
    pub pcrs: Vec<[u8; 32]>,
}

fn bad(reason: impl Into<String>) -> AzureError {
    AzureError::Tpm {
        reason: reason.into(),
    }
}

struct Be<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Be<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], AzureError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or_else(|| bad("truncated"))?;
        let out = &self.b[self.pos..end];
        self.pos = end;
        Ok(out)
    }
    fn u16(&mut self) -> Result<u16, AzureError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, AzureError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn sized(&mut self) -> Result<&'a [u8], AzureError> {
        let n = usize::from(self.u16()?);
        self.take(n)
    }
}

impl TpmQuote {
    /// Parse `message` (TPMS_ATTEST) and keep `signature` and `pcrs` beside it.
    pub fn parse(
        message: &[u8],
        signature: &[u8],
        pcrs: Vec<[u8; 32]>,
    ) -> Result<Self, AzureError> {
        let mut r = Be { b: message, pos: 0 };
        if r.u32()? != TPM_GENERATED_VALUE {
            return Err(bad("magic is not TPM_GENERATED_VALUE"));
        }
        if r.u16()? != TPM_ST_ATTEST_QUOTE {
            return Err(bad("not a quote (type is not TPM_ST_ATTEST_QUOTE)"));
        }
        let _qualified_signer = r.sized()?;
        let extra_data = r.sized()?.to_vec();
        let _clock_info = r.take(17)?;
        let _firmware_version = r.take(8)?;
        let mut selected = Vec::new();
        for _ in 0..r.u32()? {
            let hash = r.u16()?;
            let size = usize::from(*r.take(1)?.first().unwrap_or(&0));
            let bitmap = r.take(size)?;
            if hash != TPM_ALG_SHA256 {
                continue;
            }
            for (byte, bits) in bitmap.iter().enumerate() {
                for bit in 0..8 {
                    if bits & (1 << bit) != 0 {
                        selected.push(u8::try_from(byte * 8 + bit).unwrap_or(u8::MAX));
                    }
                }
            }
        }
        let pcr_digest = r.sized()?.to_vec();
        Ok(Self {
            message: message.to_vec(),
            signature: signature.to_vec(),
            extra_data,
            selected,
            pcr_digest,
            pcrs,
        })
    }

    /// The PCR digest must be SHA-256 over the selected PCR values, in order.
    pub fn check_pcr_digest(&self) -> Result<(), AzureError> {
        let mut data = Vec::with_capacity(32 * self.selected.len());
        for &index in &self.selected {
            let pcr = self
                .pcrs
                .get(usize::from(index))
                .ok_or(AzureError::PcrDigest)?;
            data.extend(pcr);
        }
        if sha256(&data)[..] == self.pcr_digest[..] {
            Ok(())
        } else {
            Err(AzureError::PcrDigest)
        }
    }
}
