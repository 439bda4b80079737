//! PEP 503 HTML pages from an upstream into the model, read with a real HTML5 tokenizer so that
//! entities, quoting and raw-text elements are handled as browsers and pip handle them.

use std::cell::RefCell;
use std::collections::HashSet;

use crate::pypi::model::Hashes;

use html5ever::TokenizerResult;
use html5ever::tendril::StrTendril;
use html5ever::tokenizer::states::RawKind;
use html5ever::tokenizer::{
    BufferQueue, CharacterTokens, EndTag, StartTag, Tag, TagToken, Token, TokenSink, TokenSinkResult,
    Tokenizer, TokenizerOpts,
};
use percent_encoding::percent_decode_str;
use url::Url;

use super::model::{DistFile, PageMeta, ProjectList, ProjectPage, ProjectStatus};
use super::name::{is_safe_filename, normalize, validate_project_name};
use super::parse::{
    ParseError, Parsed, body_str, check_api_version, is_fetchable, non_empty, normalize_hash, provenance_url,
    take_fragment_hash,
};

/// An `<a>` as written, resolved only once the whole document (and so its `<base>`) is known.
#[derive(Default)]
struct RawLink {
    href: Option<String>,
    /// The link's text: a project's name in a project list, only a label for a file.
    text: String,
    requires_python: Option<String>,
    yanked: Option<String>,
    core_metadata: Option<String>,
    dist_info_metadata: Option<String>,
    gpg_sig: Option<String>,
    provenance: Option<String>,
}

#[derive(Default)]
struct Document {
    base: Option<String>,
    links: Vec<RawLink>,
    open_link: Option<RawLink>,
    title: Option<String>,
    in_title: bool,
    h1: Option<String>,
    in_h1: bool,
    api_version: Option<String>,
    status: Option<String>,
    status_reason: Option<String>,
    tracks: Vec<String>,
    alternate_locations: Vec<String>,
}

fn attr(tag: &Tag, name: &str) -> Option<String> {
    tag.attrs
        .iter()
        .find(|a| &*a.name.local == name)
        .map(|a| String::from(&*a.value))
}

impl Document {
    fn close_link(&mut self) {
        self.links.extend(self.open_link.take());
    }

    fn start_tag(&mut self, tag: &Tag) -> TokenSinkResult<()> {
        match &*tag.name {
            "a" => {
                // An `<a>` cannot nest: a new one closes the open one, as a tree builder would.
                self.close_link();
                self.open_link = Some(RawLink {
                    href: attr(tag, "href"),
                    text: String::new(),
                    requires_python: attr(tag, "data-requires-python"),
                    yanked: attr(tag, "data-yanked"),
                    core_metadata: attr(tag, "data-core-metadata"),
                    dist_info_metadata: attr(tag, "data-dist-info-metadata"),
                    gpg_sig: attr(tag, "data-gpg-sig"),
                    provenance: attr(tag, "data-provenance"),
                });
            }
            "base" if self.base.is_none() => self.base = attr(tag, "href"),
            "meta" => self.meta(tag),
            "title" => {
                self.in_title = self.title.is_none();
                // The tokenizer alone does not know these elements' content is not markup.
                return TokenSinkResult::RawData(RawKind::Rcdata);
            }
            "h1" => self.in_h1 = self.h1.is_none(),
            "textarea" => return TokenSinkResult::RawData(RawKind::Rcdata),
            "script" => return TokenSinkResult::RawData(RawKind::ScriptData),
            "style" | "xmp" | "iframe" | "noembed" | "noframes" => {
                return TokenSinkResult::RawData(RawKind::Rawtext);
            }
            "plaintext" => return TokenSinkResult::Plaintext,
            _ => {}
        }
        TokenSinkResult::Continue
    }

    fn end_tag(&mut self, tag: &Tag) {
        match &*tag.name {
            "a" => self.close_link(),
            "title" if self.in_title => {
                self.in_title = false;
                self.title.get_or_insert_default();
            }
            "h1" if self.in_h1 => {
                self.in_h1 = false;
                self.h1.get_or_insert_default();
            }
            _ => {}
        }
    }

