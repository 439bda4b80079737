//! Test-only helpers: the committed test keys (`tests/fixtures/hex/`) and signing with them, so
//! unit tests build registry files the way hex.pm does without generating keys at test time; and
//! package tarballs built the way hex_core writes them.

use std::io::Write;
use std::sync::OnceLock;

use flate2::{Compression, GzBuilder};
use prost::Message;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::sha2::Sha512;
use rsa::signature::{SignatureEncoding, Signer};

use super::proto::Signed;

pub const TEST_KEY: &str = include_str!("../../tests/fixtures/hex/test_key.pem");
pub const TEST_KEY_PUB: &str = include_str!("../../tests/fixtures/hex/test_key.pub.pem");
pub const TEST_KEY_RSA_PUB: &str = include_str!("../../tests/fixtures/hex/test_key.rsa.pub.pem");
pub const OTHER_KEY: &str = include_str!("../../tests/fixtures/hex/other_key.pem");
pub const OTHER_KEY_PUB: &str = include_str!("../../tests/fixtures/hex/other_key.pub.pem");

fn signing_key(which: &str) -> &'static SigningKey<Sha512> {
    static TEST: OnceLock<SigningKey<Sha512>> = OnceLock::new();
    static OTHER: OnceLock<SigningKey<Sha512>> = OnceLock::new();
    let (cell, pem) = match which {
        "test" => (&TEST, TEST_KEY),
        "other" => (&OTHER, OTHER_KEY),
        _ => panic!("no test key {which:?}"),
    };
    cell.get_or_init(|| SigningKey::new(rsa::PrivateKey::from_pkcs8_pem(pem).unwrap()))
}

/// The RSASSA-PKCS1-v1_5 SHA-512 signature of `payload` by the `"test"` or `"other"` key.
pub fn sign_with(which: &str, payload: &[u8]) -> Vec<u8> {
    signing_key(which).sign(payload).to_vec()
}

/// gzip with a fixed header (mtime 0), as the fixtures write it.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = GzBuilder::new().write(Vec::new(), Compression::default());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// A registry file as hex.pm serves it: gzip(Signed{payload, signature by `which`}).
pub fn registry_file(message: &impl Message, which: &str) -> Vec<u8> {
    let payload = message.encode_to_vec();
    let signature = Some(sign_with(which, &payload));
    gzip(&Signed { payload, signature }.encode_to_vec())
}

/// A ustar header for a regular file, mode 0644, owned by 0:0, mtime 0.
pub fn tar_header(path: &str, size: usize) -> [u8; 512] {
    let mut block = [0u8; 512];
    let mut put = |at: usize, bytes: &[u8]| block[at..at + bytes.len()].copy_from_slice(bytes);
    put(0, path.as_bytes());
    put(100, b"0000644\0");
    put(108, b"0000000\0");
    put(116, b"0000000\0");
    put(124, format!("{size:011o}\0").as_bytes());
    put(136, b"00000000000\0");
    put(148, b"        ");
    put(156, b"0");
    put(257, b"ustar\0");
    put(263, b"00");
    let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
    block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    block
}

/// An uncompressed tar of `members` in order, with the two end-of-archive blocks.
pub fn tar(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (path, data) in members {
        out.extend_from_slice(&tar_header(path, data.len()));
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(512), 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// A well-formed package tarball (format 3) with these members and a matching upper-case CHECKSUM.
pub fn package_tarball(metadata: &[u8], contents: &[u8]) -> Vec<u8> {
    let checksum = ::hex::encode_upper(super::tarball::inner_checksum(b"3", metadata, contents));
    tar(&[
        ("VERSION", b"3"),
        ("CHECKSUM", checksum.as_bytes()),
        ("metadata.config", metadata),
        ("contents.tar.gz", contents),
    ])
}
