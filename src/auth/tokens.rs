//! Access tokens: who may read when anonymous reads are off, upload to a hosted index, or act as
//! an admin. A token is `pkgm_<id>_<secret>`; its record (`tokens/<id>` in the record store, so
//! nodes on one bucket share them) keeps the name, the scopes, the times and the secret's sha256,
//! never the secret. A presented token is looked up by its id and its secret compared digest to
//! digest in constant time. Records are kept after revocation (for the list and the log).
//!
//! A verified record is remembered for [`CACHE_TTL`]: a revocation made on this node applies at
//! once, one made elsewhere (another node, the CLI) within that time.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::valid_index_name;
use crate::storage::blob::BlobError;
use crate::storage::records::{Expect, RecordKey, RecordStore};

const PREFIX: &str = "pkgm_";
const ID_BYTES: usize = 6;
const SECRET_BYTES: usize = 32;
const RECORDS: &str = "tokens";
pub const CACHE_TTL: Duration = Duration::from_secs(10);
const MAX_NAME: usize = 64;

/// What a token lets its holder do.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Read indexes and files (what every token may do).
    Read,
    /// Upload to the named hosted index (a PyPI index's name, or `hex:{name}` for a hosted hex
    /// repository); `None` is `upload:*`, every hosted index and repository.
    Upload(Option<String>),
    /// Everything, the admin pages and API included.
    Admin,
}

/// How an upload scope names a hosted hex repository (PyPI index names have no `:`).
const HEX_PREFIX: &str = "hex:";

impl Scope {
    /// The scope to publish to the hosted hex repository `name`.
    pub fn hex_upload(name: &str) -> Self {
        Self::Upload(Some(format!("{HEX_PREFIX}{name}")))
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read => f.write_str("read"),
            Self::Upload(None) => f.write_str("upload:*"),
            Self::Upload(Some(index)) => write!(f, "upload:{index}"),
            Self::Admin => f.write_str("admin"),
        }
    }
}

impl FromStr for Scope {
    type Err = TokenError;

    fn from_str(s: &str) -> Result<Self, TokenError> {
        match s {
            "read" => Ok(Self::Read),
            "admin" => Ok(Self::Admin),
            "upload:*" => Ok(Self::Upload(None)),
            _ => match s.strip_prefix("upload:") {
                Some(index) if valid_index_name(index.strip_prefix(HEX_PREFIX).unwrap_or(index)) => {
                    Ok(Self::Upload(Some(index.to_owned())))
                }
                _ => Err(TokenError::InvalidScope(s.chars().take(80).collect())),
            },
        }
    }
}

impl Serialize for Scope {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// What the record store keeps of a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: String,
    pub name: String,
    pub scopes: Vec<Scope>,
    /// Hex sha256 of the secret part.
    secret_sha256: String,
    /// Unix seconds.
    pub created_at: u64,
    #[serde(default)]
    pub expires_at: Option<u64>,
    #[serde(default)]
    pub revoked_at: Option<u64>,
}

impl TokenRecord {
    /// Whether the token is usable at `now`.
    pub fn is_active(&self, now: u64) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|at| now < at)
    }

    /// Whether the token grants `wanted`. Every token may read; `admin` may do everything;
    /// `upload:*` covers every hosted index.
    pub fn allows(&self, wanted: &Scope) -> bool {
        self.scopes.iter().any(|held| match (held, wanted) {
            (Scope::Admin, _) | (_, Scope::Read) => true,
            (Scope::Upload(None), Scope::Upload(_)) => true,
            (Scope::Upload(Some(held)), Scope::Upload(Some(wanted))) => held == wanted,
            _ => false,
        })
    }

    /// "active", "revoked" or "expired", as lists show it.
    pub fn state(&self, now: u64) -> &'static str {
        match (self.revoked_at, self.is_active(now)) {
            (Some(_), _) => "revoked",
            (None, true) => "active",
            (None, false) => "expired",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("invalid token name {0:?}: use 1-64 letters, digits, '.', '_' or '-'")]
    InvalidName(String),
    #[error(
        "invalid scope {0:?}: expected read, admin, upload:<hosted index>, upload:hex:<hosted hex repository> or upload:*"
    )]
    InvalidScope(String),
    #[error("a token needs at least one scope")]
    NoScope,
    #[error("invalid expiry {0:?}: expected a duration such as 90d or 12h")]
    InvalidExpiry(String),
    #[error("an active token is already named {0:?}")]
    NameTaken(String),
    #[error("no active token is named {0:?}")]
    NotFound(String),
    #[error("a stored token record is unreadable: {0}")]
    Corrupt(String),
    #[error("no randomness for a new token: {0}")]
    Random(String),
    #[error("the token store: {0}")]
    Store(#[from] BlobError),
}

