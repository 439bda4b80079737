//! A file being written by one task and read by many while it grows: how a first download is
//! shared by every client waiting for it.
//!
//! The writer publishes how many bytes may be read (`publish`), then the end (`finish`) or a
//! failure (`fail`). Readers use positioned reads on one shared handle, up to the published
//! offset, so memory stays bounded and a slow reader never slows the others. The handle is opened
//! before anything is written and stays valid when the file is renamed into place at commit.

use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures::Stream;
use tokio::sync::watch;

use super::CacheError;

/// How much a reader takes from the spool at a time.
const READ_CHUNK: usize = 256 * 1024;

pub type SpoolStream = Pin<Box<dyn Stream<Item = Result<Bytes, io::Error>> + Send>>;

#[derive(Debug, Clone)]
enum Progress {
    /// Bytes `0..available` may be read.
    Running {
        available: u64,
    },
    Done {
        size: u64,
        sha256: String,
    },
    Failed(CacheError),
}

pub struct Spool {
    file: Arc<std::fs::File>,
    progress: watch::Sender<Progress>,
}

impl Spool {
    /// Opens `path` for reading; blocking (call it off the async workers).
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = std::fs::File::open(path)?;
        let (progress, _) = watch::channel(Progress::Running { available: 0 });
        Ok(Self {
            file: Arc::new(file),
            progress,
        })
    }

    /// Bytes `0..available` are written and may be sent.
    pub fn publish(&self, available: u64) {
        self.progress.send_replace(Progress::Running { available });
    }

    /// All `size` bytes are written and verified to hash to `sha256`.
    pub fn finish(&self, size: u64, sha256: String) {
        self.progress.send_replace(Progress::Done { size, sha256 });
    }

    /// The transfer failed: every reader's stream ends with this error.
    pub fn fail(&self, error: CacheError) {
        self.progress.send_replace(Progress::Failed(error));
    }

    /// Waits until there is something to read or the transfer ended; why it failed, if it did.
    pub async fn started(&self) -> Result<(), CacheError> {
        self.wait(|p| match p {
            Progress::Running { available: 0 } => None,
            Progress::Running { .. } | Progress::Done { .. } => Some(Ok(())),
            Progress::Failed(e) => Some(Err(e.clone())),
        })
        .await
    }

    /// Waits for the end; the verified sha256, or why it failed.
    pub async fn finished(&self) -> Result<String, CacheError> {
        self.wait(|p| match p {
            Progress::Running { .. } => None,
            Progress::Done { sha256, .. } => Some(Ok(sha256.clone())),
            Progress::Failed(e) => Some(Err(e.clone())),
        })
        .await
    }

    async fn wait<T>(
        &self,
        mut ready: impl FnMut(&Progress) -> Option<Result<T, CacheError>>,
    ) -> Result<T, CacheError> {
        let mut progress = self.progress.subscribe();
        loop {
            if let Some(result) = ready(&progress.borrow_and_update()) {
                return result;
            }
            if progress.changed().await.is_err() {
                return Err(CacheError::Internal("the transfer ended without a result".into()));
            }
        }
    }

    /// A reader's view: the bytes as they become available, ending in an error if the transfer
    /// fails (which cuts an HTTP client's connection: it never sees a complete wrong file).
    pub fn reader(spool: &Arc<Self>) -> SpoolStream {
        struct State {
            spool: Arc<Spool>,
            progress: watch::Receiver<Progress>,
            sent: u64,
            finished: bool,
        }
        let state = State {
            spool: Arc::clone(spool),
            progress: spool.progress.subscribe(),
            sent: 0,
            finished: false,
        };
        Box::pin(futures::stream::unfold(state, |mut state| async move {
            if state.finished {
                return None;
            }
            loop {
                let progress = state.progress.borrow_and_update().clone();
                let (limit, done) = match progress {
                    Progress::Running { available } => (available, false),
                    Progress::Done { size, .. } => (size, true),
                    Progress::Failed(e) => {
                        state.finished = true;
                        return Some((Err(io::Error::other(e.to_string())), state));
                    }
                };
                if state.sent < limit {
                    let len = usize::try_from(limit - state.sent).map_or(READ_CHUNK, |n| n.min(READ_CHUNK));
                    let read = read_at(Arc::clone(&state.spool.file), state.sent, len).await;
                    return match read {
                        Ok(bytes) if !bytes.is_empty() => {
                            state.sent += bytes.len() as u64;
                            Some((Ok(bytes), state))
                        }
                        Ok(_) => {
                            state.finished = true;
                            Some((Err(io::Error::other("the spool file ended early")), state))
                        }
                        Err(e) => {
                            state.finished = true;
                            Some((Err(e), state))
                        }
                    };
                }
                if done {
                    return None;
                }
                if state.progress.changed().await.is_err() {
                    state.finished = true;
                    return Some((Err(io::Error::other("the transfer stopped")), state));
                }
            }
        }))
    }
}

