//! Test-only helpers: the committed test keys (`tests/fixtures/hex/`) and signing with them, so
//! unit tests build registry files the way hex.pm does without generating keys at test time.

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