/// A new token's scopes and expiry as people write them (`upload:internal`, `read`; `90d`).
pub fn grant(
    scopes: &[&str],
    expires: Option<&str>,
    now: u64,
) -> Result<(Vec<Scope>, Option<u64>), TokenError> {
    let scopes = scopes
        .iter()
        .map(|s| s.parse())
        .collect::<Result<Vec<Scope>, _>>()?;
    let expires_at = match expires.map(str::trim).filter(|e| !e.is_empty()) {
        None => None,
        Some(text) => match humantime::parse_duration(text) {
            Ok(after) => Some(now.saturating_add(after.as_secs())),
            Err(_) => return Err(TokenError::InvalidExpiry(text.chars().take(40).collect())),
        },
    };
    Ok((scopes, expires_at))
}

/// The tokens in a record store.
#[derive(Clone)]
pub struct Tokens {
    records: Arc<dyn RecordStore>,
    verified: moka::future::Cache<String, Arc<TokenRecord>>,
}

impl Tokens {
    pub fn new(records: Arc<dyn RecordStore>) -> Self {
        Self {
            records,
            verified: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(CACHE_TTL)
                .build(),
        }
    }

    /// Makes a token; returns its record and the token itself, which exists nowhere else.
    pub async fn create(
        &self,
        name: &str,
        scopes: Vec<Scope>,
        expires_at: Option<u64>,
        now: u64,
    ) -> Result<(TokenRecord, String), TokenError> {
        let name_ok = !name.is_empty()
            && name.len() <= MAX_NAME
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !name_ok {
            return Err(TokenError::InvalidName(name.chars().take(80).collect()));
        }
        if scopes.is_empty() {
            return Err(TokenError::NoScope);
        }
        // Names are unique among active tokens (two creations racing on one name can both
        // succeed; `revoke` then revokes both).
        if self
            .list()
            .await?
            .iter()
            .any(|t| t.name == name && t.is_active(now))
        {
            return Err(TokenError::NameTaken(name.to_owned()));
        }
        let random = |n| crate::auth::random_hex(n).map_err(|e| TokenError::Random(e.to_string()));
        loop {
            let (id, secret) = (random(ID_BYTES)?, random(SECRET_BYTES)?);
            let mut scopes = scopes.clone();
            scopes.sort();
            scopes.dedup();
            let record = TokenRecord {
                id: id.clone(),
                name: name.to_owned(),
                scopes,
                secret_sha256: hex::encode(Sha256::digest(secret.as_bytes())),
                created_at: now,
                expires_at,
                revoked_at: None,
            };
            let body = serde_json::to_vec(&record).map_err(|e| TokenError::Corrupt(e.to_string()))?;
            // A clash of 48-bit ids is all but impossible; should one happen, draw again.
            if self.records.put(&key(&id)?, &body, Expect::Absent).await? {
                return Ok((record, format!("{PREFIX}{id}_{secret}")));
            }
        }
    }

    /// Every token, active or not, oldest first.
    pub async fn list(&self) -> Result<Vec<TokenRecord>, TokenError> {
        let mut out = Vec::new();
        for key in self.records.list(&RecordKey::new(&[RECORDS])?).await? {
            if let Some(record) = self.records.get(&key).await? {
                out.push(parse(&record.body)?);
            }
        }
        out.sort_by(|a, b| (a.created_at, &a.name).cmp(&(b.created_at, &b.name)));
        Ok(out)
    }

    /// Revokes every active token named `name`; returns what was revoked.
    pub async fn revoke(&self, name: &str, now: u64) -> Result<Vec<TokenRecord>, TokenError> {
        let mut revoked = Vec::new();
        for token in self.list().await? {
            if token.name != name || !token.is_active(now) {
                continue;
            }
            let key = key(&token.id)?;
            // Read, change, write back unless someone changed it meanwhile; then read again.
            loop {
                let Some(stored) = self.records.get(&key).await? else {
                    break;
                };
                let mut record = parse(&stored.body)?;
                if record.revoked_at.is_some() {
                    break;
                }
                record.revoked_at = Some(now);
                let body = serde_json::to_vec(&record).map_err(|e| TokenError::Corrupt(e.to_string()))?;
                if self
                    .records
                    .put(&key, &body, Expect::Version(stored.version))
                    .await?
                {
                    self.verified.invalidate(&token.id).await;
                    revoked.push(record);
                    break;
                }
            }
        }
        if revoked.is_empty() {
            return Err(TokenError::NotFound(name.to_owned()));
        }
        Ok(revoked)
    }

