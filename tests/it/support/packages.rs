//! Real, installable Python distributions made in Rust, the same bytes on every run, and a fake
//! upstream index that serves them the way a public index does.
//!
//! Wheels are pure-Python `py3-none-any` zips with a correct `RECORD`. Sdists are `.tar.gz` files
//! that carry their own PEP 517 backend (`backend.py`, standard library only, `requires = []`),
//! so every installer builds them offline, with build isolation and no build dependency to fetch.

use std::collections::BTreeMap;
use std::io::Write;

use base64::Engine;
use flate2::Compression;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::fake_index::FakeIndex;
use super::fixtures::sha256_hex;

/// One distribution file.
#[derive(Clone)]
pub struct Dist {
    /// The project's normalized name (PEP 503), e.g. `lib-b`.
    pub project: String,
    pub version: String,
    pub filename: String,
    pub bytes: Vec<u8>,
    /// Hex sha256 of `bytes`.
    pub sha256: String,
    pub requires_python: Option<String>,
    /// A wheel's `METADATA` (served as `{url}.metadata`, PEP 658); `None` for an sdist.
    pub metadata: Option<Vec<u8>>,
    /// The `upload-time` [`serve`] gives it (RFC 3339); `None`: a fixed time in 2024.
    pub upload_time: Option<String>,
}

impl Dist {
    /// Where the fake upstream serves the file.
    pub fn path(&self) -> String {
        format!("/files/{}", self.filename)
    }

    /// Where the fake upstream serves the wheel's core metadata.
    pub fn metadata_path(&self) -> String {
        format!("{}.metadata", self.path())
    }
}

/// The dependency tree the client tests install: `app` needs `lib-a>=1.0` and `lib_b`.
///
/// - `app` 3.1 has a wheel and an sdist: installers take the wheel.
/// - `lib-a` has wheels 1.0 (`>=3.8`) and 2.0 (`requires-python >=3.99`): a resolver that reads
///   `requires-python` from the index page (as the mirror must carry it) picks 1.0.
/// - `lib_b` 0.5.2 is an sdist only: every installer has to build it.
pub fn tree() -> Vec<Dist> {
    vec![
        wheel("app", "3.1", &["lib-a>=1.0", "lib_b"], None),
        sdist("app", "3.1", &["lib-a>=1.0", "lib_b"]),
        wheel("lib-a", "1.0", &[], Some(">=3.8")),
        wheel("lib-a", "2.0", &[], Some(">=3.99")),
        sdist("lib_b", "0.5.2", &[]),
    ]
}

/// The versions a correct install of [`tree`] leaves, by import name.
pub const TREE_INSTALLED: [(&str, &str); 3] = [("app", "3.1"), ("lib_a", "1.0"), ("lib_b", "0.5.2")];

/// The `Generator` of wheels made here; the sdists' backend writes [`BACKEND_GENERATOR`].
pub const WHEEL_GENERATOR: &str = "pkgmirror-tests";
pub const BACKEND_GENERATOR: &str = "pkgmirror-test-backend";

/// PEP 503 normalization: lower case, runs of `-_.` become one `-`.
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_run = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_run {
                out.push('-');
            }
            in_run = true;
        } else {
            out.push(c.to_ascii_lowercase());
            in_run = false;
        }
    }
    out
}

/// The name as it appears in file names and as the import package: normalized, with `_`.
fn underscored(name: &str) -> String {
    normalize(name).replace('-', "_")
}

/// Core metadata (`METADATA` in a wheel, `PKG-INFO` in an sdist).
fn core_metadata(name: &str, version: &str, requires: &[&str], requires_python: Option<&str>) -> Vec<u8> {
    let mut text = format!(
        "Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: {name}, a pkgmirror test package\n"
    );
    if let Some(spec) = requires_python {
        text.push_str(&format!("Requires-Python: {spec}\n"));
    }
    for requirement in requires {
        text.push_str(&format!("Requires-Dist: {requirement}\n"));
    }
    text.into_bytes()
}

fn init_py(name: &str, version: &str) -> Vec<u8> {
    format!("\"\"\"{name}, a pkgmirror test package.\"\"\"\n\n__version__ = \"{version}\"\n").into_bytes()
}

