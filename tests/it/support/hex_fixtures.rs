//! A fixture hex repository made in Rust, the same bytes on every run: registry files
//! (`/names`, `/versions`, `/packages/{name}`) as gzip(Signed{...}) signed with the committed test
//! key, and tarballs a real rebar3 unpacks and compiles (an Erlang application per package).
//!
//! Formats follow hex_core: `hex_registry:build_*` for registry files, `hex_tarball:create/2`
//! for tarballs (outer uncompressed tar of VERSION "3", CHECKSUM, metadata.config,
//! contents.tar.gz; CHECKSUM is the upper-case hex sha256 of the other three concatenated).
//! Timestamps are fixed (tar mtime 0, gzip mtime 0, registry times at [`PUBLISHED_AT`]).

use std::collections::BTreeMap;
use std::io::Write;

use flate2::{Compression, GzBuilder};
use pkgmirror::hex::{
    Dependency, Names, NamesPackage, Package, Release, RetirementReason, RetirementStatus, Signed, Timestamp,
    Versions, VersionsPackage,
};
use prost::Message;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::sha2::Sha512;
use rsa::signature::{SignatureEncoding, Signer};
use sha2::{Digest, Sha256};

use super::fake_index::FakeIndex;

/// The test key's public half (SPKI PEM): what the mirror and rebar3 are configured with.
pub const TEST_PUBLIC_KEY: &str = include_str!("../../fixtures/hex/test_key.pub.pem");
const TEST_KEY: &str = include_str!("../../fixtures/hex/test_key.pem");
const OTHER_KEY: &str = include_str!("../../fixtures/hex/other_key.pem");

/// Every time in the registry files: 2024-01-01T00:00:00Z.
pub const PUBLISHED_AT: i64 = 1_704_067_200;

/// Which committed key signs the registry files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignWith {
    /// `test_key.pem`, whose public half is [`TEST_PUBLIC_KEY`].
    TestKey,
    /// `other_key.pem`: files the mirror must refuse ("signed by another key").
    OtherKey,
}

/// One release to put in the repository.
#[derive(Clone, Debug)]
pub struct ReleaseSpec {
    pub version: String,
    /// (package, requirement), e.g. `("fixfoo", "~> 1.0")`.
    pub deps: Vec<(String, String)>,
    pub retired: Option<(RetirementReason, String)>,
}

/// A release of `version` depending on `deps`.
pub fn release(version: &str, deps: &[(&str, &str)]) -> ReleaseSpec {
    ReleaseSpec {
        version: version.to_owned(),
        deps: deps
            .iter()
            .map(|(p, r)| ((*p).to_owned(), (*r).to_owned()))
            .collect(),
        retired: None,
    }
}

impl ReleaseSpec {
    /// Marks the release retired.
    pub fn retired(mut self, reason: RetirementReason, message: &str) -> Self {
        self.retired = Some((reason, message.to_owned()));
        self
    }
}

/// A built tarball and its checksums.
#[derive(Clone, Debug)]
pub struct Tarball {
    pub bytes: Vec<u8>,
    /// sha256 of `bytes` (the registry's `outer_checksum`).
    pub outer_checksum: [u8; 32],
    /// sha256 of VERSION ‖ metadata.config ‖ contents.tar.gz (the `CHECKSUM` member).
    pub inner_checksum: [u8; 32],
    pub metadata: String,
}

/// Builds a [`HexRepo`].
pub struct HexRepoBuilder {
    packages: BTreeMap<String, Vec<ReleaseSpec>>,
    repository: String,
    sign_with: SignWith,
}

impl HexRepoBuilder {
    pub fn new() -> Self {
        Self {
            packages: BTreeMap::new(),
            repository: "hexpm".to_owned(),
            sign_with: SignWith::TestKey,
        }
    }

    /// Adds a package (an Erlang application of the same name) with its releases, oldest first.
    pub fn package(mut self, name: &str, releases: Vec<ReleaseSpec>) -> Self {
        self.packages.insert(name.to_owned(), releases);
        self
    }

    /// The repository name the registry files carry (`hexpm` unless set).
    pub fn repository(mut self, name: &str) -> Self {
        self.repository = name.to_owned();
        self
    }

    /// The key that signs the registry files.
    pub fn sign_with(mut self, key: SignWith) -> Self {
        self.sign_with = key;
        self
    }

