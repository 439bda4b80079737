//! Property tests over everything here that reads hex.pm's bytes: registry files as fetched (gzip,
//! `Signed`, signature, payload, origin checks), the protobuf messages on their own, package
//! tarballs, and tarballs published to a hosted repository (their `metadata.config`). The seeds are a small repository signed with the test key (`test_support`); inputs
//! are arbitrary bytes, fragment soup and mutations of the seeds (`crate::fuzz_support`).
//!
//! What must hold for every input: no panic (proptest fails a case that panics and shrinks it);
//! a refusal is an `Err`; the heap in use stays within a bound linear in the bytes read (see
//! [`PROTO_HEAP_PER_BYTE`] and [`gunzip_is_capped_before_it_allocates`]); and whatever is accepted
//! is something the key holder signed: a mutated registry file verifies only to a message the
//! seeds verify to, and a tarball passes `verify_tarball` only when its bytes hash as the registry
//! says.
//!
//! `cargo test --lib fuzz` runs a few hundred cases per property (all of them together take about
//! 15 s in a debug build on 2 cores); the long run is `PROPTEST_CASES=20000 cargo test --lib fuzz`
//! (about half an hour, most of it RSA signing in `hex::fuzz::signed_payloads_are_still_checked`).

use std::io::Read;
use std::sync::{Arc, OnceLock};

use flate2::read::GzDecoder;
use proptest::prelude::*;
use prost::Message;
use sha2::{Digest, Sha256};

use super::key::HexPublicKey;
use super::proto::{
    AdvisorySeverity, Dependency, Names, NamesPackage, Package, Release, RetirementReason, RetirementStatus,
    SecurityAdvisory, Signed, Timestamp, Versions, VersionsPackage,
};
use super::publish::check_publication;
use super::registry::{RegistryError, RegistryFile, RegistryVerifier, Verified, gunzip_capped};
use super::tarball::{check_tarball, inner_checksum, read_outer_tarball, verify_tarball};
use super::test_support::{TEST_KEY_PUB, gzip, package_tarball, sign_with, tar};
use crate::fuzz_support::{Dictionary, Input, config, inputs, peak_heap};

/// The decompression cap of the verifier under test: small, so that a gzip bomb a mutation
/// happens to make costs milliseconds, not the production cap's 64 MiB.
const CAP: usize = 1 << 20;

/// Heap a decoded protobuf message may hold per byte of its encoding. The densest encoding is an
/// empty entry of a repeated message field: two bytes (tag, length 0) become one element of a
/// `Vec`, and a `Vec` that grows by doubling holds up to twice its elements; an entry that itself
/// holds one entry of a repeated field (four bytes) adds a `Vec` of the minimum capacity, four
/// elements. With `Release` (the largest element) holding one `Dependency` that is
/// (2 * size_of::<Release>() + 4 * size_of::<Dependency>()) / 4 bytes per input byte, under 256.
/// [`densest_messages_stay_within_the_factor`] checks these shapes against it.
const PROTO_HEAP_PER_BYTE: usize = 256;

/// Heap that does not grow with the input: the gzip decoder's window and tables, the RSA
/// verification's big integers, error messages, the test's own bookkeeping.
const FIXED_HEAP: usize = 512 * 1024;

/// The fixture repository: what the seeds are made of, and what a verified file may decode to.
struct Repo {
    names: Names,
    versions: Versions,
    packages: Vec<Package>,
    /// Package tarballs with the release the registry lists for each.
    tarballs: Vec<(Vec<u8>, Release)>,
}

fn timestamp(seconds: i64) -> Option<Timestamp> {
    Some(Timestamp { seconds, nanos: 0 })
}

