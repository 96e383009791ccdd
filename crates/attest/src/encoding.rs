//! Evidence and collateral arrive as raw bytes, hex text or base64 text; detect which and decode.

use base64::Engine as _;
use serde::Serialize;

/// How an input file was encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum InputEncoding {
    /// Raw bytes.
    Binary,
    /// Hexadecimal text (whitespace ignored).
    Hex,
    /// Standard base64 (padding optional, whitespace ignored).
    Base64,
    /// URL-safe base64 (padding optional, whitespace ignored).
    Base64Url,
}

impl std::fmt::Display for InputEncoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Binary => "binary",
            Self::Hex => "hex",
            Self::Base64 => "base64",
            Self::Base64Url => "base64url",
        })
    }
}

/// Decode `input` as hex or base64 text when it is entirely such text, else return it as binary.
///
/// Hex is tried before base64 because every hex string is also valid base64 alphabet; a hex
/// string of odd length is not hex. Binary structures (quotes, reports) never consist solely of
/// printable base64 characters in practice, because their headers contain zero bytes.
pub fn decode_input(input: &[u8]) -> (Vec<u8>, InputEncoding) {
    // Binary evidence fails this at its first header bytes, before anything is copied.
    if !looks_textual(input) {
        return (input.to_vec(), InputEncoding::Binary);
    }
    let text: Vec<u8> = input
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if text.is_empty() {
        return (input.to_vec(), InputEncoding::Binary);
    }
    let hex_text = text.strip_prefix(b"0x").unwrap_or(&text);
    if hex_text.len().is_multiple_of(2)
        && hex_text.iter().all(u8::is_ascii_hexdigit)
        && let Ok(bytes) = hex::decode(hex_text)
    {
        return (bytes, InputEncoding::Hex);
    }
    let unpadded: Vec<u8> = text.iter().copied().filter(|&b| b != b'=').collect();
    let engines = [
        (
            &base64::engine::general_purpose::STANDARD_NO_PAD,
            InputEncoding::Base64,
        ),
        (
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            InputEncoding::Base64Url,
        ),
    ];
    for (engine, encoding) in engines {
        if let Ok(bytes) = engine.decode(&unpadded) {
            return (bytes, encoding);
        }
    }
    (input.to_vec(), InputEncoding::Binary)
}

fn looks_textual(input: &[u8]) -> bool {
    input
        .iter()
        .all(|&b| b.is_ascii_graphic() || b.is_ascii_whitespace())
}

/// Decode base64 in either alphabet, padded or not (CoCo evidence mixes them).
pub fn decode_base64_any(text: &str) -> Option<Vec<u8>> {
    let trimmed: String = text
        .chars()
        .filter(|c| !c.is_ascii_whitespace() && *c != '=')
        .collect();
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(&trimmed)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&trimmed))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_each_encoding() {
        let raw = [0u8, 1, 2, 0xff, 0x10];
        assert_eq!(decode_input(&raw), (raw.to_vec(), InputEncoding::Binary));
        assert_eq!(
            decode_input(b"0001 02ff10\n"),
            (raw.to_vec(), InputEncoding::Hex)
        );
        assert_eq!(
            decode_input(b"AAEC/xA="),
            (raw.to_vec(), InputEncoding::Base64)
        );
        assert_eq!(
            decode_input(b"AAEC_xA"),
            (raw.to_vec(), InputEncoding::Base64Url)
        );
    }

    #[test]
    fn text_that_is_neither_stays_binary() {
        let (bytes, enc) = decode_input(b"not*base64!");
        assert_eq!(enc, InputEncoding::Binary);
        assert_eq!(bytes, b"not*base64!");
    }
}
