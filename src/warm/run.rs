//! The warm run: pages first (to learn and check what to fetch), then every file, a bounded
//! number at a time, each body hashed as it streams and thrown away.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt as _, TryStreamExt as _};
use reqwest::header::{ACCEPT, HeaderValue};
use sha2::{Digest as _, Sha256};
use url::Url;

use super::lockfile::{HexWant, LockFile, Pick, PythonWant};
use super::select::{self, Filters};
use super::{Progress, Report};
use crate::hex::key::HexPublicKey;
use crate::hex::proto::Package;
use crate::hex::registry::RegistryVerifier;
use crate::pypi::model::{DistFile, ProjectPage};
use crate::pypi::name::normalize;
use crate::pypi::parse_json::parse_project_json;

const JSON_PAGE: &str = "application/vnd.pypi.simple.v1+json";
/// A response body quoted in an error is cut here.
const QUOTED_BODY: usize = 300;

#[derive(Debug, thiserror::Error)]
pub enum WarmError {
    #[error("the server URL {0} is not http or https")]
    Scheme(Url),
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// Asks one server for what lock files name.
pub struct Warmer {
    client: reqwest::Client,
    /// The server's root, ending in `/`, credentials taken out.
    server: Url,
    credentials: Option<(String, Option<String>)>,
    jobs: usize,
    filters: Filters,
    progress: Arc<Progress>,
}

/// One body to fetch, and what it must hash to.
struct Fetch {
    url: Url,
    /// The file name, for messages.
    name: String,
    size: Option<u64>,
    sha256: Option<String>,
    /// The lock files that asked for it.
    asked_by: BTreeSet<String>,
}

/// What the lock files ask of one project or package, with the files that ask it.
struct Asked<'a, W> {
    wants: Vec<(&'a str, &'a W)>,
}

impl<W> Default for Asked<'_, W> {
    fn default() -> Self {
        Self { wants: Vec::new() }
    }
}

impl<W> Asked<'_, W> {
    fn files(&self) -> String {
        let files: BTreeSet<&str> = self.wants.iter().map(|(path, _)| *path).collect();
        files.into_iter().collect::<Vec<_>>().join(", ")
    }
}

impl Warmer {
    /// A warmer for the server at `server` (credentials in it are sent as HTTP Basic, as pip
    /// sends them), running `jobs` fetches at once.
    pub fn new(
        server: &Url,
        jobs: usize,
        filters: Filters,
        progress: Arc<Progress>,
    ) -> Result<Self, WarmError> {
        if !matches!(server.scheme(), "http" | "https") {
            return Err(WarmError::Scheme(server.clone()));
        }
        let mut root = server.clone();
        let credentials = (!root.username().is_empty()).then(|| {
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (decode(root.username()), root.password().map(decode))
        });
        // Infallible for http(s) URLs, which have a host.
        let _ = root.set_username("");
        let _ = root.set_password(None);
        if !root.path().ends_with('/') {
            root.set_path(&format!("{}/", root.path()));
        }
        let client = client_builder().build()?;
        Ok(Self {
            client,
            server: root,
            credentials,
            jobs: jobs.max(1),
            filters,
            progress,
        })
    }

    /// Accepts any certificate: for a server warming itself through its own loopback listener,
    /// whose certificate names its public host, not 127.0.0.1.
    pub fn for_own_listener(mut self) -> Result<Self, WarmError> {
        self.client = client_builder().danger_accept_invalid_certs(true).build()?;
        Ok(self)
    }