    pub fn build(self) -> HexRepo {
        let pem = match self.sign_with {
            SignWith::TestKey => TEST_KEY,
            SignWith::OtherKey => OTHER_KEY,
        };
        let key = SigningKey::<Sha512>::new(rsa::PrivateKey::from_pkcs8_pem(pem).unwrap());
        let stamp = Some(Timestamp {
            seconds: PUBLISHED_AT,
            nanos: 0,
        });

        let mut files = BTreeMap::new();
        let mut packages = BTreeMap::new();
        let mut tarballs = BTreeMap::new();
        for (name, specs) in &self.packages {
            let mut releases = Vec::new();
            for spec in specs {
                let tarball = build_tarball(name, spec, &self.repository);
                releases.push(Release {
                    version: spec.version.clone(),
                    inner_checksum: tarball.inner_checksum.to_vec(),
                    dependencies: spec
                        .deps
                        .iter()
                        .map(|(package, requirement)| Dependency {
                            package: package.clone(),
                            requirement: requirement.clone(),
                            optional: None,
                            app: None,
                            repository: None,
                        })
                        .collect(),
                    retired: spec.retired.as_ref().map(|(reason, message)| RetirementStatus {
                        reason: *reason as i32,
                        message: Some(message.clone()),
                    }),
                    outer_checksum: Some(tarball.outer_checksum.to_vec()),
                    advisory_indexes: vec![],
                    published_at: stamp,
                });
                files.insert(
                    format!("/tarballs/{name}-{}.tar", spec.version),
                    tarball.bytes.clone(),
                );
                tarballs.insert((name.clone(), spec.version.clone()), tarball);
            }
            let package = Package {
                releases,
                name: name.clone(),
                repository: self.repository.clone(),
                advisories: vec![],
            };
            files.insert(format!("/packages/{name}"), registry_file(&package, &key));
            packages.insert(name.clone(), package);
        }

        let names = Names {
            packages: self
                .packages
                .keys()
                .map(|name| NamesPackage {
                    name: name.clone(),
                    updated_at: stamp,
                })
                .collect(),
            repository: self.repository.clone(),
        };
        let versions = Versions {
            packages: self
                .packages
                .iter()
                .map(|(name, specs)| VersionsPackage {
                    name: name.clone(),
                    versions: specs.iter().map(|s| s.version.clone()).collect(),
                    retired: (0..specs.len())
                        .filter(|&i| specs[i].retired.is_some())
                        .map(|i| i32::try_from(i).unwrap())
                        .collect(),
                    with_advisories: vec![],
                })
                .collect(),
            repository: self.repository.clone(),
        };
        files.insert("/names".to_owned(), registry_file(&names, &key));
        files.insert("/versions".to_owned(), registry_file(&versions, &key));
        files.insert("/public_key".to_owned(), TEST_PUBLIC_KEY.as_bytes().to_vec());
        HexRepo {
            files,
            packages,
            tarballs,
        }
    }
}

/// A built repository: every file by its path under the repository root, and what went in.
pub struct HexRepo {
    /// `/names`, `/versions`, `/packages/{name}`, `/tarballs/{name}-{version}.tar`,
    /// `/public_key`. Public so fault tests can tamper with a file before serving it.
    pub files: BTreeMap<String, Vec<u8>>,
    /// The `/packages/{name}` payloads, unsigned.
    pub packages: BTreeMap<String, Package>,
    /// The tarballs by (name, version).
    pub tarballs: BTreeMap<(String, String), Tarball>,
}

impl HexRepo {
    /// The file at `path` (e.g. `/packages/fixbar`).
    pub fn file(&self, path: &str) -> &[u8] {
        self.files
            .get(path)
            .unwrap_or_else(|| panic!("the fixture repository has no {path}"))
    }

    pub fn tarball(&self, name: &str, version: &str) -> &Tarball {
        &self.tarballs[&(name.to_owned(), version.to_owned())]
    }
}

/// Serves every file of `repo` at its path.
pub fn serve(fake: &FakeIndex, repo: &HexRepo) {
    for (path, bytes) in &repo.files {
        fake.file(path, "application/octet-stream", bytes.clone());
    }
}

/// The repository the client tests use: `fixbar` 0.1.0 needs `fixfoo ~> 1.0`; `fixfoo` has
/// 1.0.0 (retired) and 1.1.0, so a resolver picks 1.1.0; `fixbaz` 2.0.0-rc.1+build.5 has a
/// version with `-` and `+` in its tarball name.
pub fn standard() -> HexRepo {
    standard_packages().build()
}