/// A `py3-none-any` wheel: `{pkg}/__init__.py` defining `__version__`, and its `.dist-info`.
pub fn wheel(name: &str, version: &str, requires: &[&str], requires_python: Option<&str>) -> Dist {
    let dist = underscored(name);
    let dist_info = format!("{dist}-{version}.dist-info");
    let metadata = core_metadata(name, version, requires, requires_python);
    let wheel_file = format!(
        "Wheel-Version: 1.0\nGenerator: {WHEEL_GENERATOR}\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    );
    let mut entries: Vec<(String, Vec<u8>)> = vec![
        (format!("{dist}/__init__.py"), init_py(name, version)),
        (format!("{dist_info}/METADATA"), metadata.clone()),
        (format!("{dist_info}/WHEEL"), wheel_file.into_bytes()),
    ];
    let mut record = String::new();
    for (path, data) in &entries {
        let digest = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(data));
        record.push_str(&format!("{path},sha256={digest},{}\n", data.len()));
    }
    record.push_str(&format!("{dist_info}/RECORD,,\n"));
    entries.push((format!("{dist_info}/RECORD"), record.into_bytes()));

    let mut zip = ZipWriter::default();
    for (path, data) in &entries {
        zip.add(path, data);
    }
    let bytes = zip.finish();
    Dist {
        project: normalize(name),
        version: version.into(),
        filename: format!("{dist}-{version}-py3-none-any.whl"),
        sha256: sha256_hex(&bytes),
        bytes,
        requires_python: requires_python.map(Into::into),
        metadata: Some(metadata),
        upload_time: None,
    }
}

/// An sdist `{dist}-{version}.tar.gz` with `PKG-INFO`, a `pyproject.toml` naming the in-tree
/// backend, `backend.py` and the package.
pub fn sdist(name: &str, version: &str, requires: &[&str]) -> Dist {
    let dist = underscored(name);
    let base = format!("{dist}-{version}");
    let pyproject = "[build-system]\nrequires = []\nbuild-backend = \"backend\"\nbackend-path = [\".\"]\n";
    let backend = format!(
        "DIST = {dist:?}\nVERSION = {version:?}\nPACKAGE = {dist:?}\nGENERATOR = {BACKEND_GENERATOR:?}\n{BACKEND}"
    );
    let files: Vec<(String, Vec<u8>)> = vec![
        ("PKG-INFO".into(), core_metadata(name, version, requires, None)),
        ("pyproject.toml".into(), pyproject.as_bytes().to_vec()),
        ("backend.py".into(), backend.into_bytes()),
        (format!("{dist}/__init__.py"), init_py(name, version)),
    ];
    let mut tar = Vec::new();
    tar.extend_from_slice(&tar_header(&format!("{base}/"), 0, true));
    tar.extend_from_slice(&tar_header(&format!("{base}/{dist}/"), 0, true));
    for (path, data) in &files {
        tar.extend_from_slice(&tar_header(&format!("{base}/{path}"), data.len(), false));
        tar.extend_from_slice(data);
        tar.resize(tar.len().next_multiple_of(512), 0);
    }
    tar.resize(tar.len() + 1024, 0);
    // flate2's gzip header has mtime 0 and no file name: the bytes depend on the content only.
    let mut gz = flate2::GzBuilder::new().write(Vec::new(), Compression::default());
    gz.write_all(&tar).unwrap();
    let bytes = gz.finish().unwrap();
    Dist {
        project: normalize(name),
        version: version.into(),
        filename: format!("{base}.tar.gz"),
        sha256: sha256_hex(&bytes),
        bytes,
        requires_python: None,
        metadata: None,
        upload_time: None,
    }
}

/// The PEP 517 backend shipped in every sdist (after its `DIST`, `VERSION`, `PACKAGE` and
/// `GENERATOR` constants): builds a `py3-none-any` wheel of the `PACKAGE` directory with
/// `PKG-INFO` as its metadata, using the standard library only.
const BACKEND: &str = r#"
import base64
import hashlib
import io
import os
import tarfile
import zipfile

ROOT = os.path.dirname(os.path.abspath(__file__))
DIST_INFO = f"{DIST}-{VERSION}.dist-info"
WHEEL = (
    "Wheel-Version: 1.0\n"
    f"Generator: {GENERATOR}\n"
    "Root-Is-Purelib: true\n"
    "Tag: py3-none-any\n"
).encode()


def _read(name):
    with open(os.path.join(ROOT, name), "rb") as f:
        return f.read()


def _package_files():
    found = []
    for dirpath, dirnames, filenames in os.walk(os.path.join(ROOT, PACKAGE)):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for filename in sorted(filenames):
            path = os.path.relpath(os.path.join(dirpath, filename), ROOT)
            found.append(path.replace(os.sep, "/"))
    return found


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    target = os.path.join(metadata_directory, DIST_INFO)
    os.makedirs(target, exist_ok=True)
    with open(os.path.join(target, "METADATA"), "wb") as f:
        f.write(_read("PKG-INFO"))
    with open(os.path.join(target, "WHEEL"), "wb") as f:
        f.write(WHEEL)
    return DIST_INFO


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    filename = f"{DIST}-{VERSION}-py3-none-any.whl"
    entries = [(name, _read(name)) for name in _package_files()]
    entries.append((f"{DIST_INFO}/METADATA", _read("PKG-INFO")))
    entries.append((f"{DIST_INFO}/WHEEL", WHEEL))
    record = ""
    for name, data in entries:
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record += f"{name},sha256={digest},{len(data)}\n"
    record += f"{DIST_INFO}/RECORD,,\n"
    entries.append((f"{DIST_INFO}/RECORD", record.encode()))
    with zipfile.ZipFile(os.path.join(wheel_directory, filename), "w") as archive:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return filename


