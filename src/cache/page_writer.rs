//! Writes what page refreshes produced (catalogue record, snapshots, rendered forms), one commit
//! for all the writes that queued up while the previous commit ran. Every commit syncs
//! `pages.redb` to disk; a burst of cold pages (a resolver asking for 200 projects at once) would
//! otherwise wait in line for one commit each, and the last client for all of them.

use std::sync::Arc;

use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};

use super::{CacheError, blocking};
use crate::ecosystem::Ecosystem;
use crate::storage::catalogue::ProjectRecord;
use crate::storage::pages::{PageForm, PageKey, PageWrite, SnapshotKey, StoredPage};
use crate::storage::{Catalogue, PageStore, StorageError};

/// The most refreshes one commit takes (bounds how long the first of them waits).
const MAX_BATCH: usize = 64;

/// What one refresh asks to be written.
pub struct PageJob {
    pub ecosystem: Ecosystem,
    /// The page's store key.
    pub name: String,
    /// Written to the catalogue before the page store: if the process dies in between, the page
    /// store is behind the catalogue, which only costs a refetch.
    pub record: Option<ProjectRecord>,
    /// New per-index snapshots: (index key, encoded snapshot).
    pub snapshots: Vec<(String, Vec<u8>)>,
    pub forms: Vec<(PageForm, Arc<StoredPage>)>,
}

/// A queued write. It carries the stores it goes to, so the task holds them only while it has
/// work: once the cache is dropped and its last write answered, nothing keeps `pages.redb` open.
struct Queued {
    job: PageJob,
    store: PageStore,
    catalogue: Catalogue,
    done: oneshot::Sender<Result<(), StorageError>>,
}

/// The queue of page writes to one page store and catalogue, and the task committing them.
pub struct PageWriter {
    store: PageStore,
    catalogue: Catalogue,
    queue: mpsc::UnboundedSender<Queued>,
}

impl PageWriter {
    /// Starts the writing task on `runtime`; it ends when the writer is dropped.
    pub fn start(store: PageStore, catalogue: Catalogue, runtime: &Handle) -> Self {
        let (queue, jobs) = mpsc::unbounded_channel();
        runtime.spawn(run(jobs));
        Self {
            store,
            catalogue,
            queue,
        }
    }

    /// Writes `job`, in a commit shared with the writes queued beside it; returns once it is
    /// committed (or failed).
    pub async fn write(&self, job: PageJob) -> Result<(), CacheError> {
        let (done, committed) = oneshot::channel();
        let stopped = || CacheError::Internal("the page writer has stopped".into());
        let queued = Queued {
            job,
            store: self.store.clone(),
            catalogue: self.catalogue.clone(),
            done,
        };
        self.queue.send(queued).map_err(|_| stopped())?;
        committed.await.map_err(|_| stopped())?.map_err(CacheError::from)
    }
}

async fn run(mut jobs: mpsc::UnboundedReceiver<Queued>) {
    while let Some(first) = jobs.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH
            && let Ok(next) = jobs.try_recv()
        {
            batch.push(next);
        }
        let done = blocking(move || {
            commit_batch(batch);
            Ok(())
        })
        .await;
        if let Err(e) = done {
            // The task committing panicked: its jobs' senders are gone, so their writers see
            // the writer stopped; later jobs still get written.
            tracing::error!(error = %e, "a page write batch failed");
        }
    }
}

/// Commits the batch at once; if that fails, each job alone, so one bad write (a full disk for
/// one huge page) fails only itself. Answers only once the batch (and its store handles) is
/// dropped.
fn commit_batch(batch: Vec<Queued>) {
    let (store, catalogue) = (batch[0].store.clone(), batch[0].catalogue.clone());
    let together =
        batch.len() > 1 && commit(&store, &catalogue, batch.iter().map(|queued| &queued.job)).is_ok();
    let answers: Vec<_> = batch
        .into_iter()
        .map(|queued| {
            let result = if together {
                Ok(())
            } else {
                commit(&store, &catalogue, std::iter::once(&queued.job))
            };
            (queued.done, result)
        })
        .collect();
    drop((store, catalogue));
    for (done, result) in answers {
        // The writer may have stopped waiting (its client went away): the write stands.
        let _ = done.send(result);
    }
}