    fn text(&mut self, text: &str) {
        if let Some(link) = &mut self.open_link {
            link.text.push_str(text);
        }
        if self.in_title {
            self.title.get_or_insert_default().push_str(text);
        }
        if self.in_h1 {
            self.h1.get_or_insert_default().push_str(text);
        }
    }

    fn meta(&mut self, tag: &Tag) {
        let (Some(name), Some(content)) = (attr(tag, "name"), attr(tag, "content")) else {
            return;
        };
        match name.to_ascii_lowercase().as_str() {
            "pypi:repository-version" => {
                self.api_version.get_or_insert(content);
            }
            "pypi:project-status" => {
                self.status.get_or_insert(content);
            }
            "pypi:project-status-reason" => {
                self.status_reason.get_or_insert(content);
            }
            "pypi:tracks" => self.tracks.push(content),
            "pypi:alternate-locations" => self.alternate_locations.push(content),
            _ => {}
        }
    }
}

struct Sink(RefCell<Document>);

impl TokenSink for Sink {
    type Handle = ();

    fn process_token(&self, token: Token, _line: u64) -> TokenSinkResult<()> {
        let mut doc = self.0.borrow_mut();
        match token {
            TagToken(tag) if tag.kind == StartTag => return doc.start_tag(&tag),
            TagToken(tag) if tag.kind == EndTag => doc.end_tag(&tag),
            CharacterTokens(text) => doc.text(&text),
            _ => {}
        }
        TokenSinkResult::Continue
    }
}

/// A tendril holds at most 4 GiB; feeding the body in slices keeps any body within that.
const FEED_CHUNK: usize = 1 << 20;

fn tokenize(body: &str) -> Document {
    let input = BufferQueue::default();
    let mut rest = body;
    while !rest.is_empty() {
        let mut cut = rest.len().min(FEED_CHUNK);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (chunk, tail) = rest.split_at(cut);
        input.push_back(StrTendril::from_slice(chunk));
        rest = tail;
    }
    let tokenizer = Tokenizer::new(Sink(RefCell::new(Document::default())), TokenizerOpts::default());
    // Our sink never blocks on a script, so this loop ends at the first pass; it is a loop only
    // because the tokenizer's contract is to be fed again after such a pause.
    while !matches!(tokenizer.feed(&input), TokenizerResult::Done) {}
    tokenizer.end();
    let mut doc = tokenizer.sink.0.into_inner();
    doc.close_link();
    doc
}

/// `data-core-metadata` / `data-dist-info-metadata`: `true` (hash unknown) or `<hashname>=<hex>`.
fn core_metadata(value: &str) -> Option<Hashes> {
    let value = value.trim();
    if value.eq_ignore_ascii_case("true") {
        return Some(Hashes::new());
    }
    let (name, digest) = value.split_once('=')?;
    normalize_hash(name.to_owned(), digest.to_owned()).map(|hash| Hashes::from_iter([hash]))
}