fn repo() -> &'static Repo {
    static REPO: OnceLock<Repo> = OnceLock::new();
    REPO.get_or_init(|| {
        let tarballs: Vec<(Vec<u8>, Release)> = [("0.1.0", &b"fixfoo 0.1.0"[..]), ("1.0.0", b"")]
            .into_iter()
            .map(|(version, contents)| {
                let metadata =
                    format!("{{<<\"name\">>,<<\"fixfoo\">>}}.\n{{<<\"version\">>,<<\"{version}\">>}}.\n");
                let tarball = package_tarball(metadata.as_bytes(), contents);
                let release = Release {
                    version: version.into(),
                    inner_checksum: inner_checksum(b"3", metadata.as_bytes(), contents).to_vec(),
                    outer_checksum: Some(Sha256::digest(&tarball).to_vec()),
                    published_at: timestamp(1_700_000_000),
                    ..Release::default()
                };
                (tarball, release)
            })
            .collect();
        let fixfoo = Package {
            releases: tarballs.iter().map(|(_, release)| release.clone()).collect(),
            name: "fixfoo".into(),
            repository: "hexpm".into(),
            advisories: vec![],
        };
        let fixbar = Package {
            releases: vec![
                Release {
                    version: "0.1.0".into(),
                    inner_checksum: vec![1; 32],
                    dependencies: vec![Dependency {
                        package: "fixfoo".into(),
                        requirement: "~> 1.0".into(),
                        optional: Some(true),
                        app: Some("fix_foo".into()),
                        repository: Some("acme".into()),
                    }],
                    retired: Some(RetirementStatus {
                        reason: RetirementReason::Security as i32,
                        message: Some("CVE-0000-0001".into()),
                    }),
                    outer_checksum: Some(vec![2; 32]),
                    advisory_indexes: vec![0],
                    published_at: timestamp(1_600_000_000),
                },
                // Very old registry files have no outer checksum.
                Release {
                    version: "0.2.0-rc.1".into(),
                    inner_checksum: vec![3; 32],
                    ..Release::default()
                },
            ],
            name: "fixbar".into(),
            repository: "hexpm".into(),
            advisories: vec![SecurityAdvisory {
                id: "GHSA-0000-0000-0000".into(),
                summary: "a fixture advisory".into(),
                html_url: "https://advisories.example/1".into(),
                severity: Some(AdvisorySeverity::High as i32),
                cvss_score: Some(7.5),
                api_url: "https://advisories.example/api/1".into(),
                aliases: vec!["CVE-0000-0001".into()],
            }],
        };
        let names = Names {
            packages: [("fixbar", 1_600_000_000), ("fixfoo", 1_700_000_000)]
                .into_iter()
                .map(|(name, at)| NamesPackage {
                    name: name.into(),
                    updated_at: timestamp(at),
                })
                .collect(),
            repository: "hexpm".into(),
        };
        let versions = Versions {
            packages: vec![
                VersionsPackage {
                    name: "fixbar".into(),
                    versions: vec!["0.1.0".into(), "0.2.0-rc.1".into()],
                    retired: vec![0],
                    with_advisories: vec![0],
                },
                VersionsPackage {
                    name: "fixfoo".into(),
                    versions: vec!["0.1.0".into(), "1.0.0".into()],
                    retired: vec![],
                    with_advisories: vec![],
                },
            ],
            repository: "hexpm".into(),
        };
        Repo {
            names,
            versions,
            packages: vec![fixbar, fixfoo],
            tarballs,
        }
    })
}

/// The registry files a verifier is asked for.
fn kinds() -> [RegistryFile; 4] {
    [
        RegistryFile::Names,
        RegistryFile::Versions,
        RegistryFile::Package("fixbar".into()),
        RegistryFile::Package("fixfoo".into()),
    ]
}

/// The seeds at each layer of a registry file, and what the verifier accepts of them.
struct Seeds {
    /// The payloads: encoded `Names`, `Versions` and `Package`s.
    payloads: Arc<Vec<Vec<u8>>>,
    /// `Signed` envelopes of those payloads, signed with the test key.
    signed: Arc<Vec<Vec<u8>>>,
    /// The envelopes gzipped: the files as hex.pm serves them.
    files: Arc<Vec<Vec<u8>>>,
    tarballs: Arc<Vec<Vec<u8>>>,
    /// Every `(kind, result)` the verifier gives for a seed file: nothing else may verify.
    accepted: Vec<(RegistryFile, Verified)>,
}

