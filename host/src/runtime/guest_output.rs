//! A guest's stdout and stderr: forwarded line by line to the host's tracing logs (target
//! `guest`), tagged with the component (its deployment id) and the stream. Lines are cut at
//! [`MAX_LINE`] bytes and a store may print [`MAX_TOTAL`] bytes; beyond that the output is dropped
//! (once, with a warning) so a guest cannot flood the host's logs. Writes never fail or block.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Longest line forwarded; the rest of a longer line is cut.
const MAX_LINE: usize = 4096;
/// Output one store may print in all.
const MAX_TOTAL: usize = 1 << 20;

/// One output stream of one store (cloned for each handle the guest opens).
#[derive(Clone)]
pub struct GuestOutput {
    inner: Arc<Mutex<Lines>>,
}

struct Lines {
    component: Arc<str>,
    stream: &'static str,
    pending: Vec<u8>,
    total: usize,
    dropped: bool,
}

impl GuestOutput {
    pub fn new(component: Arc<str>, stream: &'static str) -> Self {
        GuestOutput {
            inner: Arc::new(Mutex::new(Lines {
                component,
                stream,
                pending: Vec::new(),
                total: 0,
                dropped: false,
            })),
        }
    }

    fn write_bytes(&self, bytes: &[u8]) {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(bytes);
    }
}

impl Lines {
    fn push(&mut self, bytes: &[u8]) {
        let room = MAX_TOTAL.saturating_sub(self.total);
        if bytes.len() > room && !self.dropped {
            self.dropped = true;
            tracing::warn!(target: "guest", component = %self.component, stream = self.stream,
                "guest output over {MAX_TOTAL} bytes; the rest is dropped");
        }
        let bytes = &bytes[..bytes.len().min(room)];
        self.total += bytes.len();
        for &byte in bytes {
            if byte == b'\n' {
                self.emit();
            } else if self.pending.len() < MAX_LINE {
                self.pending.push(byte);
            }
        }
    }

    fn emit(&mut self) {
        let line = String::from_utf8_lossy(&self.pending);
        let line = line.trim_end_matches('\r');
        tracing::info!(target: "guest", component = %self.component, stream = self.stream, "{line}");
        self.pending.clear();
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            self.emit();
        }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.write_bytes(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 << 10)
    }
}

#[async_trait::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.write_bytes(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_cut_and_output_is_capped() {
        let out = GuestOutput::new("c".into(), "stdout");
        out.write_bytes(b"hello\nwor");
        out.write_bytes(&vec![b'x'; MAX_LINE * 2]);
        {
            let lines = out.inner.lock().unwrap();
            assert_eq!(lines.pending.len(), MAX_LINE);
            assert_eq!(lines.total, 6 + 3 + MAX_LINE * 2);
        }
        out.write_bytes(b"\n");
        assert!(out.inner.lock().unwrap().pending.is_empty());
        out.write_bytes(&vec![b'y'; MAX_TOTAL]);
        let lines = out.inner.lock().unwrap();
        assert!(lines.dropped);
        assert_eq!(lines.total, MAX_TOTAL);
    }
}
