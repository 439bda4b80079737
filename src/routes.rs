//! The route table: the tool-facing routes of `http/`, the browser UI of `web/`, and what answers
//! any other path. Neither module mounts the other.

use actix_web::web;

/// Every route the server answers.
pub fn configure(cfg: &mut web::ServiceConfig) {
    crate::http::configure(cfg);
    crate::web::configure(cfg);
    cfg.default_service(web::to(crate::http::not_found));
}

/// The group a request's path belongs to, as the request metrics label it: a few groups, not
/// one series per path.
pub fn group(path: &str) -> crate::metrics::RouteGroup {
    use crate::metrics::RouteGroup;
    let group = |name, ecosystem| RouteGroup { name, ecosystem };
    // What follows a Simple API root (`/simple`, proxpi's `/index`, or a view
    // `/indexes/{name}/simple`), when the path is under one.
    let under_simple = match path.strip_prefix("/indexes/") {
        Some(rest) => rest
            .split_once('/')
            .and_then(|(_, tail)| tail.strip_prefix("simple")),
        None => path
            .strip_prefix("/simple")
            .or_else(|| path.strip_prefix("/index")),
    };
    if let Some(tail) = under_simple.filter(|tail| tail.is_empty() || tail.starts_with('/')) {
        return match tail.split('/').filter(|part| !part.is_empty()).count() {
            0 => group("simple_list", "pypi"),
            1 => group("simple_page", "pypi"),
            _ => group("file", "pypi"),
        };
    }
    if path.starts_with("/indexes/") {
        return group("upload", "pypi");
    }
    if let Some(rest) = path.strip_prefix("/hex/") {
        // A hosted repository's paths are the mirror's, under `repos/{name}/`.
        let under_repository = rest
            .strip_prefix("repos/")
            .and_then(|r| r.split_once('/'))
            .map_or(rest, |(_, tail)| tail);
        let name = if rest.starts_with("api/") {
            "hex_publish"
        } else if under_repository.starts_with("tarballs/") {
            "hex_tarball"
        } else {
            "hex_registry"
        };
        return group(name, "hex");
    }
    match path {
        "/health" => group("health", "none"),
        "/metrics" => group("metrics", "none"),
        _ if path.starts_with("/cache/") || path.starts_with("/policy/") => group("admin_api", "none"),
        _ if path.starts_with("/static/") => group("static", "none"),
        "/" | "/packages" | "/admin" => group("ui", "none"),
        _ if path.starts_with("/packages/") || path.starts_with("/admin/") => group("ui", "none"),
        _ => group("other", "none"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn paths_fall_into_few_groups() {
        let cases = [
            ("/simple/", "simple_list", "pypi"),
            ("/simple", "simple_list", "pypi"),
            ("/simple/six/", "simple_page", "pypi"),
            ("/index/six/", "simple_page", "pypi"),
            ("/indexes/main/simple/six", "simple_page", "pypi"),
            ("/simple/six/six-1.0.tar.gz", "file", "pypi"),
            ("/indexes/internal/simple/six/six-1.0.tar.gz", "file", "pypi"),
            ("/indexes/internal/", "upload", "pypi"),
            ("/indexfoo", "other", "none"),
            ("/hex/tarballs/jason-1.4.4.tar", "hex_tarball", "hex"),
            ("/hex/packages/jason", "hex_registry", "hex"),
            ("/hex/repos/team/tarballs/teamlib-0.1.0.tar", "hex_tarball", "hex"),
            ("/hex/repos/team/packages/teamlib", "hex_registry", "hex"),
            ("/hex/api/repos/team/publish", "hex_publish", "hex"),
            ("/health", "health", "none"),
            ("/metrics", "metrics", "none"),
            ("/cache/six", "admin_api", "none"),
            ("/packages/pypi/six", "ui", "none"),
            ("/", "ui", "none"),
            ("/static/app.css", "static", "none"),
            ("/nothing", "other", "none"),
        ];
        for (path, name, ecosystem) in cases {
            let group = super::group(path);
            assert_eq!((group.name, group.ecosystem), (name, ecosystem), "{path}");
        }
    }
}
