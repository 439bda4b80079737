//! `[server]`: the listening address and its TLS certificate, the admin token, the public URL,
//! and which proxies' forwarded client addresses are believed.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer};
use url::Url;

use super::values::{Secret, duration, has_credentials, parse_http_url, redact_raw_url};

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(deserialize_with = "socket_addr")]
    pub listen: SocketAddr,
    /// Empty: admin endpoints answer only requests from loopback.
    pub admin_token: Secret,
    /// External base URL for links behind a reverse proxy; ends with `/`.
    #[serde(deserialize_with = "public_url")]
    pub public_url: Option<Url>,
    /// Peers whose `X-Forwarded-For` / `Forwarded` names the client (a reverse proxy's address).
    pub trusted_proxies: Vec<IpRange>,
    /// Start with `public_url` set and no `admin_token` (every client the proxy makes look like
    /// loopback is then an admin, unless `trusted_proxies` names the proxy).
    pub allow_open_admin: bool,
    /// False: every read (indexes, files, the UI) needs an access token (`pkgmirror token`).
    pub anonymous_read: bool,
    /// How long a request's body may take to arrive, from the end of its head.
    #[serde(deserialize_with = "duration")]
    pub request_body_timeout: Duration,
    /// PEM certificate chain and private key: HTTPS (HTTP/2 by ALPN) on `listen`. Both or neither.
    #[serde(deserialize_with = "optional_path")]
    pub tls_cert: Option<PathBuf>,
    #[serde(deserialize_with = "optional_path")]
    pub tls_key: Option<PathBuf>,
}

impl ServerConfig {
    /// The certificate and key files, when HTTPS is on; an error names the key that is missing.
    pub fn tls_files(&self) -> Result<Option<(&Path, &Path)>, (&'static str, String)> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Ok(Some((cert, key))),
            (None, None) => Ok(None),
            (Some(_), None) => Err((
                "server.tls_key",
                "required when server.tls_cert is set".to_owned(),
            )),
            (None, Some(_)) => Err((
                "server.tls_cert",
                "required when server.tls_key is set".to_owned(),
            )),
        }
    }

    /// Whether the admin endpoints would be open to whoever reaches the public URL: a public URL
    /// means a reverse proxy, whose connections come from loopback. Refused unless consented to.
    pub fn check_admin_exposure(&self) -> Result<(), String> {
        if self.public_url.is_some() && self.admin_token.is_empty() && !self.allow_open_admin {
            return Err(
                "empty while server.public_url is set: behind a reverse proxy on this host every client \
                 looks like loopback, and loopback clients are admins without a token; set \
                 server.admin_token (and server.trusted_proxies to the proxy's address), or \
                 server.allow_open_admin = true to start anyway"
                    .to_owned(),
            );
        }
        Ok(())
    }
}

/// An address or a CIDR block (`10.0.0.0/8`, `::1`), as `server.trusted_proxies` lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpRange {
    network: IpAddr,
    prefix: u8,
}

impl IpRange {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for IpRange {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = addr
            .parse::<IpAddr>()
            .map_err(|_| format!("{text:?} is not an IP address or CIDR block (e.g. \"10.0.0.0/8\")"))?
            .to_canonical();
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {max}"))?,
        };
        Ok(Self { network, prefix })
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl<'de> Deserialize<'de> for IpRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(de::Error::custom)
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 5000)),
            admin_token: Secret::default(),
            public_url: None,
            trusted_proxies: Vec::new(),
            allow_open_admin: false,
            anonymous_read: true,
            request_body_timeout: Duration::from_secs(30),
            tls_cert: None,
            tls_key: None,
        }
    }
}

fn socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let s = String::deserialize(d)?;
    s.trim().parse().map_err(|_| {
        de::Error::custom(format!(
            "invalid socket address {s:?} (expected e.g. \"127.0.0.1:5000\" or \"[::]:5000\")"
        ))
    })
}

/// Empty string: `None`.
fn optional_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    let s = String::deserialize(d)?;
    Ok((!s.trim().is_empty()).then(|| PathBuf::from(s.trim())))
}

/// Empty string: `None`. Credentials are refused: this URL goes into links
/// that clients see.
fn public_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Url>, D::Error> {
    let s = String::deserialize(d)?;
    if s.trim().is_empty() {
        return Ok(None);
    }
    let url = parse_http_url(&s).map_err(de::Error::custom)?;
    if has_credentials(&url) {
        return Err(de::Error::custom(format!(
            "must not contain credentials ({:?})",
            redact_raw_url(&s)
        )));
    }
    Ok(Some(url))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(text: &str) -> IpRange {
        text.parse().unwrap()
    }

    #[test]
    fn ranges_hold_their_addresses() {
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        assert!(range("127.0.0.1").contains(ip("127.0.0.1")));
        assert!(!range("127.0.0.1").contains(ip("127.0.0.2")));
        assert!(range("10.0.0.0/8").contains(ip("10.200.3.4")));
        assert!(range("10.0.0.0/8").contains(ip("::ffff:10.1.1.1")), "mapped IPv4");
        assert!(!range("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(range("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(!range("0.0.0.0/0").contains(ip("::1")));
        assert!(range("::1").contains(ip("::1")));
        assert!(range("2001:db8::/32").contains(ip("2001:db8:ffff::1")));
        assert!(!range("2001:db8::/32").contains(ip("2001:db9::1")));
        assert_eq!(range(" 192.0.2.0/24 ").to_string(), "192.0.2.0/24");
        assert_eq!(range("::1").to_string(), "::1/128");
        for bad in ["", "proxy.example", "10.0.0.0/33", "::/129", "10.0.0.1/x"] {
            assert!(bad.parse::<IpRange>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tls_needs_both_the_certificate_and_the_key() {
        let mut server = ServerConfig::default();
        assert_eq!(server.tls_files(), Ok(None));
        server.tls_cert = Some(PathBuf::from("cert.pem"));
        assert_eq!(server.tls_files().unwrap_err().0, "server.tls_key");
        server.tls_key = Some(PathBuf::from("key.pem"));
        assert_eq!(
            server.tls_files(),
            Ok(Some((Path::new("cert.pem"), Path::new("key.pem"))))
        );
        server.tls_cert = None;
        assert_eq!(server.tls_files().unwrap_err().0, "server.tls_cert");
    }

    #[test]
    fn a_public_url_without_a_token_needs_consent() {
        let mut server = ServerConfig {
            public_url: Some(Url::parse("https://mirror.example/").unwrap()),
            ..ServerConfig::default()
        };
        assert!(server.check_admin_exposure().is_err());
        server.allow_open_admin = true;
        assert!(server.check_admin_exposure().is_ok());
        server.allow_open_admin = false;
        server.admin_token = Secret::from("t".to_owned());
        assert!(server.check_admin_exposure().is_ok());
        assert!(
            ServerConfig::default().check_admin_exposure().is_ok(),
            "no public URL"
        );
    }
}
