//! A cached-file hit, the parts pkgmirror does before actix writes the bytes: the file row from
//! memory (`Catalogue::hot_file`), opening the stored blob (`LocalBlobStore::get`) and reading
//! it through the response body (`FileBody`: page-cache reads on the calling thread).
//! `benches/compare.sh` measures the whole request beside nginx; this isolates our share of it.

use std::pin::Pin;

use actix_web::body::MessageBody;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use pkgmirror::ecosystem::Ecosystem;
use pkgmirror::http::file_body::FileBody;
use pkgmirror::storage::Catalogue;
use pkgmirror::storage::blob::{BlobBody, BlobStore, LocalBlobStore};
use pkgmirror::storage::catalogue::{FileRecord, ProjectRecord};
use sha2::{Digest, Sha256};
use tokio::runtime::Runtime;

/// A project page the size of a popular project's (numpy lists a few thousand files).
const FILES: usize = 5_000;

fn record(index_id: i64, n: usize) -> FileRecord {
    let filename = format!("demo-{n}.0-py3-none-any.whl");
    FileRecord {
        index_id,
        url: format!("https://files.example/packages/ab/cd/{filename}"),
        filename,
        version: Some(format!("{n}.0")),
        sha256: Some(format!("{n:064x}")),
        size: Some(10_000),
        requires_python: Some(">=3.9".into()),
        yanked: None,
        upload_time: None,
        has_metadata: true,
        metadata_sha256: None,
        inner_checksum: None,
        first_seen: None,
        provenance: None,
    }
}

fn lookup(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let catalogue = Catalogue::open(&dir.path().join("catalogue.sqlite3")).expect("catalogue");
    let index = catalogue
        .ensure_index(Ecosystem::Pypi, "https://index.example/simple/", 600)
        .expect("index");
    catalogue
        .record_project(&ProjectRecord {
            ecosystem: Ecosystem::Pypi,
            name: "demo".into(),
            display_name: "demo".into(),
            last_serial: None,
            status: None,
            fetched_at: 0,
            files: (0..FILES).map(|n| record(index, n)).collect(),
        })
        .expect("record");
    let wanted = record(index, FILES / 2).filename;
    catalogue
        .project_file(Ecosystem::Pypi, "demo", &wanted)
        .expect("lookup")
        .expect("listed");
    c.bench_function("file_row/from_memory", |b| {
        b.iter(|| catalogue.hot_file(Ecosystem::Pypi, "demo", &wanted).expect("hot"))
    });
}

async fn send(store: &LocalBlobStore, sha256: &str) -> usize {
    let Some(BlobBody::File { file, size, .. }) = store.get(sha256, None).await.expect("get") else {
        panic!("a local blob is a file");
    };
    let mut body = FileBody::new(file, 0, size);
    let mut sent = 0;
    while let Some(chunk) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_next(cx)).await {
        sent += chunk.expect("read").len();
    }
    sent
}

fn open_and_read(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = LocalBlobStore::open(dir.path()).expect("blob store");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("stored_blob");
    for size in [10 * 1024, 1024 * 1024] {
        let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let sha256 = hex::encode(Sha256::digest(&data));
        store_blob(&rt, &store, &data, &sha256);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("open_and_read", size), &sha256, |b, sha256| {
            b.iter(|| assert_eq!(rt.block_on(send(&store, sha256)), size))
        });
    }
    group.finish();
}

fn store_blob(rt: &Runtime, store: &LocalBlobStore, data: &[u8], sha256: &str) {
    rt.block_on(async {
        let mut writer = store.put(None).await.expect("put");
        writer.write(data).await.expect("write");
        writer.commit(sha256).await.expect("commit");
    });
}

criterion_group!(cached_file, lookup, open_and_read);
criterion_main!(cached_file);
