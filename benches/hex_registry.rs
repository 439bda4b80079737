//! Verifying hex registry files as the mirror does before caching them (gunzip, RSA-SHA512
//! signature check with a 2048-bit key, protobuf decode, origin checks): a `/names` the size of
//! hex.pm's (20,000 packages) and a `/packages/{name}` with 300 releases. This is the cost of each
//! upstream fetch; cached files are served from memory without it.

use std::hint::black_box;
use std::io::Write;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flate2::{Compression, GzBuilder};
use pkgmirror::hex::{
    Dependency, HexPublicKey, Names, NamesPackage, Package, RegistryFile, RegistryVerifier, Release, Signed,
    Timestamp,
};
use prost::Message;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::sha2::Sha512;
use rsa::signature::{SignatureEncoding, Signer};

const TEST_KEY: &str = include_str!("../tests/fixtures/hex/test_key.pem");
const TEST_PUBLIC_KEY: &str = include_str!("../tests/fixtures/hex/test_key.pub.pem");
const PACKAGES: usize = 20_000;
const RELEASES: usize = 300;

fn signed_gzip(message: &impl Message) -> Vec<u8> {
    let key = SigningKey::<Sha512>::new(rsa::PrivateKey::from_pkcs8_pem(TEST_KEY).expect("test key"));
    let payload = message.encode_to_vec();
    let signature = Some(key.sign(&payload).to_vec());
    let mut gz = GzBuilder::new().write(Vec::new(), Compression::new(6));
    gz.write_all(&Signed { payload, signature }.encode_to_vec())
        .expect("gzip");
    gz.finish().expect("gzip")
}

fn names() -> Vec<u8> {
    signed_gzip(&Names {
        packages: (0..PACKAGES)
            .map(|i| NamesPackage {
                name: format!("package_{i:05}"),
                updated_at: Some(Timestamp {
                    seconds: 1_700_000_000 + i as i64,
                    nanos: 0,
                }),
            })
            .collect(),
        repository: "hexpm".into(),
    })
}

fn package() -> Vec<u8> {
    let checksum = |seed: usize| (0..32).map(|i| (seed * 31 + i) as u8).collect::<Vec<u8>>();
    signed_gzip(&Package {
        releases: (0..RELEASES)
            .map(|i| Release {
                version: format!("{}.{}.{}", i / 100, (i / 10) % 10, i % 10),
                inner_checksum: checksum(i),
                dependencies: vec![Dependency {
                    package: "jason".into(),
                    requirement: "~> 1.0".into(),
                    optional: Some(false),
                    app: None,
                    repository: None,
                }],
                retired: None,
                outer_checksum: Some(checksum(i + 1)),
                advisory_indexes: Vec::new(),
                published_at: Some(Timestamp {
                    seconds: 1_700_000_000,
                    nanos: 0,
                }),
            })
            .collect(),
        name: "big_package".into(),
        repository: "hexpm".into(),
        advisories: Vec::new(),
    })
}

fn verify(c: &mut Criterion) {
    let verifier = RegistryVerifier::new(HexPublicKey::from_config(TEST_PUBLIC_KEY).expect("public key"));
    let mut group = c.benchmark_group("hex_registry_verify");
    for (label, file, bytes) in [
        ("names_20000_packages", RegistryFile::Names, names()),
        (
            "package_300_releases",
            RegistryFile::Package("big_package".into()),
            package(),
        ),
    ] {
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(label, |b| {
            b.iter(|| {
                verifier
                    .verify(black_box(&file), black_box(&bytes))
                    .expect("verifies")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, verify);
criterion_main!(benches);