    /// The active token `presented` is, if it is one.
    pub async fn verify(&self, presented: &str, now: u64) -> Result<Option<Arc<TokenRecord>>, TokenError> {
        let Some((id, secret)) = split(presented) else {
            return Ok(None);
        };
        let record = match self.verified.get(id).await {
            Some(record) => record,
            None => {
                let Some(stored) = self.records.get(&key(id)?).await? else {
                    return Ok(None);
                };
                Arc::new(parse(&stored.body)?)
            }
        };
        let digest = Sha256::digest(secret.as_bytes());
        let expected = hex::decode(&record.secret_sha256).unwrap_or_default();
        if !bool::from(digest.as_slice().ct_eq(&expected)) || !record.is_active(now) {
            return Ok(None);
        }
        self.verified.insert(id.to_owned(), record.clone()).await;
        Ok(Some(record))
    }
}

/// Why a request's token was not enough.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    NoToken,
    /// Not an active token (unknown, wrong, expired or revoked); counted against the client.
    WrongToken,
    /// A valid token without the scope asked for.
    NotAllowed {
        name: String,
    },
    /// Too many wrong tokens lately: refused without looking. `first` is true for the first
    /// refusal since the limit was reached (the one worth an admin log line).
    Limited {
        retry_after: u64,
        first: bool,
    },
}

/// Tokens as the server checks them: a wrong token counts against its client, and a client with
/// [`super::MAX_FAILURES`] wrong tokens within [`super::FAILURE_WINDOW`] is refused without its
/// token being looked at, so guessing runs at a few tokens a minute.
pub struct TokenGate {
    tokens: Tokens,
    failures: super::FailureLimiter,
}

impl TokenGate {
    pub fn new(tokens: Tokens) -> Self {
        Self {
            tokens,
            failures: super::FailureLimiter::default(),
        }
    }

    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    /// Whether `presented` (from `client`) grants `wanted` at `now`.
    pub async fn admit(
        &self,
        client: Option<std::net::IpAddr>,
        presented: Option<&str>,
        wanted: &Scope,
        now: u64,
    ) -> Result<Result<Arc<TokenRecord>, Denial>, TokenError> {
        let client = client.unwrap_or(std::net::IpAddr::from(std::net::Ipv6Addr::UNSPECIFIED));
        let Some(presented) = presented else {
            return Ok(Err(Denial::NoToken));
        };
        let instant = std::time::Instant::now();
        if let Err((retry_after, first)) = self.failures.allowance(client, instant) {
            return Ok(Err(Denial::Limited { retry_after, first }));
        }
        match self.tokens.verify(presented, now).await? {
            Some(record) if record.allows(wanted) => Ok(Ok(record)),
            Some(record) => Ok(Err(Denial::NotAllowed {
                name: record.name.clone(),
            })),
            None => {
                self.failures.fail(client, instant);
                Ok(Err(Denial::WrongToken))
            }
        }
    }
}

fn key(id: &str) -> Result<RecordKey, TokenError> {
    Ok(RecordKey::new(&[RECORDS, id])?)
}

fn parse(body: &[u8]) -> Result<TokenRecord, TokenError> {
    serde_json::from_slice(body).map_err(|e| TokenError::Corrupt(e.to_string()))
}

