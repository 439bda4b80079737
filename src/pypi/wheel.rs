//! Core metadata from inside a wheel (PEP 658: what `{wheel}.metadata` serves), for upstreams that
//! do not offer the metadata file themselves. Works on any `Read + Seek`; opening the file is the
//! caller's business.

use std::io::{Read, Seek};

/// METADATA files are a few KiB; anything this large is not one (and not worth memory).
const MAX_METADATA_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum WheelError {
    #[error("not a readable wheel (zip): {0}")]
    Zip(String),
    #[error("the wheel has no top-level *.dist-info/METADATA")]
    NoMetadata,
    #[error("the wheel has several *.dist-info/METADATA and none matches its file name")]
    Ambiguous,
    #[error("the wheel's METADATA is larger than {MAX_METADATA_BYTES} bytes")]
    TooLarge,
}

/// The bytes of `{name}-{version}.dist-info/METADATA` inside the wheel called `filename`.
pub fn extract_metadata<R: Read + Seek>(wheel: R, filename: &str) -> Result<Vec<u8>, WheelError> {
    let mut archive = zip::ZipArchive::new(wheel).map_err(|e| WheelError::Zip(e.to_string()))?;
    let candidates: Vec<String> = archive
        .file_names()
        .filter_map(Result::ok)
        .filter(|name| {
            name.strip_suffix(".dist-info/METADATA")
                .is_some_and(|dir| !dir.is_empty() && !dir.contains('/'))
        })
        .map(|name| name.into_owned())
        .collect();
    let chosen = match candidates.as_slice() {
        [] => return Err(WheelError::NoMetadata),
        [only] => only.clone(),
        several => {
            // `{name}-{version}-…whl` names its own dist-info `{name}-{version}.dist-info`.
            let mut parts = filename.split('-');
            let prefix = format!(
                "{}-{}.dist-info/",
                parts.next().unwrap_or(""),
                parts.next().unwrap_or("")
            );
            several
                .iter()
                .find(|c| c.eq_ignore_ascii_case(&format!("{prefix}METADATA")))
                .cloned()
                .ok_or(WheelError::Ambiguous)?
        }
    };
    let entry = archive
        .by_name(&chosen)
        .map_err(|e| WheelError::Zip(e.to_string()))?;
    if entry.size() > MAX_METADATA_BYTES {
        return Err(WheelError::TooLarge);
    }
    let mut out = Vec::with_capacity(usize::try_from(entry.size()).unwrap_or(0));
    // The declared size can lie: cap what is actually read too.
    entry
        .take(MAX_METADATA_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| WheelError::Zip(e.to_string()))?;
    if out.len() as u64 > MAX_METADATA_BYTES {
        return Err(WheelError::TooLarge);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::{Cursor, Write};

    use zip::write::SimpleFileOptions;

    use super::*;

    fn wheel(entries: &[(&str, &[u8])]) -> Cursor<Vec<u8>> {
        let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, body) in entries {
            writer.start_file(*name, SimpleFileOptions::default()).unwrap();
            writer.write_all(body).unwrap();
        }
        Cursor::new(writer.finish().unwrap().into_inner())
    }

    #[test]
    fn finds_the_top_level_metadata() {
        let w = wheel(&[
            ("demo/__init__.py", b""),
            ("demo/sub.dist-info/METADATA", b"nested: not it"),
            (
                "demo-1.0.dist-info/METADATA",
                b"Metadata-Version: 2.1\nName: demo\n",
            ),
            ("demo-1.0.dist-info/RECORD", b""),
        ]);
        let got = extract_metadata(w, "demo-1.0-py3-none-any.whl").unwrap();
        assert_eq!(got, b"Metadata-Version: 2.1\nName: demo\n");
    }

    #[test]
    fn picks_the_dist_info_named_like_the_wheel_when_there_are_several() {
        let w = wheel(&[
            ("other-2.0.dist-info/METADATA", b"other"),
            ("demo-1.0.dist-info/METADATA", b"demo"),
        ]);
        assert_eq!(extract_metadata(w, "demo-1.0-py3-none-any.whl").unwrap(), b"demo");
        let w = wheel(&[("a-1.dist-info/METADATA", b"a"), ("b-1.dist-info/METADATA", b"b")]);
        assert!(matches!(
            extract_metadata(w, "demo-1.0-py3-none-any.whl"),
            Err(WheelError::Ambiguous)
        ));
    }

    #[test]
    fn bad_wheels_are_errors_not_panics() {
        assert!(matches!(
            extract_metadata(Cursor::new(b"not a zip".to_vec()), "x-1-py3-none-any.whl"),
            Err(WheelError::Zip(_))
        ));
        let w = wheel(&[("demo/__init__.py", b"")]);
        assert!(matches!(
            extract_metadata(w, "demo-1.0-py3-none-any.whl"),
            Err(WheelError::NoMetadata)
        ));
        let mut truncated = wheel(&[("demo-1.0.dist-info/METADATA", b"x")]).into_inner();
        truncated.truncate(truncated.len() / 2);
        assert!(extract_metadata(Cursor::new(truncated), "demo-1.0-py3-none-any.whl").is_err());
    }
}