fn verifier() -> RegistryVerifier {
    RegistryVerifier::new(HexPublicKey::from_pem(TEST_KEY_PUB).unwrap()).with_max_decompressed(CAP)
}

fn seeds() -> &'static Seeds {
    static SEEDS: OnceLock<Seeds> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let repo = repo();
        let mut payloads = vec![repo.names.encode_to_vec(), repo.versions.encode_to_vec()];
        payloads.extend(repo.packages.iter().map(Message::encode_to_vec));
        let signed: Vec<Vec<u8>> = payloads
            .iter()
            .map(|payload| {
                Signed {
                    payload: payload.clone(),
                    signature: Some(sign_with("test", payload)),
                }
                .encode_to_vec()
            })
            .collect();
        let files: Vec<Vec<u8>> = signed.iter().map(|s| gzip(s)).collect();
        let verifier = verifier();
        let accepted = kinds()
            .into_iter()
            .flat_map(|kind| files.iter().map(move |file| (kind.clone(), file)))
            .filter_map(|(kind, file)| Some((kind.clone(), verifier.verify(&kind, file).ok()?)))
            .collect();
        Seeds {
            payloads: Arc::new(payloads),
            signed: Arc::new(signed),
            files: Arc::new(files),
            tarballs: Arc::new(repo.tarballs.iter().map(|(t, _)| t.clone()).collect()),
            accepted,
        }
    })
}

/// Protobuf wire-format pieces: extreme varints, lengths past the end, every wire type, groups
/// (nested by repetition past prost's recursion limit), invalid UTF-8, and the fields the
/// verifier looks at.
static PROTO: Dictionary = Dictionary {
    fragments: &[
        b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
        b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
        b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80",
        b"\x0a\xff\xff\xff\xff\x0f",
        b"\x12\x80\x80\x80\x80\x08",
        b"\x0a\x00",
        b"\x12\x00",
        b"\x1a\x00",
        b"\x22\x00",
        b"\x0a\x02\xc3\x28",
        b"\x12\x05hexpm",
        b"\x1a\x05hexpm",
        b"\x12\x06fixbar",
        b"\x1a\x04evil",
        b"\x22\x02\x08\x07",
        b"\x22\x0b\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
        b"\x2a\x20AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        b"\x2a\x1fAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        b"\x1a\x05\xff\xff\xff\xff\x0f",
        b"\x32\x03\x80\x80\x80",
        b"\x30\xff\xff\xff\xff\x0f",
        b"\x3a\x04\x08\x01\x10\x01",
        b"\x0b\x0c",
        b"\x4b\x4c",
        b"\x4c",
        b"\x0d\x00\x00\xc0\x7f",
        b"\x11\x00\x00\x00\x00\x00\x00\xf8\x7f",
        b"\x07",
        b"\x00",
        b"\xf8\xff\xff\xff\x0f\x00",
        b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03",
    ],
    openers: &[b"\x4b", b"\x0b", b"\x0a\x7f", b"\x22\x80\x01"],
    text: false,
};

/// Tar pieces: header fields (names, sizes in octal, magic), huge and non-octal sizes, and the
/// all-zero block that ends an archive.
static TAR: Dictionary = Dictionary {
    fragments: &[
        b"VERSION\0",
        b"CHECKSUM\0",
        b"metadata.config\0",
        b"contents.tar.gz\0",
        b"./VERSION\0",
        b"ustar\0",
        b"ustar  \0",
        b"00000001000\0",
        b"77777777777\0",
        b"99999999999\0",
        b"        ",
        b"\x80\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01",
        b"3",
        b"L",
        b"x",
        &[0; 512],
    ],
    openers: &[b"\0", b" "],
    text: false,
};