/// `pkgm_<id>_<secret>` → (id, secret), when it has that shape.
fn split(presented: &str) -> Option<(&str, &str)> {
    let (id, secret) = presented.strip_prefix(PREFIX)?.split_once('_')?;
    let hex = |s: &str, bytes: usize| s.len() == bytes * 2 && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(id, ID_BYTES) && hex(secret, SECRET_BYTES)).then_some((id, secret))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::records::DirRecordStore;

    fn tokens(dir: &std::path::Path) -> Tokens {
        Tokens::new(Arc::new(DirRecordStore::open(dir).unwrap()))
    }

    #[test]
    fn scopes_read_and_print_as_the_cli_spells_them() {
        for text in ["read", "admin", "upload:*", "upload:internal", "upload:hex:team"] {
            assert_eq!(text.parse::<Scope>().unwrap().to_string(), text);
        }
        for bad in [
            "",
            "write",
            "upload:",
            "upload:../x",
            "upload:Internal",
            "READ",
            "upload:hex:",
            "upload:hex:a:b",
            "upload:pypi:x",
        ] {
            assert!(bad.parse::<Scope>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn what_each_scope_allows() {
        let record = |scopes: &[&str]| TokenRecord {
            id: "0".repeat(12),
            name: "t".into(),
            scopes: scopes.iter().map(|s| s.parse().unwrap()).collect(),
            secret_sha256: String::new(),
            created_at: 0,
            expires_at: None,
            revoked_at: None,
        };
        let internal = Scope::Upload(Some("internal".into()));
        let other = Scope::Upload(Some("other".into()));
        assert!(record(&["read"]).allows(&Scope::Read));
        assert!(!record(&["read"]).allows(&internal));
        assert!(record(&["upload:internal"]).allows(&internal));
        assert!(record(&["upload:internal"]).allows(&Scope::Read));
        assert!(!record(&["upload:internal"]).allows(&other));
        assert!(!record(&["upload:internal"]).allows(&Scope::Admin));
        assert!(record(&["upload:*"]).allows(&other));
        assert!(record(&["upload:*"]).allows(&Scope::hex_upload("team")));
        assert!(record(&["upload:hex:team"]).allows(&Scope::hex_upload("team")));
        assert!(!record(&["upload:hex:team"]).allows(&Scope::hex_upload("other")));
        assert!(!record(&["upload:team"]).allows(&Scope::hex_upload("team")));
        assert!(!record(&["upload:hex:team"]).allows(&Scope::Upload(Some("team".into()))));
        assert!(!record(&["upload:*"]).allows(&Scope::Admin));
        assert!(record(&["admin"]).allows(&other));
    }

    #[tokio::test]
    async fn create_verify_revoke_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let store = tokens(dir.path());
        let (record, token) = store
            .create("ci", vec![Scope::Upload(Some("internal".into()))], None, 100)
            .await
            .unwrap();
        assert!(token.starts_with("pkgm_"));
        assert!(
            !serde_json::to_string(&record)
                .unwrap()
                .contains(token.rsplit('_').next().unwrap()),
            "the secret is never stored"
        );
        assert_eq!(store.verify(&token, 101).await.unwrap().unwrap().name, "ci");

        // A wrong secret, a malformed token and an unknown id are no token.
        let mut wrong = token.clone();
        let last = wrong.pop().unwrap();
        wrong.push(if last == '0' { '1' } else { '0' });
        assert!(store.verify(&wrong, 101).await.unwrap().is_none());
        assert!(store.verify("pkgm_nothex_x", 101).await.unwrap().is_none());
        assert!(
            store
                .verify(&format!("pkgm_{}_{}", "f".repeat(12), "0".repeat(64)), 101)
                .await
                .unwrap()
                .is_none()
        );

        assert!(matches!(
            store.create("ci", vec![Scope::Read], None, 102).await,
            Err(TokenError::NameTaken(_))
        ));
        assert!(matches!(
            store.create("bad name", vec![Scope::Read], None, 102).await,
            Err(TokenError::InvalidName(_))
        ));
        assert!(matches!(
            store.create("x", vec![], None, 102).await,
            Err(TokenError::NoScope)
        ));

        // Revoked: refused at once on this node, and by another handle on the same records.
        assert_eq!(store.revoke("ci", 103).await.unwrap().len(), 1);
        assert!(store.verify(&token, 104).await.unwrap().is_none());
        assert!(tokens(dir.path()).verify(&token, 104).await.unwrap().is_none());
        assert!(matches!(
            store.revoke("ci", 105).await,
            Err(TokenError::NotFound(_))
        ));
        let listed = store.list().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].state(105), "revoked");

        // The name is free again once its token is revoked; an expired token is refused.
        let (_, short) = store
            .create("ci", vec![Scope::Read], Some(200), 106)
            .await
            .unwrap();
        assert!(store.verify(&short, 199).await.unwrap().is_some());
        assert!(store.verify(&short, 200).await.unwrap().is_none());
    }
}
