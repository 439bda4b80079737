//! A browser over HTTP for the web UI (the server's client with a cookie jar kept by hand), the
//! readers of its pages, and admin sign-in and actions.

use std::collections::BTreeMap;

use reqwest::header::HeaderMap;

use super::server::{Server, client};

pub const TOKEN: &str = "web-ui-admin-token";
/// What a browser sends for a page.
const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

// ---------------------------------------------------------------------------------------------
// A browser: the server's client (no redirects followed) with a cookie jar kept by hand.

/// One response, read whole.
pub struct Page {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", |v| v.to_str().unwrap_or(""))
    }

    /// The `Set-Cookie` line that sets (or removes) `name`.
    pub fn set_cookie(&self, name: &str) -> Option<&str> {
        let prefix = format!("{name}=");
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|line| line.starts_with(&prefix))
    }
}

pub struct Browser {
    base: String,
    client: reqwest::Client,
    pub cookies: BTreeMap<String, String>,
}

impl Browser {
    pub fn new(server: &Server) -> Self {
        Self {
            base: server.base.clone(),
            client: client(),
            cookies: BTreeMap::new(),
        }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let request = self.client.get(format!("{}{path}", self.base));
        self.send(request).await
    }

    /// Posts a form, `application/x-www-form-urlencoded` as browsers do.
    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let request = self
            .client
            .post(format!("{}{path}", self.base))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body);
        self.send(request).await
    }

    /// Posts a `multipart/form-data` form with text `fields` and one file (field name, file
    /// name, bytes), as a browser's file upload does.
    pub async fn post_file(
        &mut self,
        path: &str,
        fields: &[(&str, &str)],
        file: (&str, &str, Vec<u8>),
    ) -> Page {
        let mut form = reqwest::multipart::Form::new();
        for (name, value) in fields {
            form = form.text(name.to_string(), value.to_string());
        }
        let (field, filename, bytes) = file;
        form = form.part(
            field.to_owned(),
            reqwest::multipart::Part::bytes(bytes).file_name(filename.to_owned()),
        );
        let request = self.client.post(format!("{}{path}", self.base)).multipart(form);
        self.send(request).await
    }

    async fn send(&mut self, mut request: reqwest::RequestBuilder) -> Page {
        request = request.header("Accept", BROWSER_ACCEPT);
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
            request = request.header("Cookie", jar.join("; "));
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        for line in headers.get_all("set-cookie").iter() {
            let line = line.to_str().unwrap();
            let (pair, attributes) = line.split_once(';').unwrap_or((line, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || attributes.to_ascii_lowercase().contains("max-age=0") {
                self.cookies.remove(name.trim());
            } else {
                self.cookies
                    .insert(name.trim().to_owned(), value.trim().to_owned());
            }
        }
        let body = response.text().await.unwrap();
        Page {
            status,
            headers,
            body,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reading pages

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&#x2F;", "/")
        .replace("&amp;", "&")
}

/// For each occurrence of `open` (the start of a tag), the text after that tag up to the next tag.
pub fn texts_after(body: &str, open: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(i) = rest.find(open) {
        rest = &rest[i + open.len()..];
        let Some(gt) = rest.find('>') else { break };
        rest = &rest[gt + 1..];
        let end = rest.find('<').unwrap_or(rest.len());
        out.push(unescape(&rest[..end]));
    }
    out
}

/// The text of the first element opened by `open`; panics showing the page when there is none.
pub fn text_of(body: &str, open: &str) -> String {
    texts_after(body, open)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no {open} on the page:\n{body}"))
}

/// The values of the attribute whose text (up to the opening quote of its value) is `prefix`.
pub fn attr_values(body: &str, prefix: &str) -> Vec<String> {
    body.match_indices(prefix)
        .map(|(i, _)| {
            let value = &body[i + prefix.len()..];
            unescape(&value[..value.find('"').unwrap()])
        })
        .collect()
}

/// `(href, text)` of every link written `<a {attrs} href="...">text</a>` (`<a href=...` when
/// `attrs` is empty).
pub fn links(body: &str, attrs: &str) -> Vec<(String, String)> {
    let open = if attrs.is_empty() {
        "<a href=\"".to_owned()
    } else {
        format!("<a {attrs} href=\"")
    };
    body.match_indices(&open)
        .map(|(i, _)| {
            let rest = &body[i + open.len()..];
            let href = &rest[..rest.find('"').unwrap()];
            let text = &rest[rest.find('>').unwrap() + 1..];
            (unescape(href), unescape(&text[..text.find("</a>").unwrap()]))
        })
        .collect()
}

/// The names listed in a package list, in order.
pub fn listed(page: &Page) -> Vec<String> {
    links(&page.body, "class=\"project-link\"")
        .into_iter()
        .map(|(_, text)| text)
        .collect()
}

/// The table row of a page whose link reads `text` (a file on the project page, a project in a list).
pub fn row_linking<'a>(body: &'a str, text: &str) -> &'a str {
    body.split("<tr>")
        .find(|row| row.contains(&format!(">{text}</a>")))
        .unwrap_or_else(|| panic!("no row links {text}:\n{body}"))
}

/// The text of one setup snippet on the home page.
pub fn snippet(body: &str, id: &str) -> String {
    let start = body
        .find(&format!("id=\"setup-{id}\""))
        .unwrap_or_else(|| panic!("no snippet {id}:\n{body}"));
    text_of(&body[start..], "<pre data-copy")
}

/// What every UI page must carry, and what its policy allows: no inline script or style.
pub fn assert_ui_page(page: &Page, what: &str) {
    let csp = page.header("content-security-policy");
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ] {
        assert!(csp.contains(directive), "{what}: CSP lacks {directive}: {csp:?}");
    }
    assert!(!csp.contains("unsafe-"), "{what}: {csp}");
    assert_eq!(page.header("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(page.header("x-frame-options"), "DENY", "{what}");
    assert_eq!(page.header("referrer-policy"), "same-origin", "{what}");
    assert_eq!(page.header("cache-control"), "no-store", "{what}");
    assert!(
        page.header("content-type").starts_with("text/html"),
        "{what}: {}",
        page.header("content-type")
    );
    let body = &page.body;
    assert!(body.starts_with("<!DOCTYPE html>"), "{what}:\n{body}");
    for (i, _) in body.match_indices("<script") {
        let tag = &body[i..i + body[i..].find('>').unwrap()];
        assert!(tag.contains(" src=\"/static/"), "{what}: inline script {tag}");
    }
    for inline in [
        "<style",
        " style=\"",
        " onclick=",
        " onload=",
        " onsubmit=",
        "javascript:",
    ] {
        assert!(!body.contains(inline), "{what}: the page has {inline}:\n{body}");
    }
}

/// An error page of the UI: its status, the headers of every page, and its message.
pub fn assert_error_page(page: &Page, status: u16, message: &str, what: &str) {
    assert_eq!(page.status, status, "{what}:\n{}", page.body);
    assert_ui_page(page, what);
    let shown = text_of(&page.body, "<p class=\"error\" id=\"error-message\"");
    assert!(shown.contains(message), "{what}: {shown:?} lacks {message:?}");
}

// ---------------------------------------------------------------------------------------------
// Admin helpers

/// The CSRF token of a page's forms (every hidden `csrf` input carries the same one).
pub fn csrf_of(body: &str) -> String {
    let values = attr_values(body, "name=\"csrf\" value=\"");
    assert!(!values.is_empty(), "no csrf input on the page:\n{body}");
    assert!(values.iter().all(|v| *v == values[0]), "{values:?}");
    assert_eq!(values[0].len(), 64, "{values:?}");
    values[0].clone()
}

/// Signs in with the admin token; returns the session's CSRF token.
pub async fn sign_in(b: &mut Browser) -> String {
    let form = b.get("/admin").await;
    assert!(form.body.contains("<form id=\"signin\""), "{}", form.body);
    let signin_csrf = csrf_of(&form.body);
    let done = b
        .post("/admin/sign-in", &[("csrf", &signin_csrf), ("token", TOKEN)])
        .await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(done.header("location"), "/admin");
    let admin = b.get("/admin").await;
    assert_eq!(admin.status, 200);
    assert!(admin.body.contains("<form id=\"gc\""), "{}", admin.body);
    let csrf = csrf_of(&admin.body);
    assert_ne!(csrf, signin_csrf, "a session gets its own CSRF token");
    csrf
}

/// The admin log's rows, newest first: (action, target, outcome).
pub fn admin_log(body: &str) -> Vec<(String, String, String)> {
    let Some(start) = body.find("<table id=\"admin-log\">") else {
        return Vec::new();
    };
    let table = &body[start..];
    let table = &table[..table.find("</table>").unwrap()];
    let actions = texts_after(table, "<td class=\"action\"");
    let targets = texts_after(table, "<td class=\"target");
    let outcomes = texts_after(table, "<td class=\"outcome");
    assert_eq!(actions.len(), targets.len());
    assert_eq!(actions.len(), outcomes.len());
    actions
        .into_iter()
        .zip(targets)
        .zip(outcomes)
        .map(|((a, t), o)| (a, t, o))
        .collect()
}

/// Posts an admin action form; asserts the 303 back to `back`, then returns the admin page the
/// browser lands on and the newest log row.
pub async fn act(
    b: &mut Browser,
    csrf: &str,
    action: &str,
    fields: &[(&str, &str)],
    back: &str,
) -> (Page, (String, String, String)) {
    let mut form = vec![("csrf", csrf)];
    form.extend_from_slice(fields);
    let response = b.post(&format!("/admin/{action}"), &form).await;
    assert_eq!(response.status, 303, "{action}: {}", response.body);
    assert_eq!(response.header("location"), back, "{action}");
    let page = b.get(back).await;
    assert_eq!(page.status, 200);
    let newest = admin_log(&page.body)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("{action}: no admin log row:\n{}", page.body));
    assert_eq!(newest.0, action, "{:?}", newest);
    (page, newest)
}