/// Erlang term pieces for `metadata.config` as publishers write it: every kind of term, the keys
/// `check_publication` reads, and unbalanced brackets.
static METADATA: Dictionary = Dictionary {
    fragments: &[
        b"{<<\"name\">>,<<\"teamlib\">>}.\n",
        b"{<<\"version\">>,<<\"0.1.0\">>}.\n",
        b"{<<\"requirements\">>,",
        b"<<\"requirement\">>",
        b"<<\"optional\">>",
        b"<<\"repository\">>",
        b"<<\"app\">>",
        b"<<\"~> 1.0\">>",
        b"#{",
        b" => ",
        b"[{",
        b"}]",
        b"[[",
        b"]]",
        b"{",
        b"}",
        b"[",
        b"]",
        b",",
        b".\n",
        b"<<\"",
        b"\">>",
        b"true",
        b"'quoted atom'",
        b"\"string\"",
        b"123",
        b"-1.5e3",
        b"$a",
        b"%% comment\n",
        b"<<\"\xc3\x28\">>",
    ],
    openers: &[b"{", b"[", b"#{"],
    text: true,
};

/// `metadata.config` as rebar3 (a map of requirements), hex_core (the map as `{Name, Props}`
/// pairs) and mix (property lists naming their package) write it.
fn metadata_seeds() -> Arc<Vec<Vec<u8>>> {
    let head = "{<<\"name\">>,<<\"teamlib\">>}.\n{<<\"version\">>,<<\"0.1.0\">>}.\n\
                {<<\"build_tools\">>,[<<\"rebar3\">>]}.\n";
    let forms = [
        "#{<<\"fixfoo\">> => #{<<\"app\">> => <<\"fixfoo\">>,<<\"optional\">> => false,<<\"requirement\">> => <<\"~> 1.0\">>}}",
        "[{<<\"fixfoo\">>,[{<<\"app\">>,<<\"fixfoo\">>},{<<\"optional\">>,false},{<<\"requirement\">>,<<\"~> 1.0\">>}]}]",
        "[[{<<\"name\">>,<<\"jason\">>},{<<\"optional\">>,true},{<<\"requirement\">>,<<\">= 1.0.0 and < 2.0.0\">>},{<<\"repository\">>,<<\"hexpm\">>}]]",
    ];
    Arc::new(
        forms
            .iter()
            .map(|form| format!("{head}{{<<\"requirements\">>,{form}}}.\n").into_bytes())
            .collect(),
    )
}

/// Member contents worth trying besides random bytes: the format version, others, none, and
/// [`RIGHT_CHECKSUM`].
const MEMBER_DATA: &[&[u8]] = &[b"3", b"2", b"", b"zz", b"3\n", RIGHT_CHECKSUM];

/// Stands for the checksum the tarball's other members hash to, filled in once they are known,
/// so that generated tarballs also get past the inner-checksum check.
const RIGHT_CHECKSUM: &[u8] = b"<right checksum>";

/// A tar built member by member, so that its header checksums are right and the reader gets
/// past them: the four members in any number, order and content, among others.
fn structured_tar() -> BoxedStrategy<Input> {
    let name = prop::sample::select(
        &[
            "VERSION",
            "CHECKSUM",
            "metadata.config",
            "contents.tar.gz",
            "./VERSION",
            "./CHECKSUM",
            "other",
            "dir/VERSION",
        ][..],
    );
    let data = prop_oneof![
        prop::sample::select(MEMBER_DATA).prop_map(<[u8]>::to_vec),
        prop::collection::vec(any::<u8>(), 0..700),
    ];
    (prop::collection::vec((name, data), 0..7), any::<bool>())
        .prop_map(|(mut members, upper)| {
            let find = |members: &[(&str, Vec<u8>)], wanted: &str| {
                members
                    .iter()
                    .find(|(name, _)| name.trim_start_matches("./") == wanted)
                    .map_or(Vec::new(), |(_, data)| data.clone())
            };
            let sum = inner_checksum(
                &find(&members, "VERSION"),
                &find(&members, "metadata.config"),
                &find(&members, "contents.tar.gz"),
            );
            let sum = if upper {
                ::hex::encode_upper(sum)
            } else {
                ::hex::encode(sum)
            };
            for (_, data) in &mut members {
                if data == RIGHT_CHECKSUM {
                    *data = sum.clone().into_bytes();
                }
            }
            let refs: Vec<(&str, &[u8])> = members.iter().map(|(n, d)| (*n, d.as_slice())).collect();
            Input(tar(&refs))
        })
        .boxed()
}

