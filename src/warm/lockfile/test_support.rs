//! What the formats' tests build their expectations from.

use super::{Digest, HexWant, LockedFile, Pick, PythonWant};

pub fn sha256(hex: &str) -> Digest {
    Digest {
        algorithm: "sha256".into(),
        hex: hex.into(),
    }
}

/// A locked file with its sha256.
pub fn file(filename: &str, hex: &str) -> LockedFile {
    LockedFile {
        filename: filename.into(),
        hashes: vec![sha256(hex)],
    }
}

pub fn want(project: &str, version: &str, files: Vec<LockedFile>) -> PythonWant {
    PythonWant {
        project: project.into(),
        pick: Pick::Locked {
            version: version.into(),
            files,
        },
    }
}

/// A hex release, its checksums lowercased as the readers give them.
pub fn hex(name: &str, version: &str, repo: &str, inner: Option<&str>, outer: Option<&str>) -> HexWant {
    HexWant {
        name: name.into(),
        version: version.into(),
        repo: repo.into(),
        inner_checksum: inner.map(str::to_ascii_lowercase),
        outer_checksum: outer.map(str::to_ascii_lowercase),
    }
}
