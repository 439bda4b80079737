//! Rendering and parsing a large project page (5,000 files, every field filled in), the size of
//! the biggest real projects' pages; and parsing the largest page of the real corpus
//! (`tests/fixtures/real/numpy.*`, 4,415 files) as the index sent it.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pkgmirror::pypi::model::Hashes;
use pkgmirror::pypi::{
    DistFile, PageMeta, ProjectPage, ProjectStatus, parse_project_html, parse_project_json,
    render_project_html, render_project_json,
};
use url::Url;

const FILES: usize = 5_000;

fn hex(seed: usize, len: usize) -> String {
    (0..len)
        .map(|i| char::from(b"0123456789abcdef"[(seed * 31 + i * 7) % 16]))
        .collect()
}

fn big_page() -> ProjectPage {
    let files = (0..FILES)
        .map(|i| {
            let version = format!("{}.{}.{}", i / 100, (i / 10) % 10, i % 10);
            let filename = if i % 2 == 0 {
                format!("big_project-{version}-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl")
            } else {
                format!("big_project-{version}.tar.gz")
            };
            DistFile {
                url: format!("https://files.example/packages/{}/{filename}", hex(i, 8)),
                filename,
                hashes: Hashes::from_iter([("sha256".to_owned(), hex(i, 64))]),
                requires_python: Some(">=3.8, <4".to_owned()),
                yanked: (i % 50 == 0).then(|| "broken <build>".to_owned()),
                core_metadata: (i % 2 == 0)
                    .then(|| Hashes::from_iter([("sha256".to_owned(), hex(i + 1, 64))])),
                gpg_sig: Some(false),
                size: Some(1_000_000 + i as u64),
                upload_time: Some("2024-01-02T03:04:05.123456Z".to_owned()),
                provenance: (i % 2 == 0)
                    .then(|| format!("https://index.example/integrity/big-project/{version}/provenance")),
            }
        })
        .collect::<Vec<_>>();
    let mut versions: Vec<String> = Vec::with_capacity(FILES / 2);
    for i in (0..FILES).step_by(2) {
        versions.push(format!("{}.{}.{}", i / 100, (i / 10) % 10, i % 10));
    }
    ProjectPage {
        name: "big-project".to_owned(),
        files,
        versions: Some(versions),
        project_status: Some(ProjectStatus {
            status: "active".to_owned(),
            reason: None,
        }),
        meta: PageMeta {
            api_version: Some("1.4".to_owned()),
            last_serial: Some(123_456_789),
            tracks: vec![],
            alternate_locations: vec![],
        },
    }
}

fn benches(c: &mut Criterion) {
    let page = big_page();
    let page_url = Url::parse("https://index.example/simple/big-project/").expect("valid URL");
    let html = render_project_html(&page);
    let json = render_project_json(&page);

    let mut group = c.benchmark_group("simple_page_5000_files");
    group.throughput(Throughput::Elements(FILES as u64));
    group.bench_function("render_project_html", |b| {
        b.iter(|| render_project_html(black_box(&page)))
    });
    group.bench_function("render_project_json", |b| {
        b.iter(|| render_project_json(black_box(&page)))
    });
    group.bench_function("parse_project_html", |b| {
        b.iter(|| parse_project_html(black_box(html.as_bytes()), &page_url, "big-project"))
    });
    group.bench_function("parse_project_json", |b| {
        b.iter(|| parse_project_json(black_box(json.as_bytes()), &page_url))
    });
    group.finish();

    let corpus = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/real");
    let real_json = std::fs::read(format!("{corpus}/numpy.json")).expect("the real corpus");
    let real_html = std::fs::read(format!("{corpus}/numpy.html")).expect("the real corpus");
    let numpy_url = Url::parse("https://index.example/simple/numpy/").expect("valid URL");
    let mut group = c.benchmark_group("real_numpy_page");
    group.throughput(Throughput::Bytes(real_json.len() as u64));
    group.bench_function("parse_project_json", |b| {
        b.iter(|| parse_project_json(black_box(&real_json), &numpy_url))
    });
    group.throughput(Throughput::Bytes(real_html.len() as u64));
    group.bench_function("parse_project_html", |b| {
        b.iter(|| parse_project_html(black_box(&real_html), &numpy_url, "numpy"))
    });
    group.finish();
}

criterion_group!(simple_page, benches);
criterion_main!(simple_page);
