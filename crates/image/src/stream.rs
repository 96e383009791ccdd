//! Readers for the pipelines: a registry response as a blocking reader (a task pulls its
//! chunks into a small bounded queue, so a slow consumer holds back the download instead of
//! buffering it), and a reader that hashes what passes through it.

use std::io::{self, Read};

use aws_lc_rs::digest::{Context, SHA256};
use bytes::Bytes;

/// Chunks in flight between the download and the reader.
const QUEUE: usize = 16;

/// A response body, read blocking (from a blocking thread, never from the runtime's).
#[derive(Debug)]
pub(crate) struct ResponseReader {
    chunks: tokio::sync::mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

impl ResponseReader {
    /// Start pulling `response`'s body on the runtime.
    pub(crate) fn spawn(mut response: reqwest::Response) -> Self {
        let (sender, chunks) = tokio::sync::mpsc::channel(QUEUE);
        tokio::spawn(async move {
            loop {
                let next = match response.chunk().await {
                    Ok(Some(chunk)) => Ok(chunk),
                    Ok(None) => return,
                    Err(e) => Err(io::Error::other(e)),
                };
                let failed = next.is_err();
                if sender.send(next).await.is_err() || failed {
                    return;
                }
            }
        });
        Self {
            chunks,
            current: Bytes::new(),
        }
    }
}

impl Read for ResponseReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                Some(chunk) => self.current = chunk?,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// A reader that hashes (SHA-256) and counts what passes through it.
pub(crate) struct Hashing<R> {
    inner: R,
    context: Context,
    size: u64,
}

impl<R> std::fmt::Debug for Hashing<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hashing").field("size", &self.size).finish()
    }
}

impl<R: Read> Hashing<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self {
            inner,
            context: Context::new(&SHA256),
            size: 0,
        }
    }

    /// `sha256:` of what was read, and how many bytes.
    pub(crate) fn finish(self) -> (String, u64) {
        let digest = format!("sha256:{}", hex::encode(self.context.finish()));
        (digest, self.size)
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.context.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}
