//! HTTPS: the certificate chain and key of `server.tls_cert` / `server.tls_key`, resolved at each
//! handshake so that a reload swaps them for new connections without touching open ones.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The server's certificate, swapped whole on reload.
#[derive(Debug)]
pub struct ServerCertificate {
    current: RwLock<Arc<CertifiedKey>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertificate {
    /// Reads the chain and key; an error names the file and what is wrong with it.
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<Self>, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let certified = read_pair(&provider, cert, key)?;
        Ok(Arc::new(Self {
            current: RwLock::new(Arc::new(certified)),
            provider,
        }))
    }

    /// Reads the files again (they may be other files than before), for [`Self::install`]; on
    /// an error the certificate in use stays.
    pub fn prepare(&self, cert: &Path, key: &Path) -> Result<LoadedCertificate, String> {
        read_pair(&self.provider, cert, key).map(LoadedCertificate)
    }

    /// Presents `loaded` from the next handshake on.
    pub fn install(&self, loaded: LoadedCertificate) {
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(loaded.0);
    }

    /// A rustls server configuration that presents this certificate (actix adds the ALPN
    /// protocols, `h2` first).
    pub fn server_config(self: &Arc<Self>) -> Result<rustls::ServerConfig, String> {
        let config = rustls::ServerConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS protocol versions: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        Ok(config)
    }
}

/// A certificate and key read and checked, not yet presented.
pub struct LoadedCertificate(CertifiedKey);

impl ResolvesServerCert for ServerCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self
                .current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        ))
    }
}

fn read_pair(provider: &CryptoProvider, cert: &Path, key: &Path) -> Result<CertifiedKey, String> {
    let chain = read(cert)?;
    let chain = CertificateDer::pem_slice_iter(&chain)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            format!(
                "server.tls_cert {}: not a PEM certificate chain: {e}",
                cert.display()
            )
        })?;
    if chain.is_empty() {
        return Err(format!(
            "server.tls_cert {}: no certificate in it",
            cert.display()
        ));
    }
    let key_pem = read(key)?;
    let private = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| format!("server.tls_key {}: not a PEM private key: {e}", key.display()))?;
    let signing = provider
        .key_provider
        .load_private_key(private)
        .map_err(|e| format!("server.tls_key {}: {e}", key.display()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| {
        format!(
            "server.tls_key {} is not the key of the certificate in {}: {e}",
            key.display(),
            cert.display()
        )
    })?;
    Ok(certified)
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", PathBuf::from(path).display()))
}