    /// Fetches every page and file `locks` name; never fails as a whole: what failed is in the
    /// report.
    pub async fn run(&self, locks: &[LockFile]) -> Report {
        let started = Instant::now();
        let mut report = Report::default();
        let mut python: BTreeMap<String, Asked<PythonWant>> = BTreeMap::new();
        let mut hex: BTreeMap<String, Asked<HexWant>> = BTreeMap::new();
        for lock in locks {
            for want in &lock.python {
                python
                    .entry(normalize(&want.project))
                    .or_default()
                    .wants
                    .push((&lock.path, want));
            }
            for want in &lock.hex {
                if want.repo == "hexpm" {
                    hex.entry(want.name.clone())
                        .or_default()
                        .wants
                        .push((&lock.path, want));
                } else {
                    report.skipped.push(format!(
                        "{}: {} {}: repository {} is not mirrored (only hexpm is)",
                        lock.path, want.name, want.version, want.repo
                    ));
                }
            }
            report.skipped.extend(
                lock.skipped
                    .iter()
                    .map(|s| format!("{}: {}: {}", lock.path, s.what, s.why)),
            );
        }
        Progress::add(&self.progress.pages_total, (python.len() + hex.len()) as u64);

        let mut fetches: BTreeMap<Url, Fetch> = BTreeMap::new();
        // Each page is read for what it names and dropped as it arrives: a lock of hundreds of
        // projects never holds all their pages at once.
        let mut pages = futures::stream::iter(python.iter())
            .map(|(project, asked)| async move { (project, asked, self.project_page(project).await) })
            .buffer_unordered(self.jobs);
        while let Some((project, asked, page)) = pages.next().await {
            self.page_done(&mut report, page.is_ok());
            match page {
                Ok(page) => self.python_fetches(project, asked, &page, &mut fetches, &mut report.failures),
                Err(e) => report.failures.push(format!("{}: {project}: {e}", asked.files())),
            }
        }
        if !hex.is_empty() {
            match self.hex_verifier().await {
                Ok(verifier) => {
                    let mut packages = futures::stream::iter(hex.iter())
                        .map(|(name, asked)| {
                            let verifier = &verifier;
                            async move { (name, asked, self.hex_package(verifier, name).await) }
                        })
                        .buffer_unordered(self.jobs);
                    while let Some((name, asked, package)) = packages.next().await {
                        self.page_done(&mut report, package.is_ok());
                        match package {
                            Ok(package) => {
                                self.hex_fetches(&package, asked, &mut fetches, &mut report.failures)
                            }
                            Err(e) => report
                                .failures
                                .push(format!("{}: hex package {name}: {e}", asked.files())),
                        }
                    }
                }
                Err(e) => {
                    for (name, asked) in &hex {
                        self.page_done(&mut report, false);
                        report
                            .failures
                            .push(format!("{}: hex package {name}: {e}", asked.files()));
                    }
                }
            }
        }

        Progress::add(&self.progress.files_total, fetches.len() as u64);
        Progress::add(
            &self.progress.bytes_total,
            fetches.values().filter_map(|f| f.size).sum(),
        );
        let mut results = futures::stream::iter(fetches.into_values())
            .map(|fetch| async move {
                let outcome = self.fetch(&fetch).await;
                (fetch, outcome)
            })
            .buffer_unordered(self.jobs);
        while let Some((fetch, outcome)) = results.next().await {
            Progress::add(&self.progress.files_done, 1);
            match outcome {
                Ok(bytes) => {
                    report.files += 1;
                    report.bytes += bytes;
                }
                Err(e) => {
                    Progress::add(&self.progress.failures, 1);
                    let files: Vec<&str> = fetch.asked_by.iter().map(String::as_str).collect();
                    report
                        .failures
                        .push(format!("{}: {}: {e}", files.join(", "), fetch.name));
                }
            }
        }
        report.failures.sort();
        report.seconds = started.elapsed().as_secs_f64();
        report
    }

    fn page_done(&self, report: &mut Report, ok: bool) {
        Progress::add(&self.progress.pages_done, 1);
        if ok {
            report.pages += 1;
        } else {
            Progress::add(&self.progress.failures, 1);
        }
    }