async fn read_at(file: Arc<std::fs::File>, offset: u64, len: usize) -> io::Result<Bytes> {
    tokio::task::spawn_blocking(move || {
        let mut buf = vec![0; len];
        let n = file.read_at(&mut buf, offset)?;
        buf.truncate(n);
        Ok(Bytes::from(buf))
    })
    .await
    .map_err(io::Error::other)?
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use futures::StreamExt;

    use super::*;

    fn spool_in(dir: &tempfile::TempDir) -> (std::fs::File, Arc<Spool>) {
        let path = dir.path().join("spool");
        let writer = std::fs::File::create(&path).unwrap();
        (writer, Arc::new(Spool::open(&path).unwrap()))
    }

    async fn collect(mut stream: SpoolStream) -> (Vec<u8>, Option<String>) {
        let mut out = Vec::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(bytes) => out.extend_from_slice(&bytes),
                Err(e) => return (out, Some(e.to_string())),
            }
        }
        (out, None)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn readers_get_only_published_bytes_then_everything() {
        let dir = tempfile::tempdir().unwrap();
        let (mut writer, spool) = spool_in(&dir);
        let readers: Vec<_> = (0..3)
            .map(|_| tokio::spawn(collect(Spool::reader(&spool))))
            .collect();
        writer.write_all(b"hello ").unwrap();
        spool.publish(3); // "hel" may go; "lo " is held back
        writer.write_all(b"world").unwrap();
        spool.publish(6);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        spool.finish(11, "sha".into());
        assert_eq!(spool.finished().await.unwrap(), "sha");
        for reader in readers {
            assert_eq!(reader.await.unwrap(), (b"hello world".to_vec(), None));
        }
        // A reader arriving after the end still reads everything.
        assert_eq!(
            collect(Spool::reader(&spool)).await,
            (b"hello world".to_vec(), None)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failure_ends_every_reader_with_an_error_and_never_the_held_back_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let (mut writer, spool) = spool_in(&dir);
        let reader = tokio::spawn(collect(Spool::reader(&spool)));
        writer.write_all(b"0123456789").unwrap();
        spool.publish(4);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        spool.fail(CacheError::UpstreamData("hash mismatch".into()));
        let (bytes, error) = reader.await.unwrap();
        assert_eq!(bytes, b"0123");
        assert_eq!(error.as_deref(), Some("hash mismatch"));
        let failed = spool.started().await.unwrap_err();
        assert!(
            matches!(&failed, CacheError::UpstreamData(m) if m == "hash mismatch"),
            "{failed:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn started_waits_for_the_first_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let (_writer, spool) = spool_in(&dir);
        let waiter = {
            let spool = Arc::clone(&spool);
            tokio::spawn(async move { spool.started().await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        spool.publish(1);
        assert!(waiter.await.unwrap().is_ok());
    }
}
