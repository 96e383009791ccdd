//! The ocicrypt layer cipher, streaming: AES-256-CTR, and HMAC-SHA256 of the ciphertext under
//! the same key. Decryption checks the HMAC when the ciphertext ends, and fails the read there
//! if it differs, so a reader that unpacks as it decrypts must keep what it unpacked
//! provisional until the end (the pull does: it unpacks into a staging directory).

use std::io::{self, Read};

use aws_lc_rs::cipher::{
    AES_256, DecryptionContext, EncryptionContext, StreamingDecryptingKey, StreamingEncryptingKey,
    UnboundCipherKey,
};
use aws_lc_rs::hmac;
use aws_lc_rs::iv::FixedLength;
use zeroize::Zeroizing;

use super::{AES_256_CTR_HMAC_SHA256, CryptError, PrivateOptions, PublicOptions};

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 16;
const CHUNK: usize = 256 << 10;

/// A layer's key and initial counter block.
pub struct LayerKey {
    key: Zeroizing<[u8; KEY_LEN]>,
    nonce: [u8; NONCE_LEN],
}

impl std::fmt::Debug for LayerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LayerKey(..)")
    }
}

impl LayerKey {
    /// A fresh random key and nonce.
    pub fn generate() -> Result<Self, CryptError> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let mut key = Zeroizing::new([0; KEY_LEN]);
        let mut nonce = [0; NONCE_LEN];
        aws_lc_rs::rand::SecureRandom::fill(&rng, key.as_mut_slice())
            .and_then(|()| aws_lc_rs::rand::SecureRandom::fill(&rng, &mut nonce))
            .map_err(|_| CryptError::Cipher)?;
        Ok(Self { key, nonce })
    }

    /// The key recipients unwrapped.
    pub fn from_private(options: &PrivateOptions) -> Result<Self, CryptError> {
        let bad = |reason: &str| CryptError::Malformed {
            what: "the private options",
            reason: reason.into(),
        };
        let key: [u8; KEY_LEN] = options
            .symkey
            .as_slice()
            .try_into()
            .map_err(|_| bad("the key is not 32 bytes"))?;
        let nonce = options
            .cipheroptions
            .get("nonce")
            .ok_or_else(|| bad("there is no nonce"))?
            .as_slice()
            .try_into()
            .map_err(|_| bad("the nonce is not 16 bytes"))?;
        Ok(Self {
            key: Zeroizing::new(key),
            nonce,
        })
    }

    /// The private options of a layer whose clear bytes have `digest`.
    pub fn private_options(&self, digest: &str) -> PrivateOptions {
        PrivateOptions {
            symkey: self.key.to_vec(),
            digest: digest.to_string(),
            cipheroptions: [("nonce".to_string(), self.nonce.to_vec())].into(),
        }
    }

    /// Encrypt what `inner` reads.
    pub fn encrypt<R: Read>(&self, inner: R) -> Result<LayerCipher<R>, CryptError> {
        let key = self.cipher_key()?;
        let cipher = StreamingEncryptingKey::less_safe_ctr(
            key,
            EncryptionContext::Iv128(FixedLength::from(self.nonce)),
        )
        .map_err(|_| CryptError::Cipher)?;
        Ok(LayerCipher::new(
            inner,
            Mode::Encrypt(Some(cipher)),
            self.hmac_key(),
        ))
    }

    /// Decrypt what `inner` reads, checking the HMAC of `public` at its end.
    pub fn decrypt<R: Read>(
        &self,
        inner: R,
        public: &PublicOptions,
    ) -> Result<LayerCipher<R>, CryptError> {
        if public.cipher != AES_256_CTR_HMAC_SHA256 {
            return Err(CryptError::UnsupportedCipher(public.cipher.clone()));
        }
        let key = self.cipher_key()?;
        let cipher = StreamingDecryptingKey::ctr(
            key,
            DecryptionContext::Iv128(FixedLength::from(self.nonce)),
        )
        .map_err(|_| CryptError::Cipher)?;
        let expected = public.hmac.clone();
        Ok(LayerCipher::new(
            inner,
            Mode::Decrypt(Some(cipher), expected),
            self.hmac_key(),
        ))
    }

    fn cipher_key(&self) -> Result<UnboundCipherKey, CryptError> {
        UnboundCipherKey::new(&AES_256, self.key.as_slice()).map_err(|_| CryptError::Cipher)
    }

    fn hmac_key(&self) -> hmac::Context {
        hmac::Context::with_key(&hmac::Key::new(hmac::HMAC_SHA256, self.key.as_slice()))
    }
}

enum Mode {
    Encrypt(Option<StreamingEncryptingKey>),
    Decrypt(Option<StreamingDecryptingKey>, Vec<u8>),
}

/// A reader that encrypts or decrypts another, computing the HMAC of the ciphertext.
pub struct LayerCipher<R> {
    inner: R,
    mode: Mode,
    hmac: Option<hmac::Context>,
    tag: Option<Vec<u8>>,
    input: Vec<u8>,
    output: Vec<u8>,
    pending: std::ops::Range<usize>,
}

