//! A response body read from a stored file: bytes already in the page cache are read on the
//! worker thread itself (a non-blocking `preadv2`), and only a read that would wait for the
//! disk goes to the blocking pool. A cached-file hit then costs no thread hand-off at all.

use std::fs::File;
use std::future::Future;
use std::io;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use actix_web::body::{BodySize, MessageBody};
use bytes::{Bytes, BytesMut};
use tokio::task::JoinHandle;

/// The most read (and held) at once per response: actix copies each chunk into its write
/// buffer, so this bounds a connection's memory while it streams a large file.
const CHUNK: u64 = 128 * 1024;

/// `len` bytes of `file` from `offset`. The file is a committed blob, so it never changes; if it
/// ends early anyway the body fails, which cuts the connection (never a short, complete answer).
pub struct FileBody {
    file: Arc<File>,
    offset: u64,
    remaining: u64,
    disk_read: Option<JoinHandle<io::Result<Bytes>>>,
}

impl FileBody {
    pub fn new(file: File, offset: u64, len: u64) -> Self {
        Self {
            file: Arc::new(file),
            offset,
            remaining: len,
            disk_read: None,
        }
    }

    fn advance(&mut self, chunk: Bytes) -> io::Result<Bytes> {
        if chunk.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "a stored file ended before its recorded size",
            ));
        }
        self.offset += chunk.len() as u64;
        self.remaining -= chunk.len() as u64;
        Ok(chunk)
    }
}

impl MessageBody for FileBody {
    type Error = io::Error;

    fn size(&self) -> BodySize {
        BodySize::Sized(self.remaining)
    }

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        let this = &mut *self;
        if let Some(read) = &mut this.disk_read {
            let chunk = ready!(Pin::new(read).poll(cx))
                .map_err(io::Error::other)
                .and_then(|chunk| chunk);
            this.disk_read = None;
            return Poll::Ready(Some(chunk.and_then(|chunk| this.advance(chunk))));
        }
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let want = this.remaining.min(CHUNK) as usize;
        match read_cached(&this.file, this.offset, want) {
            Ok(chunk) => Poll::Ready(Some(this.advance(chunk))),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let (file, offset) = (Arc::clone(&this.file), this.offset);
                this.disk_read = Some(tokio::task::spawn_blocking(move || read_at(&file, offset, want)));
                // Poll the read once now, so its completion wakes this task.
                self.poll_next(cx)
            }
            Err(e) => Poll::Ready(Some(Err(e))),
        }
    }
}

/// Up to `len` bytes at `offset` if the page cache holds them; `WouldBlock` if reading them
/// would wait for the disk.
#[cfg(target_os = "linux")]
fn read_cached(file: &File, offset: u64, len: usize) -> io::Result<Bytes> {
    let mut buf = BytesMut::zeroed(len);
    let read = rustix::io::preadv2(
        file,
        &mut [io::IoSliceMut::new(&mut buf)],
        offset,
        rustix::io::ReadWriteFlags::NOWAIT,
    )?;
    buf.truncate(read);
    Ok(buf.freeze())
}

/// Elsewhere every read may wait, so each goes to the blocking pool.
#[cfg(not(target_os = "linux"))]
fn read_cached(_file: &File, _offset: u64, _len: usize) -> io::Result<Bytes> {
    Err(io::ErrorKind::WouldBlock.into())
}

/// Up to `len` bytes at `offset`, waiting for the disk if need be (on the blocking pool).
fn read_at(file: &File, offset: u64, len: usize) -> io::Result<Bytes> {
    let mut buf = BytesMut::zeroed(len);
    let read = loop {
        match file.read_at(&mut buf, offset) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => break other?,
        }
    };
    buf.truncate(read);
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn collect(mut body: FileBody) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(chunk) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_next(cx)).await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }

    fn file_with(data: &[u8]) -> (tempfile::NamedTempFile, File) {
        let mut tmp = tempfile::NamedTempFile::new().expect("temp file");
        std::io::Write::write_all(&mut tmp, data).expect("write");
        let file = File::open(tmp.path()).expect("open");
        (tmp, file)
    }

    #[tokio::test]
    async fn reads_the_asked_part_in_chunks() {
        let data: Vec<u8> = (0..(3 * CHUNK as usize + 17)).map(|i| (i % 251) as u8).collect();
        let (_tmp, file) = file_with(&data);
        let body = FileBody::new(file, 0, data.len() as u64);
        assert_eq!(body.size(), BodySize::Sized(data.len() as u64));
        assert_eq!(collect(body).await.expect("read"), data);

        let (_tmp, file) = file_with(&data);
        let part = collect(FileBody::new(file, 1000, 5000)).await.expect("read");
        assert_eq!(part, &data[1000..6000]);
    }

    #[tokio::test]
    async fn a_file_shorter_than_promised_is_an_error_not_a_short_body() {
        let (_tmp, file) = file_with(b"only this");
        let err = collect(FileBody::new(file, 0, 100))
            .await
            .expect_err("short file");
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
