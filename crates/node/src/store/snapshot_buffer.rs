//! The in-memory byte buffer openraft streams snapshots through, with a hard
//! size bound so a peer can never make a replica buffer without limit.

use std::io::{self, Cursor, SeekFrom};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};

/// Largest snapshot a replica builds or accepts: the snapshot image bound,
/// derived from the governance crate's `limits::MAX_SNAPSHOT_BYTES` (see
/// `store::machine::MAX_SNAPSHOT_IMAGE_BYTES`), so the buffer, the image
/// decoder and the governance decoder all refuse at the same size. The
/// governance state lives in memory, so its snapshot does too.
pub const MAX_SNAPSHOT_BYTES: usize = crate::checkpoint::MAX_CERTIFIED_IMAGE_BYTES;

/// Snapshot bytes being built, sent or received.
#[derive(Debug, Default)]
pub struct SnapshotBuffer {
    cursor: Cursor<Vec<u8>>,
}

impl SnapshotBuffer {
    pub fn new() -> Self {
        Self::default()
    }

    /// A buffer holding `bytes`, positioned at the start.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self {
            cursor: Cursor::new(bytes),
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.cursor.get_ref()
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.cursor.into_inner()
    }
}

impl AsyncRead for SnapshotBuffer {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.cursor).poll_read(cx, buf)
    }
}

impl AsyncWrite for SnapshotBuffer {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let end = (self.cursor.position() as usize).saturating_add(buf.len());
        if end > MAX_SNAPSHOT_BYTES {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("snapshot would grow to {end} bytes, above MAX_SNAPSHOT_BYTES = {MAX_SNAPSHOT_BYTES}"),
            )));
        }
        Pin::new(&mut self.cursor).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.cursor).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.cursor).poll_shutdown(cx)
    }
}

impl AsyncSeek for SnapshotBuffer {
    fn start_seek(mut self: Pin<&mut Self>, position: SeekFrom) -> io::Result<()> {
        Pin::new(&mut self.cursor).start_seek(position)
    }

    fn poll_complete(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        Pin::new(&mut self.cursor).poll_complete(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

    #[tokio::test]
    async fn writes_reads_and_seeks_like_a_file() {
        let mut buf = SnapshotBuffer::new();
        buf.write_all(b"hello world").await.expect("write");
        buf.seek(SeekFrom::Start(6)).await.expect("seek");
        let mut out = String::new();
        buf.read_to_string(&mut out).await.expect("read");
        assert_eq!(out, "world");
        assert_eq!(buf.as_bytes(), b"hello world");
    }

    #[tokio::test]
    async fn refuses_to_grow_past_the_limit() {
        let mut buf = SnapshotBuffer::new();
        buf.seek(SeekFrom::Start(MAX_SNAPSHOT_BYTES as u64 - 2))
            .await
            .expect("seek");
        let err = buf.write_all(b"abc").await.expect_err("must refuse");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("MAX_SNAPSHOT_BYTES"), "{err}");
    }
}
