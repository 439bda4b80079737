//! Hosted projects: what the record store keeps of a project uploaded to a hosted index, and the
//! rules an upload must follow (the legacy upload API that twine, uv, poetry and pdm speak).

use serde::{Deserialize, Serialize};

use super::model::{DistFile, Hashes, PageMeta, ProjectPage};
use super::name::{is_safe_filename, normalize, validate_project_name, version_from_filename};

/// A hosted project: its files, in upload order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostedProject {
    /// The name as the first upload spelled it.
    pub name: String,
    pub files: Vec<HostedFile>,
}

/// One uploaded file. Files are immutable: only `yanked` ever changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostedFile {
    pub filename: String,
    pub version: String,
    pub sha256: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires_python: Option<String>,
    /// RFC 3339, UTC.
    pub upload_time: String,
    /// The sha256 of the core metadata extracted from a wheel (served per PEP 658).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_sha256: Option<String>,
    /// The name of the token that uploaded it.
    pub uploader: String,
    /// `Some(reason)` once yanked (PEP 592; the reason may be empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub yanked: Option<String>,
}

impl HostedProject {
    pub fn file(&self, filename: &str) -> Option<&HostedFile> {
        self.files.iter().find(|f| f.filename == filename)
    }

    /// The project as a Simple API page. `url_prefix` plus a file's name is where the catalogue
    /// says it lives (nothing fetches it: the blob is stored).
    pub fn page(&self, url_prefix: &str) -> ProjectPage {
        let sha256 = |digest: &str| Hashes::from_iter([("sha256".to_owned(), digest.to_owned())]);
        let mut versions: Vec<String> = Vec::new();
        let files = self
            .files
            .iter()
            .map(|f| {
                if !versions.contains(&f.version) {
                    versions.push(f.version.clone());
                }
                DistFile {
                    filename: f.filename.clone(),
                    url: format!("{url_prefix}{}", f.filename),
                    hashes: sha256(&f.sha256),
                    requires_python: f.requires_python.clone(),
                    yanked: f.yanked.clone(),
                    core_metadata: f.metadata_sha256.as_deref().map(sha256),
                    gpg_sig: None,
                    size: Some(f.size),
                    upload_time: Some(f.upload_time.clone()),
                    provenance: None,
                }
            })
            .collect();
        ProjectPage {
            name: self.name.clone(),
            files,
            versions: Some(versions),
            project_status: None,
            meta: PageMeta {
                api_version: Some("1.4".into()),
                ..PageMeta::default()
            },
        }
    }
}

/// Checks an upload's project name, version and file name against each other: the file must be
/// a wheel or an sdist (`.tar.gz`, `.zip`) of that project at that version. Returns the
/// project's normalized name.
pub fn check_upload(name: &str, version: &str, filename: &str) -> Result<String, String> {
    validate_project_name(name).map_err(|e| format!("invalid project name {name:?}: {e}"))?;
    let normalized = normalize(name);
    if !is_safe_filename(filename) {
        return Err(format!("invalid file name {filename:?}"));
    }
    let lower = filename.to_ascii_lowercase();
    if ![".whl", ".tar.gz", ".zip"]
        .iter()
        .any(|suffix| lower.ends_with(suffix))
    {
        return Err(format!(
            "{filename:?} is neither a wheel (.whl) nor an sdist (.tar.gz, .zip)"
        ));
    }
    let Some(found) = version_from_filename(filename, &normalized) else {
        return Err(format!("{filename:?} is not a file name of the project {name:?}"));
    };
    // Wheel names write `-` in a version as `_`; case does not matter in PEP 440.
    let comparable = |v: &str| v.replace('_', "-").to_ascii_lowercase();
    if version.trim().is_empty() || comparable(&found) != comparable(version) {
        return Err(format!(
            "{filename:?} is version {found}, but the upload says version {version:?}"
        ));
    }
    Ok(normalized)
}

/// The `Requires-Python` header of core metadata (RFC 822 style, the first occurrence).
pub fn requires_python(metadata: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(metadata);
    text.lines()
        .take_while(|line| !line.is_empty())
        .find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case("requires-python")
                .then(|| value.trim().to_owned())
        })
        .filter(|value| !value.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_must_name_their_own_project_and_version() {
        for (name, version, filename) in [
            ("acme-utils", "1.0", "acme_utils-1.0-py3-none-any.whl"),
            ("Acme.Utils", "1.0", "acme_utils-1.0-py3-none-any.whl"),
            ("acme-utils", "1.0", "acme-utils-1.0.tar.gz"),
            ("acme-utils", "1.0", "acme_utils-1.0.zip"),
            (
                "acme-utils",
                "2.0rc1",
                "acme_utils-2.0rc1-1-cp312-cp312-manylinux_2_28_x86_64.whl",
            ),
        ] {
            assert_eq!(
                check_upload(name, version, filename),
                Ok("acme-utils".into()),
                "{filename}"
            );
        }
        for (name, version, filename, why) in [
            (
                "acme-utils",
                "1.0",
                "other-1.0-py3-none-any.whl",
                "not a file name of the project",
            ),
            (
                "acme-utils",
                "1.0",
                "acme_utils-2.0-py3-none-any.whl",
                "is version 2.0",
            ),
            ("acme-utils", "1.0", "acme_utils-1.0.exe", "neither a wheel"),
            (
                "acme-utils",
                "1.0",
                "../acme_utils-1.0.tar.gz",
                "invalid file name",
            ),
            ("acme-utils", "", "acme_utils-1.0.tar.gz", "upload says version"),
            ("", "1.0", "acme_utils-1.0.tar.gz", "invalid project name"),
        ] {
            let err = check_upload(name, version, filename).unwrap_err();
            assert!(err.contains(why), "{filename}: {err}");
        }
    }

    #[test]
    fn requires_python_comes_from_the_metadata_headers() {
        let metadata = b"Metadata-Version: 2.1\nName: x\nRequires-Python: >=3.9\n\nRequires-Python: <2\n";
        assert_eq!(requires_python(metadata).as_deref(), Some(">=3.9"));
        assert_eq!(
            requires_python(b"Name: x\n\nRequires-Python: >=3\n"),
            None,
            "the body is not a header"
        );
    }
}