def build_sdist(sdist_directory, config_settings=None):
    base = f"{DIST}-{VERSION}"
    filename = f"{base}.tar.gz"
    names = ["PKG-INFO", "pyproject.toml", "backend.py"] + _package_files()
    with tarfile.open(os.path.join(sdist_directory, filename), "w:gz") as archive:
        for name in names:
            data = _read(name)
            info = tarfile.TarInfo(f"{base}/{name}")
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 1577836800
            archive.addfile(info, io.BytesIO(data))
    return filename
"#;

// ---------------------------------------------------------------------------------------------
// Archive writers: just enough of zip and ustar, with fixed timestamps and modes.

/// 2020-01-01 00:00:00 in MS-DOS form (zip), and as a Unix time (tar).
const DOS_DATE: u16 = ((2020 - 1980) << 9) | (1 << 5) | 1;
const DOS_TIME: u16 = 0;
const UNIX_TIME: u64 = 1_577_836_800;

#[derive(Default)]
struct ZipWriter {
    out: Vec<u8>,
    central: Vec<u8>,
    entries: u16,
}

impl ZipWriter {
    /// Adds a regular file (mode 0644), deflated.
    fn add(&mut self, name: &str, data: &[u8]) {
        let mut crc = flate2::Crc::new();
        crc.update(data);
        let crc = crc.sum();
        let mut deflate = flate2::write::DeflateEncoder::new(Vec::new(), Compression::default());
        deflate.write_all(data).unwrap();
        let compressed = deflate.finish().unwrap();
        let offset = u32::try_from(self.out.len()).unwrap();
        let name_len = u16::try_from(name.len()).unwrap();
        let sizes = [
            u32::try_from(compressed.len()).unwrap(),
            u32::try_from(data.len()).unwrap(),
        ];

        // Local file header.
        let out = &mut self.out;
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        out.extend_from_slice(&20u16.to_le_bytes()); // version needed: 2.0
        out.extend_from_slice(&0u16.to_le_bytes()); // flags
        out.extend_from_slice(&8u16.to_le_bytes()); // method: deflate
        out.extend_from_slice(&DOS_TIME.to_le_bytes());
        out.extend_from_slice(&DOS_DATE.to_le_bytes());
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&sizes[0].to_le_bytes());
        out.extend_from_slice(&sizes[1].to_le_bytes());
        out.extend_from_slice(&name_len.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes()); // extra length
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&compressed);

        // Central directory entry.
        let cd = &mut self.central;
        cd.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        cd.extend_from_slice(&((3u16 << 8) | 20).to_le_bytes()); // made by: Unix, 2.0
        cd.extend_from_slice(&20u16.to_le_bytes());
        cd.extend_from_slice(&0u16.to_le_bytes());
        cd.extend_from_slice(&8u16.to_le_bytes());
        cd.extend_from_slice(&DOS_TIME.to_le_bytes());
        cd.extend_from_slice(&DOS_DATE.to_le_bytes());
        cd.extend_from_slice(&crc.to_le_bytes());
        cd.extend_from_slice(&sizes[0].to_le_bytes());
        cd.extend_from_slice(&sizes[1].to_le_bytes());
        cd.extend_from_slice(&name_len.to_le_bytes());
        cd.extend_from_slice(&0u16.to_le_bytes()); // extra length
        cd.extend_from_slice(&0u16.to_le_bytes()); // comment length
        cd.extend_from_slice(&0u16.to_le_bytes()); // disk number
        cd.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
        cd.extend_from_slice(&(0o100_644u32 << 16).to_le_bytes()); // external: regular file 0644
        cd.extend_from_slice(&offset.to_le_bytes());
        cd.extend_from_slice(name.as_bytes());
        self.entries += 1;
    }

    fn finish(mut self) -> Vec<u8> {
        let cd_offset = u32::try_from(self.out.len()).unwrap();
        let cd_size = u32::try_from(self.central.len()).unwrap();
        self.out.extend_from_slice(&self.central);
        let out = &mut self.out;
        out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes()); // this disk
        out.extend_from_slice(&0u16.to_le_bytes()); // disk with the central directory
        out.extend_from_slice(&self.entries.to_le_bytes());
        out.extend_from_slice(&self.entries.to_le_bytes());
        out.extend_from_slice(&cd_size.to_le_bytes());
        out.extend_from_slice(&cd_offset.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes()); // comment length
        self.out
    }
}