/// The packages of [`standard`], for a repository that adds more.
pub fn standard_packages() -> HexRepoBuilder {
    HexRepoBuilder::new()
        .package(
            "fixfoo",
            vec![
                release("1.0.0", &[]).retired(RetirementReason::Deprecated, "use 1.1.0"),
                release("1.1.0", &[]),
            ],
        )
        .package("fixbar", vec![release("0.1.0", &[("fixfoo", "~> 1.0")])])
        .package("fixbaz", vec![release("2.0.0-rc.1+build.5", &[])])
}

// ---------------------------------------------------------------------------------------------
// Encoding

/// gzip(Signed{payload, signature}) as hex_registry:build_* makes it, with a fixed gzip header.
fn registry_file(message: &impl Message, key: &SigningKey<Sha512>) -> Vec<u8> {
    let payload = message.encode_to_vec();
    let signature = Some(key.sign(&payload).to_vec());
    gzip(&Signed { payload, signature }.encode_to_vec())
}

/// gzip at a fixed level, mtime 0, no file name: the bytes depend on the content only.
fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = GzBuilder::new().mtime(0).write(Vec::new(), Compression::new(6));
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// A hex tarball of an Erlang application `name` (the package and app names are the same).
fn build_tarball(name: &str, spec: &ReleaseSpec, repository: &str) -> Tarball {
    let version = &spec.version;
    let apps: String = spec.deps.iter().map(|(dep, _)| format!(", {dep}")).collect();
    let app_src = format!(
        "{{application, {name}, [\n    {{description, \"{name}, a hex fixture\"}},\n    \
         {{vsn, \"{version}\"}},\n    {{registered, []}},\n    \
         {{applications, [kernel, stdlib{apps}]}},\n    {{env, []}},\n    {{modules, []}}\n]}}.\n"
    );
    let module = format!("-module({name}).\n-export([version/0]).\n\nversion() -> <<\"{version}\">>.\n");
    let deps: Vec<String> = spec
        .deps
        .iter()
        .map(|(dep, req)| format!("{{{dep}, \"{req}\"}}"))
        .collect();
    let rebar_config = format!("{{erl_opts, [debug_info]}}.\n{{deps, [{}]}}.\n", deps.join(", "));
    let contents = [
        ("rebar.config".to_owned(), rebar_config.into_bytes()),
        (format!("src/{name}.app.src"), app_src.into_bytes()),
        (format!("src/{name}.erl"), module.into_bytes()),
    ];
    let contents_gz = gzip(&tar(&contents));

    let metadata = metadata_config(name, spec, repository, &contents);
    let mut hasher = Sha256::new();
    hasher.update(b"3");
    hasher.update(metadata.as_bytes());
    hasher.update(&contents_gz);
    let inner_checksum: [u8; 32] = hasher.finalize().into();

    let bytes = tar(&[
        ("VERSION".to_owned(), b"3".to_vec()),
        (
            "CHECKSUM".to_owned(),
            hex::encode_upper(inner_checksum).into_bytes(),
        ),
        ("metadata.config".to_owned(), metadata.clone().into_bytes()),
        ("contents.tar.gz".to_owned(), contents_gz),
    ]);
    Tarball {
        outer_checksum: Sha256::digest(&bytes).into(),
        inner_checksum,
        bytes,
        metadata,
    }
}

/// `metadata.config` as hex_tarball:encode_metadata/1 writes it: one `{Key, Value}.` term per
/// line, binary keys in sorted order, requirements in the current (non-legacy) form.
fn metadata_config(
    name: &str,
    spec: &ReleaseSpec,
    repository: &str,
    contents: &[(String, Vec<u8>)],
) -> String {
    let bin = |s: &str| format!("<<\"{}\">>", s.replace('\\', "\\\\").replace('"', "\\\""));
    let list = |items: Vec<String>| format!("[{}]", items.join(","));
    let requirements = spec
        .deps
        .iter()
        .map(|(dep, req)| {
            format!(
                "{{{},[{{{},{}}},{{{},false}},{{{},{}}},{{{},{}}}]}}",
                bin(dep),
                bin("app"),
                bin(dep),
                bin("optional"),
                bin("requirement"),
                bin(req),
                bin("repository"),
                bin(repository),
            )
        })
        .collect();
    let entries = [
        ("app", bin(name)),
        ("build_tools", list(vec![bin("rebar3")])),
        ("description", bin(&format!("{name}, a hex fixture"))),
        (
            "files",
            list(contents.iter().map(|(path, _)| bin(path)).collect()),
        ),
        ("licenses", list(vec![bin("Apache-2.0")])),
        ("links", list(vec![])),
        ("name", bin(name)),
        ("requirements", list(requirements)),
        ("version", bin(&spec.version)),
    ];
    entries
        .iter()
        .map(|(key, value)| format!("{{{},{value}}}.\n", bin(key)))
        .collect()
}