    /// The files one project's wants name on its page (checked against the lock files' hashes).
    fn python_fetches(
        &self,
        project: &str,
        asked: &Asked<PythonWant>,
        page: &ProjectPage,
        fetches: &mut BTreeMap<Url, Fetch>,
        failures: &mut Vec<String>,
    ) {
        for (path, want) in &asked.wants {
            let chosen = match &want.pick {
                Pick::Locked { version, files } => {
                    let (chosen, problems) = select::locked(page, files);
                    failures.extend(
                        problems
                            .into_iter()
                            .map(|p| format!("{path}: {project} {version}: {p}")),
                    );
                    // A hash the index does not give is still checked on the bytes.
                    chosen
                        .into_iter()
                        .map(|file| {
                            let recorded = files
                                .iter()
                                .find(|f| f.filename == file.filename)
                                .and_then(|f| f.hashes.iter().find(|d| d.algorithm == "sha256"))
                                .map(|d| d.hex.clone());
                            (file, recorded)
                        })
                        .collect()
                }
                Pick::Requirement { specifiers, hashes } => {
                    match select::requirement(page, project, specifiers, hashes, &self.filters) {
                        Ok(chosen) => chosen.into_iter().map(|f| (f, None)).collect(),
                        Err(e) => {
                            failures.push(format!("{path}: {project}{specifiers}: {e}"));
                            Vec::new()
                        }
                    }
                }
            };
            for (file, recorded_sha256) in chosen {
                for fetch in file_fetches(file, recorded_sha256) {
                    add_fetch(fetches, fetch, path);
                }
            }
        }
    }

    fn hex_fetches(
        &self,
        package: &Package,
        asked: &Asked<HexWant>,
        fetches: &mut BTreeMap<Url, Fetch>,
        failures: &mut Vec<String>,
    ) {
        for (path, want) in &asked.wants {
            let what = format!("{path}: hex package {} {}", want.name, want.version);
            let Some(release) = package.releases.iter().find(|r| r.version == want.version) else {
                failures.push(format!("{what}: the repository has no such release"));
                continue;
            };
            let checks = [
                ("inner", &want.inner_checksum, Some(&release.inner_checksum)),
                ("outer", &want.outer_checksum, release.outer_checksum.as_ref()),
            ];
            let mut agrees = true;
            for (which, recorded, listed) in checks {
                if let (Some(recorded), Some(listed)) = (recorded, listed.map(hex::encode))
                    && *recorded != listed
                {
                    failures.push(format!(
                        "{what}: checksum mismatch: the lock file's {which} checksum is {recorded}, the registry's {listed}"
                    ));
                    agrees = false;
                }
            }
            let tarball = format!("{}-{}.tar", want.name, want.version);
            match (agrees, self.server.join(&format!("hex/tarballs/{tarball}"))) {
                (true, Ok(url)) => add_fetch(
                    fetches,
                    Fetch {
                        url,
                        name: tarball,
                        size: None,
                        sha256: release.outer_checksum.as_ref().map(hex::encode),
                        asked_by: BTreeSet::new(),
                    },
                    path,
                ),
                (true, Err(e)) => failures.push(format!("{what}: {e}")),
                (false, _) => {}
            }
        }
    }

    fn get(&self, url: Url) -> reqwest::RequestBuilder {
        let request = self.client.get(url);
        match &self.credentials {
            Some((user, password)) => request.basic_auth(user, password.as_deref()),
            None => request,
        }
    }

    /// A 200 response, or an error quoting what the server said.
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, String> {
        let response = request.send().await.map_err(transport_error)?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        let body: String = body.trim().chars().take(QUOTED_BODY).collect();
        Err(format!("the server answered {status}: {body}"))
    }

    async fn project_page(&self, project: &str) -> Result<ProjectPage, String> {
        let url = self
            .server
            .join(&format!("simple/{project}/"))
            .map_err(|e| e.to_string())?;
        let request = self.get(url).header(ACCEPT, HeaderValue::from_static(JSON_PAGE));
        let response = self.send(request).await?;
        let page_url = response.url().clone();
        let body = response.bytes().await.map_err(transport_error)?;
        let parsed =
            parse_project_json(&body, &page_url).map_err(|e| format!("cannot read the page: {e}"))?;
        Ok(parsed.page)
    }

