//! The first download of a file, as `cache::downloads` drives it: 64 KiB chunks go through
//! the blob writer (sha256 as it goes) into its spool, each followed by a publish that holds the
//! newest chunk back, then commit (fsync, verify, rename) and finish. `fan_out` adds clients
//! streaming the spool while it grows, the case the spool exists for.
//!
//! No network: the chunks come from memory, so what is measured is hashing, disk and fan-out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{
    BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use futures::StreamExt;
use pkgmirror::cache::spool::Spool;
use pkgmirror::storage::blob::{BlobStore, LocalBlobStore};
use sha2::{Digest, Sha256};
use tokio::runtime::Runtime;

const SIZE: usize = 64 * 1024 * 1024;
/// What an upstream body stream typically yields at a time.
const CHUNK: usize = 64 * 1024;

/// Incompressible bytes, the same every run (a filesystem or disk that compresses must not make
/// the numbers look better than real wheels would).
fn pseudo_random(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        // xorshift64
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Two workers, like a small deployment; readers' positioned reads use the blocking pool.
fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// One download with `readers` clients attached from the start; returns once the blob is
/// committed and every reader has reached the end.
async fn one_download(store: &LocalBlobStore, data: &[u8], sha256: &str, readers: usize) {
    let mut writer = store.put(None).await.expect("put");
    let spool_path = writer.spool_path().to_owned();
    // Opening is blocking, so the real flow does it off the async workers too.
    let spool = Arc::new(
        tokio::task::spawn_blocking(move || Spool::open(&spool_path))
            .await
            .expect("join")
            .expect("open spool"),
    );
    let clients: Vec<_> = (0..readers)
        .map(|_| {
            let mut stream = Spool::reader(&spool);
            tokio::spawn(async move {
                // Counting, not copying: the bench checks delivery without adding work to it.
                let mut received = 0usize;
                while let Some(bytes) = stream.next().await {
                    received += bytes.expect("reader error").len();
                }
                received
            })
        })
        .collect();

    for chunk in data.chunks(CHUNK) {
        writer.write(chunk).await.expect("write");
        // Held back until the next chunk proves the previous write landed, as in `receive`.
        spool.publish(writer.written() - chunk.len() as u64);
    }
    let size = writer.commit(sha256).await.expect("commit");
    spool.finish(size, sha256.to_owned());

    for client in clients {
        // A reader ending early would make the bench measure less than it claims.
        assert_eq!(client.await.expect("reader task"), data.len());
    }
}

/// Times `iters` downloads; deleting each committed blob is left out of the timing but done, so
/// every commit is a real rename into place rather than "already stored".
fn timed(
    rt: &Runtime,
    store: &LocalBlobStore,
    data: &[u8],
    sha256: &str,
    readers: usize,
    iters: u64,
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let start = Instant::now();
        rt.block_on(one_download(store, data, sha256, readers));
        total += start.elapsed();
        assert!(rt.block_on(store.delete(sha256)).expect("delete"));
    }
    total
}

fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    group.throughput(Throughput::Bytes(SIZE as u64));
    // An iteration takes a good fraction of a second: flat sampling keeps it to ~10 of them per
    // case instead of the 55 linear sampling would need.
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
}

fn benches(c: &mut Criterion) {
    let data = pseudo_random(SIZE);
    let sha256 = hex::encode(Sha256::digest(&data));
    let dir = tempfile::tempdir().expect("temp dir");
    let store = LocalBlobStore::open(dir.path()).expect("blob store");
    let rt = runtime();

    let mut group = c.benchmark_group("hash_and_store");
    configure(&mut group);
    group.bench_function("64MiB", |b| {
        b.iter_custom(|iters| timed(&rt, &store, &data, &sha256, 0, iters))
    });
    group.finish();

    let mut group = c.benchmark_group("fan_out");
    configure(&mut group);
    for readers in [1, 20] {
        group.bench_with_input(
            BenchmarkId::new("64MiB", format!("{readers}_readers")),
            &readers,
            |b, &readers| b.iter_custom(|iters| timed(&rt, &store, &data, &sha256, readers, iters)),
        );
    }
    group.finish();
}

criterion_group!(download, benches);
criterion_main!(download);