/// An uncompressed ustar archive of regular files (mode 0644, owner 0:0, mtime 0) and the two
/// zero blocks that end it.
fn tar(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (path, data) in files {
        out.extend_from_slice(&tar_header(path, data.len()));
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(512), 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

fn tar_header(path: &str, size: usize) -> [u8; 512] {
    assert!(path.len() < 100, "tar path too long for ustar: {path}");
    let mut block = [0u8; 512];
    let mut put = |at: usize, bytes: &[u8]| block[at..at + bytes.len()].copy_from_slice(bytes);
    put(0, path.as_bytes());
    put(100, b"0000644\0");
    put(108, b"0000000\0");
    put(116, b"0000000\0");
    put(124, format!("{size:011o}\0").as_bytes());
    put(136, b"00000000000\0");
    put(148, b"        "); // the checksum counts its own field as spaces
    put(156, b"0");
    put(257, b"ustar\0");
    put(263, b"00");
    let checksum: u32 = block.iter().map(|&b| u32::from(b)).sum();
    block[148..156].copy_from_slice(format!("{checksum:06o}\0 ").as_bytes());
    block
}

// ---------------------------------------------------------------------------------------------
// The builder checked with the mirror's own verification

#[cfg(test)]
mod tests {
    use std::io::Read;

    use pkgmirror::hex::{
        HexPublicKey, RegistryError, RegistryVerifier, check_tarball, read_outer_tarball, verify_tarball,
    };

    use super::*;

    fn verifier() -> RegistryVerifier {
        RegistryVerifier::new(HexPublicKey::from_pem(TEST_PUBLIC_KEY).unwrap())
    }

    /// The members of an uncompressed ustar archive, by path.
    fn untar(mut tar: &[u8]) -> BTreeMap<String, Vec<u8>> {
        let mut members = BTreeMap::new();
        while tar.len() >= 512 && tar[..512].iter().any(|&b| b != 0) {
            let name_end = tar[..100].iter().position(|&b| b == 0).unwrap();
            let name = String::from_utf8(tar[..name_end].to_vec()).unwrap();
            let size_field = std::str::from_utf8(&tar[124..135]).unwrap();
            let size = usize::from_str_radix(size_field, 8).unwrap();
            members.insert(name, tar[512..512 + size].to_vec());
            tar = &tar[512 + size.next_multiple_of(512)..];
        }
        members
    }

    #[test]
    fn hex_fixture_registry_files_verify() {
        let repo = standard();
        let v = verifier();

        let names = v.names(repo.file("/names")).unwrap();
        let listed: Vec<&str> = names.packages.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(listed, ["fixbar", "fixbaz", "fixfoo"]);

        let versions = v.versions(repo.file("/versions")).unwrap();
        let fixfoo = versions.packages.iter().find(|p| p.name == "fixfoo").unwrap();
        assert_eq!(fixfoo.versions, ["1.0.0", "1.1.0"]);
        assert_eq!(fixfoo.retired, [0]);

        for (name, expected) in &repo.packages {
            let package = v.package(name, repo.file(&format!("/packages/{name}"))).unwrap();
            assert_eq!(&package, expected);
        }
        let fixbar = &repo.packages["fixbar"];
        let infos = fixbar.release_infos();
        assert_eq!(infos[0].dependencies[0].package, "fixfoo");
        assert_eq!(infos[0].dependencies[0].requirement, "~> 1.0");
        assert_eq!(infos[0].published_at, Some(PUBLISHED_AT));
        let retired = repo.packages["fixfoo"].release_infos()[0].retired.clone();
        assert_eq!(retired.unwrap().reason, RetirementReason::Deprecated);
        assert_eq!(
            repo.file("/public_key"),
            TEST_PUBLIC_KEY.as_bytes(),
            "the served key is the test key"
        );
    }

    #[test]
    fn hex_fixture_tarballs_match_their_releases() {
        let repo = standard();
        for ((name, version), tarball) in &repo.tarballs {
            let bytes = repo.file(&format!("/tarballs/{name}-{version}.tar"));
            assert_eq!(bytes, tarball.bytes.as_slice());
            let package = &repo.packages[name];
            let release = package.release(version).unwrap();
            let sha256 = hex::encode(Sha256::digest(bytes));
            assert_eq!(package.outer_checksum(version).unwrap(), sha256);
            assert_eq!(
                tarball.outer_checksum.as_slice(),
                Sha256::digest(bytes).as_slice()
            );

            // The CHECKSUM member is the inner checksum, upper case, as hex_core writes it.
            let outer = read_outer_tarball(bytes).unwrap();
            assert_eq!(outer.version, b"3");
            assert_eq!(
                outer.checksum,
                hex::encode_upper(&release.inner_checksum).as_bytes()
            );
            let sums = check_tarball(bytes).unwrap();
            assert_eq!(sums.inner, tarball.inner_checksum);
            assert_eq!(verify_tarball(bytes, release), Ok(sums));

            // Our own reading of the tar agrees, and the contents are an Erlang application.
            let members = untar(bytes);
            let member_names: Vec<&str> = members.keys().map(String::as_str).collect();
            assert_eq!(
                member_names,
                ["CHECKSUM", "VERSION", "contents.tar.gz", "metadata.config"]
            );
            let mut contents = Vec::new();
            flate2::read::GzDecoder::new(members["contents.tar.gz"].as_slice())
                .read_to_end(&mut contents)
                .unwrap();
            let files = untar(&contents);
            let app_src = String::from_utf8(files[&format!("src/{name}.app.src")].clone()).unwrap();
            assert!(app_src.contains(&format!("{{vsn, \"{version}\"}}")), "{app_src}");
            assert!(files.contains_key(&format!("src/{name}.erl")));
            assert!(files.contains_key("rebar.config"));

            let metadata = &tarball.metadata;
            assert_eq!(metadata.as_bytes(), outer.metadata);
            assert!(metadata.contains(&format!("{{<<\"name\">>,<<\"{name}\">>}}.\n")));
            assert!(metadata.contains(&format!("{{<<\"version\">>,<<\"{version}\">>}}.\n")));
            assert!(metadata.contains("{<<\"build_tools\">>,[<<\"rebar3\">>]}.\n"));
        }
        let fixbar = repo.tarball("fixbar", "0.1.0");
        assert!(fixbar.metadata.contains(
            "{<<\"requirements\">>,[{<<\"fixfoo\">>,[{<<\"app\">>,<<\"fixfoo\">>},{<<\"optional\">>,false},{<<\"requirement\">>,<<\"~> 1.0\">>},{<<\"repository\">>,<<\"hexpm\">>}]}]}.\n"
        ));
        assert!(repo.files.contains_key("/tarballs/fixbaz-2.0.0-rc.1+build.5.tar"));
    }

    #[test]
    fn hex_fixture_bytes_are_stable() {
        let (a, b) = (standard(), standard());
        assert_eq!(a.files, b.files);
        // Four members of at most one block each, the two end blocks; the first member VERSION.
        let fixfoo = a.tarball("fixfoo", "1.1.0");
        assert_eq!(fixfoo.bytes.len(), 4 * 1024 + 1024);
        assert_eq!(&fixfoo.bytes[..7], b"VERSION");
    }

    #[test]
    fn hex_fixture_faults_are_refused() {
        let other = HexRepoBuilder::new()
            .package("fixfoo", vec![release("1.0.0", &[])])
            .sign_with(SignWith::OtherKey)
            .build();
        assert!(matches!(
            verifier().package("fixfoo", other.file("/packages/fixfoo")),
            Err(RegistryError::BadSignature { .. })
        ));
        let evil = HexRepoBuilder::new()
            .package("fixfoo", vec![release("1.0.0", &[])])
            .repository("evil")
            .build();
        let err = verifier().names(evil.file("/names")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the registry file /names names the repository 'evil' where 'hexpm' was expected"
        );
        // A tarball tampered with after publication no longer matches its release.
        let mut repo = standard();
        let path = "/tarballs/fixfoo-1.1.0.tar";
        let tampered = repo.files.get_mut(path).unwrap();
        let last_data = tampered.len() - 1024 - 1;
        tampered[last_data] ^= 1;
        let release = repo.packages["fixfoo"].release("1.1.0").unwrap();
        assert!(verify_tarball(repo.file(path), release).is_err());
    }
}