fn gpg_sig(value: &str) -> Option<bool> {
    match value.trim() {
        v if v.eq_ignore_ascii_case("true") => Some(true),
        v if v.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// The display name from a `Links for X` heading, accepted only if it is a spelling of the project
/// being parsed (a title of another form says nothing about the name).
fn display_name(heading: Option<&str>, normalized_project: &str) -> Option<String> {
    let heading = heading?.trim();
    let name = heading.strip_prefix("Links for ").unwrap_or(heading).trim();
    (normalize(name) == normalized_project).then(|| name.to_owned())
}

/// One link into the model, or why it was left out.
fn file_from_link(link: RawLink, base: &Url, page_url: &Url) -> Result<DistFile, String> {
    let href = link.href.as_deref().unwrap_or_default();
    let mut url = base
        .join(href)
        .map_err(|e| format!("href {href:?} cannot be resolved: {e}"))?;
    if !is_fetchable(&url) {
        return Err(format!("href {href:?} is not HTTP(S)"));
    }
    let hash = take_fragment_hash(&mut url)?;
    // The file is what the URL names, as pip reads it: the text is only a label, and taking it
    // would let a page list a name that is not the file fetched.
    let segment = url
        .path_segments()
        .and_then(|mut s| s.next_back())
        .unwrap_or_default();
    if segment.is_empty() {
        return Err(format!("href {href:?} names no file"));
    }
    let filename = percent_decode_str(segment)
        .decode_utf8()
        .map_err(|_| format!("href {href:?} names no UTF-8 file"))?
        .into_owned();
    if !is_safe_filename(&filename) {
        return Err(format!("unsafe filename {filename:?}"));
    }
    let mut file = DistFile {
        filename,
        url: url.into(),
        hashes: hash.into_iter().collect(),
        requires_python: link.requires_python.and_then(non_empty),
        yanked: link.yanked,
        core_metadata: link
            .core_metadata
            .or(link.dist_info_metadata)
            .as_deref()
            .and_then(core_metadata),
        gpg_sig: link.gpg_sig.as_deref().and_then(gpg_sig),
        size: None,
        upload_time: None,
        provenance: link.provenance.and_then(|p| provenance_url(base, page_url, &p)),
    };
    file.shrink_to_fit();
    Ok(file)
}

/// Reads a PEP 503 project page. Links are resolved against `<base href>` if the page has one, else
/// `page_url`. An `<a>` without href is not a file; a link that does not make a servable file
/// (unsafe name, non-HTTP(S)) is left out and reported. `versions` stays `None`: HTML does not
/// carry them.
pub fn parse_project_html(
    body: &[u8],
    page_url: &Url,
    normalized_project: &str,
) -> Result<Parsed<ProjectPage>, ParseError> {
    let mut doc = tokenize(body_str(body)?);
    if let Some(version) = &doc.api_version {
        check_api_version(version)?;
    }
    let base = doc
        .base
        .as_deref()
        .and_then(|href| page_url.join(href).ok())
        .unwrap_or_else(|| page_url.clone());
    let mut files = Vec::with_capacity(doc.links.len());
    let mut dropped = Vec::new();
    let links = std::mem::take(&mut doc.links)
        .into_iter()
        .filter(|link| link.href.is_some());
    for (index, link) in links.enumerate() {
        match file_from_link(link, &base, page_url) {
            Ok(file) => files.push(file),
            Err(why) => dropped.push(format!("link {}: {why}", index + 1)),
        }
    }
    let name = display_name(doc.title.as_deref(), normalized_project)
        .or_else(|| display_name(doc.h1.as_deref(), normalized_project))
        .unwrap_or_else(|| normalized_project.to_owned());
    Ok(Parsed {
        page: ProjectPage {
            name,
            files,
            versions: None,
            project_status: doc.status.map(|status| ProjectStatus {
                status,
                reason: doc.status_reason,
            }),
            meta: PageMeta {
                api_version: doc.api_version,
                last_serial: None,
                tracks: doc.tracks,
                alternate_locations: doc.alternate_locations,
            },
        },
        dropped,
    })
}

/// Reads a PEP 503 project list: one project per `<a>`, named by its text. Invalid names are left
/// out and reported; second spellings of a listed name are left out.
pub fn parse_list_html(body: &[u8]) -> Result<Parsed<ProjectList>, ParseError> {
    let doc = tokenize(body_str(body)?);
    if let Some(version) = &doc.api_version {
        check_api_version(version)?;
    }
    let mut seen = HashSet::with_capacity(doc.links.len());
    let mut projects = Vec::with_capacity(doc.links.len());
    let mut dropped = Vec::new();
    for (index, link) in doc.links.into_iter().enumerate() {
        let name = link.text.trim();
        if validate_project_name(name).is_err() {
            dropped.push(format!("link {}: invalid project name {name:?}", index + 1));
        } else if seen.insert(normalize(name)) {
            projects.push(name.to_owned());
        }
    }
    Ok(Parsed {
        page: ProjectList {
            projects,
            meta: PageMeta {
                api_version: doc.api_version,
                ..PageMeta::default()
            },
        },
        dropped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const META_SHA: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn page_url() -> Url {
        Url::parse("https://index.example/simple/foo-bar/").unwrap()
    }

    fn fixture() -> String {
        format!(
            r#"<!DOCTYPE html>
<html>
  <head>
    <meta name="pypi:repository-version" content="1.4">
    <meta name="PyPI:Project-Status" content="deprecated">
    <meta name="pypi:project-status-reason" content="use &quot;foo-baz&quot; &amp; be happy">
    <meta name="pypi:tracks" content="https://index.example/simple/foo-bar/">
    <meta name="pypi:tracks" content="https://other.example/simple/foo-bar/">
    <meta name="pypi:alternate-locations" content="https://mirror.example/simple/foo-bar/">
    <title>Links for Foo.Bar</title>
    <script>var s = "<a href='x.tar.gz'>x.tar.gz</a>";</script>
  </head>
  <body>
    <h1>Links for Foo.Bar</h1>
    <!-- <a href="commented-1.0.tar.gz">commented-1.0.tar.gz</a> -->
    <a href="https://files.example/packages/foo_bar-1.0-py3-none-any.whl#SHA256={SHA}"
       data-requires-python="&gt;=3.8,&lt;4" data-core-metadata="sha256={META_SHA}"
       data-dist-info-metadata="sha256={META_SHA}" data-gpg-sig="true"
       data-provenance="../../provenance/foo_bar-1.0.json">
       foo_bar-1.0-py3-none-any.whl
    </a><br/>
    <a href='/packages/foo_bar-1.1.tar.gz#md5=0123456789abcdef0123456789abcdef' data-yanked data-dist-info-metadata=true data-gpg-sig=false
       data-provenance="http://insecure.example/p.json">foo_bar-1.1.tar.gz</a><br/>
    <a href="foo_bar-2.0.tar.gz?x=1&amp;y=2" data-yanked="broken &lt;b&gt;build&lt;/b&gt;" data-core-metadata="false">foo_bar-2.0.tar.gz</a>
    <a href="sub/foo_bar-3.0%2Blocal.tar.gz"></a>
    <a href="../../packages/a%2F..%2Fevil.tar.gz">a.tar.gz</a>
    <a href="file:///etc/passwd">passwd-1.0.tar.gz</a>
    <a name="anchor-without-href">x</a>
    <a href="https://files.example/unclosed-1.0.tar.gz">unclosed-1.0.tar.gz
  </body>
</html>"#
        )
    }

    #[test]
    fn every_standard_field_is_read() {
        let parsed = parse_project_html(fixture().as_bytes(), &page_url(), "foo-bar").unwrap();
        assert_eq!(
            parsed.dropped,
            [
                "link 5: unsafe filename \"a/../evil.tar.gz\"",
                "link 6: href \"file:///etc/passwd\" is not HTTP(S)"
            ],
            "the anchor without href is not a file"
        );
        let page = parsed.page;
        assert_eq!(page.name, "Foo.Bar");
        assert_eq!(page.versions, None);
        assert_eq!(page.meta.api_version.as_deref(), Some("1.4"));
        assert_eq!(page.meta.last_serial, None);
        assert_eq!(
            page.meta.tracks,
            [
                "https://index.example/simple/foo-bar/",
                "https://other.example/simple/foo-bar/"
            ]
        );
        assert_eq!(
            page.meta.alternate_locations,
            ["https://mirror.example/simple/foo-bar/"]
        );
        assert_eq!(
            page.project_status,
            Some(ProjectStatus {
                status: "deprecated".into(),
                reason: Some(r#"use "foo-baz" & be happy"#.into())
            })
        );
        let names: Vec<&str> = page.files.iter().map(|f| f.filename.as_str()).collect();
        assert_eq!(
            names,
            [
                "foo_bar-1.0-py3-none-any.whl",
                "foo_bar-1.1.tar.gz",
                "foo_bar-2.0.tar.gz",
                "foo_bar-3.0+local.tar.gz",
                "unclosed-1.0.tar.gz"
            ]
        );

        let f = &page.files[0];
        assert_eq!(
            f.url,
            "https://files.example/packages/foo_bar-1.0-py3-none-any.whl"
        );
        assert_eq!(f.hashes, Hashes::from_iter([("sha256".into(), SHA.into())]));
        assert_eq!(f.requires_python.as_deref(), Some(">=3.8,<4"));
        assert_eq!(f.yanked, None);
        assert_eq!(f.core_metadata.as_ref().unwrap().get("sha256").unwrap(), META_SHA);
        assert_eq!(f.gpg_sig, Some(true));
        assert_eq!(
            f.provenance.as_deref(),
            Some("https://index.example/provenance/foo_bar-1.0.json")
        );
        assert_eq!((f.size, f.upload_time.as_deref()), (None, None));

        let f = &page.files[1];
        assert_eq!(f.url, "https://index.example/packages/foo_bar-1.1.tar.gz");
        assert_eq!(f.hashes.get("md5").unwrap(), "0123456789abcdef0123456789abcdef");
        assert_eq!(f.yanked.as_deref(), Some(""), "present without value");
        assert_eq!(f.core_metadata, Some(Hashes::new()), "legacy attribute, true");
        assert_eq!(f.gpg_sig, Some(false));
        assert_eq!(f.provenance, None, "non-https provenance dropped");

        let f = &page.files[2];
        assert_eq!(
            f.url,
            "https://index.example/simple/foo-bar/foo_bar-2.0.tar.gz?x=1&y=2"
        );
        assert!(f.hashes.is_empty());
        assert_eq!(f.yanked.as_deref(), Some("broken <b>build</b>"));
        assert_eq!(f.core_metadata, None);
        assert_eq!(f.gpg_sig, None);

        let f = &page.files[3];
        assert_eq!(
            f.url,
            "https://index.example/simple/foo-bar/sub/foo_bar-3.0%2Blocal.tar.gz"
        );
    }

    #[test]
    fn base_href_and_name_fallbacks() {
        let body = br#"<html><head><base href="https://files.example/root/"><base href="https://ignored.example/"></head>
            <body><h1>Links for foo_bar</h1><a href="foo_bar-1.0.tar.gz">foo_bar-1.0.tar.gz</a></body></html>"#;
        let page = parse_project_html(body, &page_url(), "foo-bar").unwrap().page;
        assert_eq!(page.name, "foo_bar", "from <h1> when there is no title");
        assert_eq!(page.files[0].url, "https://files.example/root/foo_bar-1.0.tar.gz");
        assert_eq!(page.meta, PageMeta::default());
        assert_eq!(page.project_status, None);

        let body = b"<title>Simple index</title><a href=\"x-1.tar.gz\">x-1.tar.gz</a>";
        let page = parse_project_html(body, &page_url(), "foo-bar").unwrap().page;
        assert_eq!(page.name, "foo-bar", "a title naming nothing is not a name");
    }

    #[test]
    fn refusals() {
        let body = br#"<meta name="pypi:repository-version" content="2.0"><a href="a">a</a>"#;
        let err = parse_project_html(body, &page_url(), "foo").unwrap_err();
        assert!(matches!(err, ParseError::UnsupportedApiVersion(ref v) if v == "2.0"));
        assert!(parse_list_html(body).is_err());
        let err = parse_project_html(b"<a>\xC3\x28</a>", &page_url(), "foo").unwrap_err();
        assert!(matches!(err, ParseError::NotUtf8 { valid_up_to: 3 }));
    }

    #[test]
    fn project_list() {
        let body = br#"<!DOCTYPE html><html><head><meta name="pypi:repository-version" content="1.1">
            <title>Simple index</title></head><body>
            <a href="/simple/foo-bar/">Foo.Bar</a>
            <a href="/simple/foo-bar/">foo_bar</a>
            <a href="/simple/baz/"> baz </a>
            <a href="/simple/x/"></a>
            <a href="/simple/x/">../x</a>
            <a href="/simple/q/">q&amp;a</a>
            </body></html>"#;
        let parsed = parse_list_html(body).unwrap();
        assert_eq!(
            parsed.dropped,
            [
                "link 4: invalid project name \"\"",
                "link 5: invalid project name \"../x\"",
                "link 6: invalid project name \"q&a\""
            ]
        );
        let list = parsed.page;
        assert_eq!(list.projects, ["Foo.Bar", "baz"]);
        assert_eq!(list.meta.api_version.as_deref(), Some("1.1"));
    }

    /// HTML as real servers write it: upper-case tags and attribute names, unquoted and
    /// entity-laden attributes, hash fragments of several algorithms, absolute, root-relative and
    /// `../` relative URLs (devpi's `../../+f/...`), a `<base>` that is itself relative.
    #[test]
    fn what_real_servers_send_is_read() {
        let body = format!(
            r#"<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01//EN"><HTML><HEAD><TITLE>Links for Foo-Bar</TITLE>
            <BASE HREF="../../+simple/foo-bar/"></HEAD><BODY>
            <A HREF=../../+f/aaa/foo_bar-1.0.tar.gz#sha256={SHA} DATA-REQUIRES-PYTHON=&gt;=3.7>foo_bar-1.0.tar.gz</A><BR>
            <a href="/packages/foo_bar-1.1.zip#md5=0123456789ABCDEF0123456789abcdef" data-requires-python="&gt;=3.8,&lt;4&#x2E;0">foo_bar-1.1.zip</a>
            <a href="https://files.example/foo_bar-1.2.tar.gz#sha512={SHA}{SHA}">foo_bar-1.2.tar.gz</a>
            <a href="foo_bar-1.3.tar.gz#blake2b_256=cd34" data-yanked="">foo_bar-1.3.tar.gz</a>
            <a href="foo_bar-1.4.tar.gz#sha256=not-hex" data-core-metadata="sha256={META_SHA}">foo_bar-1.4.tar.gz</a>
            <a href="foo_bar-1.5.tar.gz?a=1&amp;b=2#sha256={SHA}" data-requires-python='&gt;=3'>  foo_bar-1.5.tar.gz  </a>
            <a href="http://[bad/foo_bar-1.6.tar.gz">foo_bar-1.6.tar.gz</a>
            </BODY></HTML>"#
        );
        let parsed = parse_project_html(body.as_bytes(), &page_url(), "foo-bar").unwrap();
        assert_eq!(parsed.dropped.len(), 2, "{:?}", parsed.dropped);
        assert_eq!(parsed.dropped[0], "link 5: invalid sha256 hash \"not-hex\"");
        assert!(
            parsed.dropped[1]
                .starts_with("link 7: href \"http://[bad/foo_bar-1.6.tar.gz\" cannot be resolved"),
            "{:?}",
            parsed.dropped
        );
        let page = parsed.page;
        assert_eq!(page.name, "Foo-Bar");
        let f = &page.files;
        assert_eq!(f.len(), 5);
        assert_eq!(f[0].url, "https://index.example/+f/aaa/foo_bar-1.0.tar.gz");
        assert_eq!(f[0].hashes.get("sha256").unwrap(), SHA);
        assert_eq!(f[0].requires_python.as_deref(), Some(">=3.7"));
        assert_eq!(f[1].url, "https://index.example/packages/foo_bar-1.1.zip");
        assert_eq!(
            f[1].hashes.get("md5").unwrap(),
            "0123456789abcdef0123456789abcdef"
        );
        assert_eq!(f[1].requires_python.as_deref(), Some(">=3.8,<4.0"));
        assert_eq!(f[2].hashes.get("sha512").unwrap(), &format!("{SHA}{SHA}"));
        assert_eq!(
            f[3].url,
            "https://index.example/+simple/foo-bar/foo_bar-1.3.tar.gz"
        );
        assert_eq!(f[3].hashes.get("blake2b_256").unwrap(), "cd34");
        assert_eq!(f[3].yanked.as_deref(), Some(""));
        assert_eq!(f[4].filename, "foo_bar-1.5.tar.gz");
        assert_eq!(
            f[4].url,
            "https://index.example/+simple/foo-bar/foo_bar-1.5.tar.gz?a=1&b=2"
        );
    }

    /// The name is the URL's, as pip takes it: link text is only a label. A hash that pip would
    /// check but cannot be a digest makes the entry unusable, so it is dropped, never served
    /// unverified.
    #[test]
    fn names_come_from_urls_and_bad_hashes_void_entries() {
        let body = format!(
            r#"<a href="">empty href</a>
            <a href="https://files.example/p/foo-1.0.tar.gz#sha256={SHA}">a label, not a name</a>
            <a href="foo-1.1.tar.gz#sha256=not-hex">foo-1.1.tar.gz</a>
            <a href="foo-1.2.tar.gz#SHA256=abcd">foo-1.2.tar.gz</a>
            <a href="foo-1.3.tar.gz#md5=">foo-1.3.tar.gz</a>
            <a href="foo%201.4.tar.gz">foo-1.4.tar.gz</a>
            <a href="foo%3C1.5%3E.tar.gz">foo-1.5.tar.gz</a>
            <a href="foo&amp;1.6.tar.gz">foo-1.6.tar.gz</a>
            <a href="foo-1.7.tar.gz#egg=foo">x</a>
            <a href="foo-1.8.tar.gz#blake2b_256=zz">x</a>
            <a href="a%2F..%2Fevil.tar.gz">evil</a>"#
        );
        let parsed = parse_project_html(body.as_bytes(), &page_url(), "foo").unwrap();
        assert_eq!(
            parsed.dropped,
            [
                "link 1: href \"\" names no file",
                "link 3: invalid sha256 hash \"not-hex\"",
                "link 4: invalid sha256 hash \"abcd\"",
                "link 5: invalid md5 hash \"\"",
                "link 6: unsafe filename \"foo 1.4.tar.gz\"",
                "link 7: unsafe filename \"foo<1.5>.tar.gz\"",
                "link 8: unsafe filename \"foo&1.6.tar.gz\"",
                "link 11: unsafe filename \"a/../evil.tar.gz\"",
            ]
        );
        let files = &parsed.page.files;
        let names: Vec<&str> = files.iter().map(|f| f.filename.as_str()).collect();
        assert_eq!(names, ["foo-1.0.tar.gz", "foo-1.7.tar.gz", "foo-1.8.tar.gz"]);
        assert_eq!(files[0].hashes.get("sha256").unwrap(), SHA);
        assert!(files[1].hashes.is_empty(), "a fragment that names no hash");
        assert!(
            files[2].hashes.is_empty(),
            "a hash pip does not check is only ignored"
        );
    }

    #[test]
    fn long_bodies_are_fed_in_chunks() {
        let link = "<a href=\"f\u{e9}-1.0.tar.gz\">f\u{e9}-1.0.tar.gz</a>\n";
        let body = link.repeat(FEED_CHUNK / link.len() * 2 + 7);
        let page = parse_project_html(body.as_bytes(), &page_url(), "fé")
            .unwrap()
            .page;
        assert_eq!(page.files.len(), FEED_CHUNK / link.len() * 2 + 7);
        assert!(page.files.iter().all(|f| f.filename == "f\u{e9}-1.0.tar.gz"));
    }
}