/// A ustar header block for a regular file (mode 0644) or a directory (0755), owned by 0:0.
fn tar_header(path: &str, size: usize, dir: bool) -> [u8; 512] {
    fn put(block: &mut [u8; 512], at: usize, bytes: &[u8]) {
        block[at..at + bytes.len()].copy_from_slice(bytes);
    }
    assert!(
        path.len() < 100,
        "tar path too long for a plain ustar name: {path}"
    );
    let mut block = [0u8; 512];
    put(&mut block, 0, path.as_bytes());
    put(
        &mut block,
        100,
        format!("{:07o}\0", if dir { 0o755 } else { 0o644 }).as_bytes(),
    );
    put(&mut block, 108, b"0000000\0");
    put(&mut block, 116, b"0000000\0");
    put(&mut block, 124, format!("{size:011o}\0").as_bytes());
    put(&mut block, 136, format!("{UNIX_TIME:011o}\0").as_bytes());
    put(&mut block, 148, b"        "); // the checksum counts its own field as spaces
    block[156] = if dir { b'5' } else { b'0' };
    put(&mut block, 257, b"ustar\0");
    put(&mut block, 263, b"00");
    put(&mut block, 265, b"root");
    put(&mut block, 297, b"root");
    let checksum: u32 = block.iter().map(|&b| u32::from(b)).sum();
    put(&mut block, 148, format!("{checksum:06o}\0 ").as_bytes());
    block
}

// ---------------------------------------------------------------------------------------------
// The fake upstream

/// Serves `dists` from `fake` as an index does: a PEP 691 JSON page per project whose file URLs
/// are absolute (`http://127.0.0.1:PORT/files/{filename}`), the files themselves, each wheel's
/// `{url}.metadata` (PEP 658), and the project list.
pub fn serve(fake: &FakeIndex, dists: &[Dist]) {
    let mut projects: BTreeMap<&str, Vec<&Dist>> = BTreeMap::new();
    for dist in dists {
        projects.entry(&dist.project).or_default().push(dist);
    }
    for (project, files) in &projects {
        let mut versions: Vec<&str> = Vec::new();
        let mut entries: Vec<Value> = Vec::new();
        for dist in files {
            if !versions.contains(&dist.version.as_str()) {
                versions.push(&dist.version);
            }
            let mut entry = json!({
                "filename": dist.filename,
                "url": format!("http://{}{}", fake.addr, dist.path()),
                "hashes": {"sha256": dist.sha256},
                "size": dist.bytes.len(),
                "upload-time": dist.upload_time.as_deref().unwrap_or("2024-05-06T07:08:09.123456Z"),
                "yanked": false,
            });
            if let Some(spec) = &dist.requires_python {
                entry["requires-python"] = json!(spec);
            }
            fake.file(&dist.path(), "application/octet-stream", dist.bytes.clone());
            if let Some(metadata) = &dist.metadata {
                entry["core-metadata"] = json!({"sha256": sha256_hex(metadata)});
                fake.file(
                    &dist.metadata_path(),
                    "application/octet-stream",
                    metadata.clone(),
                );
            }
            entries.push(entry);
        }
        fake.json(
            &format!("{project}/"),
            &json!({
                "meta": {"api-version": "1.1"},
                "name": project,
                "versions": versions,
                "files": entries,
            }),
        );
    }
    let list: Vec<Value> = projects.keys().map(|name| json!({"name": name})).collect();
    fake.json("", &json!({"meta": {"api-version": "1.1"}, "projects": list}));
}

#[test]
fn distributions_are_byte_stable_and_well_formed() {
    for (a, b) in tree().iter().zip(tree().iter()) {
        assert_eq!(a.filename, b.filename);
        assert_eq!(a.bytes, b.bytes, "{} differs between two builds", a.filename);
        assert_eq!(a.sha256, sha256_hex(&a.bytes));
    }
    let names: Vec<String> = tree().into_iter().map(|d| d.filename).collect();
    assert_eq!(
        names,
        [
            "app-3.1-py3-none-any.whl",
            "app-3.1.tar.gz",
            "lib_a-1.0-py3-none-any.whl",
            "lib_a-2.0-py3-none-any.whl",
            "lib_b-0.5.2.tar.gz",
        ]
    );
    assert_eq!(normalize("Lib__B.x"), "lib-b-x");
    // A gzip stream (magic, deflate) and a zip (local header first, end record last).
    let sdist = sdist("x", "1", &[]);
    assert_eq!(&sdist.bytes[..3], &[0x1f, 0x8b, 8]);
    let wheel = wheel("x", "1", &[], None);
    assert_eq!(&wheel.bytes[..4], b"PK\x03\x04");
    assert_eq!(&wheel.bytes[wheel.bytes.len() - 22..][..4], b"PK\x05\x06");
}