fn commit<'a>(
    store: &PageStore,
    catalogue: &Catalogue,
    jobs: impl Iterator<Item = &'a PageJob> + Clone,
) -> Result<(), StorageError> {
    let records: Vec<&ProjectRecord> = jobs.clone().filter_map(|job| job.record.as_ref()).collect();
    if !records.is_empty() {
        catalogue.record_projects(&records)?;
    }
    let mut write = PageWrite {
        snapshots: Vec::new(),
        pages: Vec::new(),
    };
    for job in jobs {
        write.snapshots.extend(job.snapshots.iter().map(|(index, bytes)| {
            (
                SnapshotKey::new(job.ecosystem, &job.name, index),
                bytes.as_slice(),
            )
        }));
        write.pages.extend(
            job.forms
                .iter()
                .map(|(form, page)| (PageKey::new(job.ecosystem, &job.name, *form), Arc::clone(page))),
        );
    }
    if write.snapshots.is_empty() && write.pages.is_empty() {
        return Ok(());
    }
    store.write(&write)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::catalogue::tests::file;
    use crate::storage::pages::{PageHeader, StoredPage};

    fn page(body: &str) -> Arc<StoredPage> {
        Arc::new(StoredPage {
            header: PageHeader {
                etag: format!("\"{body}\""),
                fetched_at: 1,
                expires_at: 61,
                sources: String::new(),
                upstream_etag: None,
            },
            identity: bytes::Bytes::from(body.to_owned()),
            gzip: bytes::Bytes::new(),
            zstd: bytes::Bytes::new(),
        })
    }

    fn job(name: &str, index_id: i64, forms: Vec<(PageForm, Arc<StoredPage>)>) -> PageJob {
        PageJob {
            ecosystem: Ecosystem::Pypi,
            name: name.into(),
            record: Some(ProjectRecord {
                ecosystem: Ecosystem::Pypi,
                name: name.into(),
                display_name: name.into(),
                last_serial: None,
                status: None,
                fetched_at: 1,
                files: vec![file(index_id, &format!("{name}-1.0.tar.gz"))],
            }),
            snapshots: vec![("https://index.example/".into(), name.as_bytes().to_vec())],
            forms,
        }
    }

    /// Many refreshes writing at once all land, in the catalogue and the page store; one whose
    /// catalogue record cannot be written fails alone, not the writes committed beside it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_all_land_and_a_bad_one_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = PageStore::open(&dir.path().join("pages.redb"), &dir.path().join("bodies")).unwrap();
        let catalogue = Catalogue::open(&dir.path().join("catalogue.sqlite3")).unwrap();
        let index = catalogue
            .ensure_index(Ecosystem::Pypi, "https://index.example/", 60)
            .unwrap();
        let writer = Arc::new(PageWriter::start(
            store.clone(),
            catalogue.clone(),
            &Handle::current(),
        ));
        let writes: Vec<_> = (0..40)
            .map(|n| {
                let writer = Arc::clone(&writer);
                // Project 7 names an index that does not exist: its record breaks a foreign key.
                let index_id = if n == 7 { index + 1000 } else { index };
                let name = format!("p{n}");
                let forms = vec![(PageForm::Html, page(&name))];
                tokio::spawn(async move { writer.write(job(&name, index_id, forms)).await })
            })
            .collect();
        for (n, write) in writes.into_iter().enumerate() {
            let result = write.await.unwrap();
            assert_eq!(result.is_ok(), n != 7, "write {n}: {:?}", result.err());
        }
        for n in (0..40).filter(|n| *n != 7) {
            let name = format!("p{n}");
            let stored = store
                .page(PageKey::new(Ecosystem::Pypi, &name, PageForm::Html))
                .unwrap()
                .expect("page stored");
            assert_eq!(stored.identity, name.as_bytes());
            assert_eq!(catalogue.project_files(Ecosystem::Pypi, &name).unwrap().len(), 1);
        }
        assert!(
            store
                .page(PageKey::new(Ecosystem::Pypi, "p7", PageForm::Html))
                .unwrap()
                .is_none()
        );
    }
}