impl<R> std::fmt::Debug for LayerCipher<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayerCipher")
            .field("done", &self.tag.is_some())
            .finish_non_exhaustive()
    }
}

impl<R: Read> LayerCipher<R> {
    fn new(inner: R, mode: Mode, hmac: hmac::Context) -> Self {
        Self {
            inner,
            mode,
            hmac: Some(hmac),
            tag: None,
            input: vec![0; CHUNK],
            output: vec![0; CHUNK + NONCE_LEN],
            pending: 0..0,
        }
    }

    /// The HMAC of the ciphertext, once the input has ended: what an encrypted layer's public
    /// options carry.
    pub fn hmac(&self) -> Option<&[u8]> {
        self.tag.as_deref()
    }

    /// Cipher the next chunk of input into `output`; `false` at the end of the input.
    fn fill(&mut self) -> io::Result<bool> {
        if self.tag.is_some() {
            return Ok(false);
        }
        let n = self.inner.read(&mut self.input)?;
        let failed = |_| io::Error::other(CryptError::Cipher);
        let produced = if n == 0 {
            match &mut self.mode {
                Mode::Encrypt(key) => match key.take() {
                    Some(key) => key
                        .finish(&mut self.output)
                        .map_err(failed)?
                        .1
                        .written()
                        .len(),
                    None => 0,
                },
                Mode::Decrypt(key, _) => match key.take() {
                    Some(key) => key
                        .finish(&mut self.output)
                        .map_err(failed)?
                        .written()
                        .len(),
                    None => 0,
                },
            }
        } else {
            let input = &self.input[..n];
            match &mut self.mode {
                Mode::Encrypt(Some(key)) => key
                    .update(input, &mut self.output)
                    .map_err(failed)?
                    .written()
                    .len(),
                Mode::Decrypt(Some(key), _) => {
                    if let Some(hmac) = &mut self.hmac {
                        hmac.update(input);
                    }
                    key.update(input, &mut self.output)
                        .map_err(failed)?
                        .written()
                        .len()
                }
                _ => return Err(io::Error::other(CryptError::Cipher)),
            }
        };
        if let (Mode::Encrypt(_), Some(hmac)) = (&self.mode, &mut self.hmac) {
            hmac.update(&self.output[..produced]);
        }
        self.pending = 0..produced;
        if n == 0 {
            self.end()?;
        }
        Ok(n != 0 || produced != 0)
    }

    fn end(&mut self) -> io::Result<()> {
        let Some(hmac) = self.hmac.take() else {
            return Ok(());
        };
        let tag = hmac.sign().as_ref().to_vec();
        if let Mode::Decrypt(_, expected) = &self.mode
            && aws_lc_rs::constant_time::verify_slices_are_equal(&tag, expected).is_err()
        {
            return Err(io::Error::new(io::ErrorKind::InvalidData, CryptError::Hmac));
        }
        self.tag = Some(tag);
        Ok(())
    }
}

impl<R: Read> Read for LayerCipher<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pending.is_empty() {
            if !self.fill()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.output[self.pending.start..self.pending.start + n]);
        self.pending.start += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encrypt(key: &LayerKey, clear: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let mut reader = key.encrypt(clear).unwrap_or_else(|e| panic!("{e}"));
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap_or_default();
        (out, reader.hmac().unwrap_or_default().to_vec())
    }

    fn decrypt(key: &LayerKey, cipher: &[u8], hmac: &[u8]) -> io::Result<Vec<u8>> {
        let public = PublicOptions {
            cipher: AES_256_CTR_HMAC_SHA256.into(),
            hmac: hmac.to_vec(),
            cipheroptions: Default::default(),
        };
        let mut out = Vec::new();
        key.decrypt(cipher, &public)
            .map_err(io::Error::other)?
            .read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn ctr_and_hmac_match_the_primitives_and_catch_changes() {
        let key = LayerKey::generate().unwrap_or_else(|e| panic!("{e}"));
        let clear: Vec<u8> = (0..CHUNK * 2 + 1000).map(|i| (i % 251) as u8).collect();
        let (cipher, hmac) = encrypt(&key, &clear);
        assert_eq!(cipher.len(), clear.len());
        assert_ne!(cipher[..64], clear[..64]);
        // The HMAC is of the ciphertext, keyed with the layer key (as ocicrypt computes it).
        let expected = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, key.key.as_slice()),
            &cipher,
        );
        assert_eq!(hmac, expected.as_ref());
        assert_eq!(decrypt(&key, &cipher, &hmac).ok(), Some(clear.clone()));

        let mut flipped = cipher.clone();
        flipped[CHUNK + 5] ^= 1;
        let error = decrypt(&key, &flipped, &hmac).err().map(|e| e.to_string());
        assert_eq!(
            error.as_deref(),
            Some(CryptError::Hmac.to_string().as_str())
        );
        assert!(decrypt(&key, &cipher[..cipher.len() - 1], &hmac).is_err());

        let empty = encrypt(&key, &[]);
        assert_eq!(decrypt(&key, &empty.0, &empty.1).ok(), Some(vec![]));
    }
}