/// Short strings of the kind the verifier compares (names, repositories, versions).
fn word() -> impl Strategy<Value = String> {
    prop::sample::select(&["fixbar", "fixfoo", "hexpm", "", "evil", "0.1.0", "\u{fffd}"][..])
        .prop_map(str::to_owned)
}

/// Mostly a name the verifier accepts, so that most generated files reach the checks after it.
fn likely(accepted: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![3 => prop::sample::select(accepted).prop_map(str::to_owned), 1 => word()]
}

/// A checksum of sha256's length or of another.
fn checksum() -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(&[32usize, 32, 32, 0, 31, 33][..])
        .prop_flat_map(|len| prop::collection::vec(any::<u8>(), len))
}

fn release() -> impl Strategy<Value = Release> {
    let dependency = (
        word(),
        word(),
        any::<Option<bool>>(),
        prop::option::of(word()),
        prop::option::of(word()),
    )
        .prop_map(|(package, requirement, optional, app, repository)| Dependency {
            package,
            requirement,
            optional,
            app,
            repository,
        });
    let retired = prop::option::of((-2..8i32, prop::option::of(word())))
        .prop_map(|r| r.map(|(reason, message)| RetirementStatus { reason, message }));
    let published_at = prop::option::of((any::<i64>(), any::<i32>()))
        .prop_map(|t| t.map(|(seconds, nanos)| Timestamp { seconds, nanos }));
    (
        word(),
        checksum(),
        prop::collection::vec(dependency, 0..3),
        retired,
        prop::option::of(checksum()),
        prop::collection::vec(any::<u32>(), 0..3),
        published_at,
    )
        .prop_map(
            |(
                version,
                inner_checksum,
                dependencies,
                retired,
                outer_checksum,
                advisory_indexes,
                published_at,
            )| {
                Release {
                    version,
                    inner_checksum,
                    dependencies,
                    retired,
                    outer_checksum,
                    advisory_indexes,
                    published_at,
                }
            },
        )
}

/// Registry messages of every kind with values the verifier's checks look at, encoded: inputs
/// that are well-formed protobuf, so that more of them reach those checks than mutations do.
fn structured_payload() -> BoxedStrategy<Input> {
    let package = (
        prop::collection::vec(release(), 0..4),
        likely(&["fixbar", "fixfoo"]),
        likely(&["hexpm"]),
    )
        .prop_map(|(releases, name, repository)| {
            Package {
                releases,
                name,
                repository,
                advisories: vec![],
            }
            .encode_to_vec()
        });
    let names = (prop::collection::vec(word(), 0..4), likely(&["hexpm"])).prop_map(|(names, repository)| {
        Names {
            packages: names
                .into_iter()
                .map(|name| NamesPackage {
                    name,
                    updated_at: None,
                })
                .collect(),
            repository,
        }
        .encode_to_vec()
    });
    let versions = (
        prop::collection::vec(
            (
                word(),
                prop::collection::vec(word(), 0..3),
                prop::collection::vec(any::<i32>(), 0..3),
            ),
            0..4,
        ),
        likely(&["hexpm"]),
    )
        .prop_map(|(packages, repository)| {
            Versions {
                packages: packages
                    .into_iter()
                    .map(|(name, versions, retired)| VersionsPackage {
                        name,
                        versions,
                        retired,
                        with_advisories: vec![],
                    })
                    .collect(),
                repository,
            }
            .encode_to_vec()
        });
    prop_oneof![2 => package, 1 => names, 1 => versions]
        .prop_map(Input)
        .boxed()
}

/// Payloads: the seeds mutated, and generated messages.
fn payloads() -> BoxedStrategy<Input> {
    prop_oneof![2 => inputs(seeds().payloads.clone(), &PROTO), 1 => structured_payload()].boxed()
}

