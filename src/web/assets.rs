//! The UI's static files (`static/`), built into the binary so a pkgmirror needs no files beside
//! it and works offline. Each is served under a name carrying its content hash
//! (`/static/style.<hash>.css`), cached for a year as immutable; a new build changes the name.
//! The plain name still answers, revalidated by ETag, for anything that bookmarked it.

use std::sync::LazyLock;

use actix_web::http::header::{self, EntityTag, Header as _, IfNoneMatch};
use actix_web::{HttpRequest, HttpResponse, web};
use sha2::{Digest, Sha256};

struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
    /// `style.<hash>.css`.
    hashed_name: String,
    hash: String,
}

const FILES: &[(&str, &str, &[u8])] = &[
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("../../static/style.css"),
    ),
    (
        "ui.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../static/ui.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("../../static/favicon.svg"),
    ),
];

static ASSETS: LazyLock<Vec<Asset>> = LazyLock::new(|| {
    FILES
        .iter()
        .map(|&(name, content_type, bytes)| {
            let hash = hex::encode(&Sha256::digest(bytes)[..8]);
            let hashed_name = match name.rsplit_once('.') {
                Some((stem, extension)) => format!("{stem}.{hash}.{extension}"),
                None => format!("{name}.{hash}"),
            };
            Asset {
                name,
                content_type,
                bytes,
                hashed_name,
                hash,
            }
        })
        .collect()
});

/// The URLs templates link to.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AssetUrls {
    pub style: String,
    pub script: String,
    pub icon: String,
}

pub fn urls() -> AssetUrls {
    let url = |name: &str| {
        ASSETS
            .iter()
            .find(|a| a.name == name)
            .map(|a| format!("/static/{}", a.hashed_name))
            .unwrap_or_default()
    };
    AssetUrls {
        style: url("style.css"),
        script: url("ui.js"),
        icon: url("favicon.svg"),
    }
}

/// `GET /static/{file}`.
pub async fn serve(req: HttpRequest, file: web::Path<String>) -> HttpResponse {
    let file = file.into_inner();
    let Some((asset, hashed)) = ASSETS.iter().find_map(|a| {
        if a.hashed_name == file {
            Some((a, true))
        } else if a.name == file {
            Some((a, false))
        } else {
            None
        }
    }) else {
        return HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body(format!("no static file is named '{file}'\n"));
    };
    let etag = EntityTag::new_strong(asset.hash.clone());
    let cache_control = if hashed {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let unchanged = match IfNoneMatch::parse(&req) {
        Ok(IfNoneMatch::Any) => true,
        Ok(IfNoneMatch::Items(tags)) => tags.iter().any(|t| t.weak_eq(&etag)),
        Err(_) => false,
    };
    let mut response = if unchanged {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header(header::ETag(etag))
        .insert_header((header::CACHE_CONTROL, cache_control))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
    if unchanged {
        return response.finish();
    }
    response
        .insert_header((header::CONTENT_TYPE, asset.content_type))
        .body(asset.bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_a_hashed_url() {
        let urls = urls();
        for url in [&urls.style, &urls.script, &urls.icon] {
            let name = url.strip_prefix("/static/").unwrap();
            assert!(ASSETS.iter().any(|a| a.hashed_name == name), "{url}");
            assert_eq!(name.split('.').nth(1).map(str::len), Some(16), "{url}");
        }
    }
}