    /// The registry files are checked with the key the server serves: hex.pm's, or its own when
    /// it re-signs them.
    async fn hex_verifier(&self) -> Result<RegistryVerifier, String> {
        let url = self.server.join("hex/public_key").map_err(|e| e.to_string())?;
        let pem = self
            .send(self.get(url))
            .await?
            .text()
            .await
            .map_err(transport_error)?;
        let key = HexPublicKey::from_pem(&pem).map_err(|e| format!("the server's /hex/public_key: {e}"))?;
        Ok(RegistryVerifier::new(key))
    }

    async fn hex_package(&self, verifier: &RegistryVerifier, name: &str) -> Result<Package, String> {
        let url = self
            .server
            .join(&format!("hex/packages/{name}"))
            .map_err(|e| e.to_string())?;
        let body = self
            .send(self.get(url))
            .await?
            .bytes()
            .await
            .map_err(transport_error)?;
        verifier.package(name, &body).map_err(|e| e.to_string())
    }

    /// Streams one body through sha256 and away; its length on success.
    async fn fetch(&self, fetch: &Fetch) -> Result<u64, String> {
        let response = self.send(self.get(fetch.url.clone())).await?;
        let mut hasher = Sha256::new();
        let mut length = 0u64;
        let mut body = response.bytes_stream().map_err(transport_error);
        while let Some(chunk) = body.try_next().await? {
            hasher.update(&chunk);
            length += chunk.len() as u64;
            Progress::add(&self.progress.bytes_done, chunk.len() as u64);
        }
        if fetch.size.is_none() {
            // Counted in the total once known, so the done bytes never pass it.
            Progress::add(&self.progress.bytes_total, length);
        }
        let got = hex::encode(hasher.finalize());
        match &fetch.sha256 {
            Some(expected) if *expected != got => Err(format!(
                "hash mismatch: the server sent bytes with sha256 {got}, expected {expected}"
            )),
            _ => Ok(length),
        }
    }
}

fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(concat!("pkgmirror-warm/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        // The server may be downloading a big file for the first time: allow it a pause.
        .read_timeout(Duration::from_secs(300))
}

/// A listed file, its PEP 658 metadata and its PEP 740 provenance: what clients read.
fn file_fetches(file: &DistFile, recorded_sha256: Option<String>) -> Vec<Fetch> {
    let Ok(url) = Url::parse(&file.url) else {
        return Vec::new();
    };
    let beside = |suffix: &str| Url::parse(&format!("{}{suffix}", file.url)).ok();
    let mut fetches = vec![Fetch {
        url,
        name: file.filename.clone(),
        size: file.size,
        sha256: file.hashes.get("sha256").cloned().or(recorded_sha256),
        asked_by: BTreeSet::new(),
    }];
    if let Some(metadata) = &file.core_metadata
        && let Some(url) = beside(".metadata")
    {
        fetches.push(Fetch {
            url,
            name: format!("{}.metadata", file.filename),
            size: None,
            sha256: metadata.get("sha256").cloned(),
            asked_by: BTreeSet::new(),
        });
    }
    // Served through the mirror (`{file}.provenance`) whatever the page's link says, so
    // attestations keep working when the upstream is gone.
    if file.provenance.is_some()
        && let Some(url) = beside(".provenance")
    {
        fetches.push(Fetch {
            url,
            name: format!("{}.provenance", file.filename),
            size: None,
            sha256: None,
            asked_by: BTreeSet::new(),
        });
    }
    fetches
}

fn add_fetch(fetches: &mut BTreeMap<Url, Fetch>, fetch: Fetch, asked_by: &str) {
    fetches
        .entry(fetch.url.clone())
        .or_insert(fetch)
        .asked_by
        .insert(asked_by.to_owned());
}

/// A transport error with its causes, without the URL (the message names the file already).
fn transport_error(e: reqwest::Error) -> String {
    crate::upstream::describe(&e.without_url())
}