/// How many bytes `gz` gunzips to before it fails or passes the cap: the data the verifier holds.
fn gunzipped_len(gz: &[u8]) -> usize {
    let mut out = Vec::new();
    // A failure partway still leaves what was decoded before it in `out`.
    let _ = GzDecoder::new(gz).take(CAP as u64 + 1).read_to_end(&mut out);
    out.len()
}

fn assert_within(peak: usize, bound: usize, what: &str, input: &Input) {
    assert!(
        peak <= bound,
        "{what} held {peak} bytes of heap at once, more than its bound of {bound}, for {input:?}"
    );
}

/// The verifier's result for `file` is an error, or one a seed file verifies to.
fn check_verified(kind: &RegistryFile, result: &Result<Verified, RegistryError>, input: &Input) {
    if let Ok(verified) = result {
        assert!(
            seeds().accepted.iter().any(|(k, v)| k == kind && v == verified),
            "{kind} verified to a message no seed verifies to: {verified:?}\nfrom {input:?}"
        );
    }
}

/// Verifies `gz` as each kind of file, checking what was accepted and the heap it took.
fn check_registry_file(gz: &[u8], input: &Input) {
    let verifier = verifier();
    let bound = 8 * gz.len() + (3 + PROTO_HEAP_PER_BYTE) * gunzipped_len(gz) + FIXED_HEAP;
    for kind in kinds() {
        let (result, peak) = peak_heap(|| verifier.verify(&kind, gz));
        assert_within(peak, bound, &kind.to_string(), input);
        check_verified(&kind, &result, input);
        if let Err(e) = result {
            assert!(!e.to_string().is_empty());
        }
    }
    if let Ok(payload) = verifier.payload(&RegistryFile::Names, gz) {
        assert!(
            seeds().payloads.contains(&payload),
            "a payload the key never signed passed: {input:?}"
        );
    }
}

/// Decoded checksums as the catalogue stores them are lower-case hex of the bytes.
fn check_release_infos(package: &Package) {
    for (info, release) in package.release_infos().iter().zip(&package.releases) {
        let is_hex_of = |hex: &str, bytes: &[u8]| {
            hex.len() == 2 * bytes.len() && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        };
        assert!(is_hex_of(&info.inner_checksum, &release.inner_checksum));
        match (&info.outer_checksum, &release.outer_checksum) {
            (Some(hex), Some(bytes)) => assert!(is_hex_of(hex, bytes)),
            (None, None) => {}
            other => panic!("outer checksum lost or invented: {other:?}"),
        }
    }
}

/// Decodes `bytes` as `M`: bounded heap, and an accepted message encodes to bytes that decode to
/// the same encoding (prost's decoder and encoder agree on every message it accepts).
fn decode_checked<M: Message + Default>(bytes: &[u8], input: &Input) -> Option<M> {
    let (result, peak) = peak_heap(|| M::decode(bytes));
    let bound = PROTO_HEAP_PER_BYTE * bytes.len() + FIXED_HEAP;
    assert_within(peak, bound, std::any::type_name::<M>(), input);
    let message = result.ok()?;
    let encoded = message.encode_to_vec();
    let again = M::decode(encoded.as_slice()).expect("a re-encoded message decodes");
    assert_eq!(again.encode_to_vec(), encoded, "unstable encoding for {input:?}");
    Some(message)
}

