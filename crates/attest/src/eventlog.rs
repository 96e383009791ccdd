//! TDX CCEL event log (TCG2 crypto-agile format) parsing and replay to RTMR values.
//!
//! The first entry is a SHA-1-format `TCG_PCR_EVENT` carrying the `Spec ID Event03` header,
//! which lists the digest algorithms and sizes; every later entry is a `TCG_PCR_EVENT2`.
//! CC measurement register index 1..=4 is RTMR0..3 (index 0 is MRTD, which is not replayed).
//! The log area is padded; parsing stops at the first empty or padding entry.

use serde::Serialize;

use crate::crypto::sha384;
use crate::hexser;

/// TPM_ALG_SHA384, the algorithm TDX extends RTMRs with.
pub const TPM_ALG_SHA384: u16 = 0x000C;
/// EV_NO_ACTION: informational, never extended.
const EV_NO_ACTION: u32 = 0x3;

/// Why an event log could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventLogError {
    /// An entry runs past the end of the log.
    #[error("the event log is truncated at offset {offset}")]
    Truncated {
        /// Where the entry starts.
        offset: usize,
    },
    /// The first entry is not the crypto-agile Spec ID event.
    #[error("the event log does not start with a TCG2 crypto-agile Spec ID event")]
    NotCryptoAgile,
    /// An entry uses an algorithm the header did not declare.
    #[error(
        "event at offset {offset} uses digest algorithm {algorithm:#06x}, which the log header does not declare"
    )]
    UnknownAlgorithm {
        /// Where the entry starts.
        offset: usize,
        /// The algorithm ID.
        algorithm: u16,
    },
    /// The replayed RTMRs differ from the quote's.
    #[error(
        "the event log does not replay to the quote's RTMRs: the log was altered or belongs to another TD"
    )]
    RtmrMismatch,
}

/// One measured event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// CC measurement register index (1..=4 is RTMR0..3).
    pub mr_index: u32,
    /// TCG event type.
    pub event_type: u32,
    /// Digests, by algorithm ID.
    pub digests: Vec<Digest>,
    /// The event data.
    #[serde(with = "hexser")]
    pub data: Vec<u8>,
}

/// One digest of an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Digest {
    /// TPM algorithm ID.
    pub algorithm: u16,
    /// The digest.
    #[serde(with = "hexser")]
    pub value: Vec<u8>,
}

/// A parsed event log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventLog {
    /// Declared algorithms and digest sizes.
    pub algorithms: Vec<(u16, u16)>,
    /// Events after the header.
    pub events: Vec<Event>,
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, start: usize) -> Result<&'a [u8], EventLogError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or(EventLogError::Truncated { offset: start })?;
        let out = &self.b[self.pos..end];
        self.pos = end;
        Ok(out)
    }
    fn u16(&mut self, start: usize) -> Result<u16, EventLogError> {
        let b = self.take(2, start)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, start: usize) -> Result<u32, EventLogError> {
        let b = self.take(4, start)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

impl EventLog {
    /// Parse a CCEL log area.
    pub fn parse(bytes: &[u8]) -> Result<Self, EventLogError> {
        let mut c = Cursor { b: bytes, pos: 0 };
        let algorithms = parse_header(&mut c)?;
        let mut events = Vec::new();
        while c.pos + 8 <= bytes.len() {
            let start = c.pos;
            let mr_index = c.u32(start)?;
            let event_type = c.u32(start)?;
            if mr_index == u32::MAX || (mr_index == 0 && event_type == 0) {
                break;
            }
            let count = c.u32(start)?;
            let mut digests = Vec::new();
            for _ in 0..count {
                let algorithm = c.u16(start)?;
                let size = algorithms
                    .iter()
                    .find(|(a, _)| *a == algorithm)
                    .map(|(_, s)| usize::from(*s))
                    .ok_or(EventLogError::UnknownAlgorithm {
                        offset: start,
                        algorithm,
                    })?;
                digests.push(Digest {
                    algorithm,
                    value: c.take(size, start)?.to_vec(),
                });
            }
            let len = c.u32(start)? as usize;
            let data = c.take(len, start)?.to_vec();
            events.push(Event {
                mr_index,
                event_type,
                digests,
                data,
            });
        }
        Ok(Self { algorithms, events })
    }

    /// Replay the SHA-384 digests into RTMR0..3, starting from zero.
    pub fn replay(&self) -> [[u8; 48]; 4] {
        let mut rtmr = [[0u8; 48]; 4];
        for event in &self.events {
            let Some(slot) = (event.mr_index as usize).checked_sub(1).filter(|&i| i < 4) else {
                continue;
            };
            if event.event_type == EV_NO_ACTION {
                continue;
            }
            if let Some(d) = event.digests.iter().find(|d| d.algorithm == TPM_ALG_SHA384) {
                rtmr[slot] = sha384(&[&rtmr[slot][..], &d.value].concat());
            }
        }
        rtmr
    }
}

/// The SHA-1-format first entry: `Spec ID Event03` and the algorithm table.
fn parse_header(c: &mut Cursor<'_>) -> Result<Vec<(u16, u16)>, EventLogError> {
    let _mr_index = c.u32(0)?;
    let event_type = c.u32(0)?;
    let _sha1 = c.take(20, 0)?;
    let len = c.u32(0)? as usize;
    let event = c.take(len, 0)?;
    if event_type != EV_NO_ACTION || !event.starts_with(b"Spec ID Event03\0") {
        return Err(EventLogError::NotCryptoAgile);
    }
    let mut h = Cursor { b: event, pos: 24 };
    let count = h.u32(0)?;
    (0..count).map(|_| Ok((h.u16(0)?, h.u16(0)?))).collect()
}

/// The ACPI CCEL table: where the log lives and which CC type wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CcelTable {
    /// CC type (2 = TDX).
    pub cc_type: u8,
    /// CC subtype.
    pub cc_subtype: u8,
    /// Log area minimum length.
    pub log_area_min_len: u64,
    /// Log area start address.
    pub log_area_start: u64,
}

impl CcelTable {
    /// Parse the 56-byte ACPI table.
    pub fn parse(bytes: &[u8]) -> Result<Self, EventLogError> {
        if bytes.len() < 56 || !bytes.starts_with(b"CCEL") {
            return Err(EventLogError::Truncated { offset: 0 });
        }
        let u64_at = |o: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[o..o + 8]);
            u64::from_le_bytes(b)
        };
        Ok(Self {
            cc_type: bytes[36],
            cc_subtype: bytes[37],
            log_area_min_len: u64_at(40),
            log_area_start: u64_at(48),
        })
    }
}