proptest! {
    #![proptest_config(config(256))]

    /// Registry files as fetched: gzip bytes, mutated anywhere.
    #[test]
    fn registry_files_as_fetched(input in inputs(seeds().files.clone(), &PROTO)) {
        check_registry_file(&input.0, &input);
    }

    /// `Signed` envelopes mutated before gzip, so that decoding gets past the gzip layer.
    #[test]
    fn signed_envelopes(input in inputs(seeds().signed.clone(), &PROTO)) {
        check_registry_file(&gzip(&input.0), &input);
    }

    /// The protobuf messages on their own.
    #[test]
    fn registry_messages(input in payloads()) {
        let bytes = &input.0;
        decode_checked::<Names>(bytes, &input);
        decode_checked::<Versions>(bytes, &input);
        decode_checked::<Signed>(bytes, &input);
        if let Some(package) = decode_checked::<Package>(bytes, &input) {
            check_release_infos(&package);
        }
    }

    /// Tarballs: what is read is part of the input, what checks hashes as it says, and what
    /// passes `verify_tarball` is the tarball the registry lists, byte for byte.
    #[test]
    fn tarballs(input in prop_oneof![3 => inputs(seeds().tarballs.clone(), &TAR), 1 => structured_tar()]) {
        let tar = input.0.as_slice();
        // Reading borrows: the heap it needs does not grow with the input (a member's name and
        // an error message at most).
        let (outer, peak) = peak_heap(|| read_outer_tarball(tar));
        assert_within(peak, 4096, "read_outer_tarball", &input);
        if let Ok(outer) = outer {
            let within = |member: &[u8]| tar.as_ptr_range().start <= member.as_ptr_range().start
                && member.as_ptr_range().end <= tar.as_ptr_range().end;
            prop_assert!(within(outer.version) && within(outer.checksum));
            prop_assert!(within(outer.metadata) && within(outer.contents));
        }
        let (checked, peak) = peak_heap(|| check_tarball(tar));
        assert_within(peak, 4096, "check_tarball", &input);
        match &checked {
            Ok(sums) => {
                let outer = read_outer_tarball(tar).unwrap();
                prop_assert_eq!(outer.version, b"3");
                prop_assert_eq!(sums.outer, <[u8; 32]>::from(Sha256::digest(tar)));
                prop_assert_eq!(sums.inner, inner_checksum(outer.version, outer.metadata, outer.contents));
                prop_assert_eq!(::hex::decode(outer.checksum.trim_ascii()).unwrap(), sums.inner.to_vec());
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
        for (original, release) in &repo().tarballs {
            let verified = verify_tarball(tar, release);
            if verified.is_ok() {
                prop_assert_eq!(tar, original.as_slice(), "a tarball other than the listed one verified");
            }
            if tar == original.as_slice() {
                prop_assert!(verified.is_ok(), "{:?}", verified);
            }
        }
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// Publications: `metadata.config` mutated inside a tarball whose checksums are right, so the
    /// term reader and the metadata checks get every input. What passes names a valid package,
    /// a SemVer version and valid requirements.
    #[test]
    fn publications(input in inputs(metadata_seeds(), &METADATA)) {
        let tar = package_tarball(&input.0, b"contents");
        match check_publication(&tar) {
            Ok(publication) => {
                prop_assert!(super::validate_package_name(&publication.name).is_ok());
                prop_assert!(semver::Version::parse(&publication.version).is_ok());
                for dependency in &publication.dependencies {
                    prop_assert!(super::validate_package_name(&dependency.package).is_ok());
                    prop_assert!(!dependency.requirement.trim().is_empty());
                }
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}

proptest! {
    // Each case signs a payload (RSA-2048 in a debug build), so fewer cases run by default.
    #![proptest_config(config(48))]

    /// Payloads the key holder did sign, mutated before signing: what gets past the signature is
    /// still checked for origin and checksum lengths, and decodes to what the payload says.
    #[test]
    fn signed_payloads_are_still_checked(input in payloads()) {
        let payload = input.0.clone();
        let signature = Some(sign_with("test", &payload));
        let file = gzip(&Signed { payload: payload.clone(), signature }.encode_to_vec());
        let verifier = verifier();
        for kind in kinds() {
            match verifier.verify(&kind, &file) {
                Ok(Verified::Names(names)) => {
                    prop_assert_eq!(&names.repository, "hexpm");
                    prop_assert_eq!(Names::decode(payload.as_slice()).unwrap(), names);
                }
                Ok(Verified::Versions(versions)) => {
                    prop_assert_eq!(&versions.repository, "hexpm");
                    prop_assert_eq!(Versions::decode(payload.as_slice()).unwrap(), versions);
                }
                Ok(Verified::Package(package)) => {
                    prop_assert_eq!(&package.repository, "hexpm");
                    prop_assert_eq!(RegistryFile::Package(package.name.clone()), kind);
                    for release in &package.releases {
                        prop_assert_eq!(release.inner_checksum.len(), 32);
                        prop_assert!(release.outer_checksum.as_ref().is_none_or(|c| c.len() == 32));
                    }
                    check_release_infos(&package);
                    prop_assert_eq!(
                        Package::decode(payload.as_slice()).unwrap().encode_to_vec(),
                        package.encode_to_vec()
                    );
                }
                Err(e) => prop_assert!(
                    !matches!(e, RegistryError::BadSignature { .. } | RegistryError::Unsigned { .. }),
                    "a good signature was refused: {e}"
                ),
            }
        }
    }
}

#[test]
fn the_seeds_verify() {
    let seeds = seeds();
    // Each seed verifies as its own kind at least (and `/versions` may also read as `/names`:
    // the two messages share field numbers, and nothing in a `Signed` says which it is).
    assert!(seeds.accepted.len() >= 4, "{:?}", seeds.accepted);
    for (i, kind) in kinds().iter().enumerate() {
        assert!(verifier().verify(kind, &seeds.files[i]).is_ok(), "{kind}");
    }
    for (tarball, release) in &repo().tarballs {
        assert!(verify_tarball(tarball, release).is_ok());
    }
    assert!(check_tarball(&seeds.tarballs[0]).is_ok());
}

/// A gzip bomb is refused after at most the cap (and the `Vec`'s doubling past it) is allocated,
/// not after it is decompressed whole.
#[test]
fn gunzip_is_capped_before_it_allocates() {
    let bomb = gzip(&vec![0u8; 16 << 20]);
    assert!(bomb.len() < 32 << 10, "{}", bomb.len());
    for cap in [64 << 10, 1 << 20, 4 << 20] {
        let (result, peak) = peak_heap(|| gunzip_capped(&bomb, cap));
        assert!(result.is_err());
        assert!(peak <= 2 * cap + FIXED_HEAP, "cap {cap}: peak {peak}");
        let verifier = verifier().with_max_decompressed(cap);
        let (result, peak) = peak_heap(|| verifier.names(&bomb));
        assert!(matches!(result, Err(RegistryError::TooLarge { .. })));
        assert!(peak <= 2 * cap + FIXED_HEAP, "cap {cap}: peak {peak}");
    }
}

/// The densest encodings [`PROTO_HEAP_PER_BYTE`] was worked out from decode within it, at sizes
/// where the fixed part no longer hides a factor.
#[test]
fn densest_messages_stay_within_the_factor() {
    let shapes: [(&str, &[u8]); 5] = [
        ("empty releases", b"\x0a\x00"),
        ("releases with one dependency", b"\x0a\x02\x1a\x00"),
        ("releases with one advisory index", b"\x0a\x02\x30\x00"),
        ("advisories with one alias", b"\x22\x02\x3a\x00"),
        ("retired releases", b"\x0a\x02\x22\x00"),
    ];
    for (what, entry) in shapes {
        let bytes = entry.repeat(200_000 / entry.len());
        let (package, peak) = peak_heap(|| Package::decode(bytes.as_slice()));
        let package = package.unwrap();
        assert!(!package.releases.is_empty() || !package.advisories.is_empty());
        let per_byte = peak / bytes.len();
        assert!(
            per_byte <= PROTO_HEAP_PER_BYTE,
            "{what}: {per_byte} bytes of heap per input byte"
        );
    }
    let versions = b"\x0a\x02\x12\x00".repeat(50_000);
    let (decoded, peak) = peak_heap(|| Versions::decode(versions.as_slice()));
    assert_eq!(decoded.unwrap().packages.len(), 50_000);
    assert!(peak <= PROTO_HEAP_PER_BYTE * versions.len());
}

/// Group nesting past prost's recursion limit is an error, not a stack overflow.
#[test]
fn deep_groups_are_an_error() {
    let deep = b"\x4b".repeat(100_000);
    for bytes in [&deep[..], &[&b"\x0a\x05fixbar"[..], &deep].concat()] {
        assert!(Package::decode(bytes).is_err());
        assert!(Names::decode(bytes).is_err());
    }
}
