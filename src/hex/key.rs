//! The repository's public key: parsing the configured PEM and hex.pm's built-in key, and checking
//! a signature with it.

use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::DecodePublicKey;
use rsa::sha2::Sha512;
use rsa::signature::Verifier;
use thiserror::Error;

/// hex.pm's repository public key, as the clients build it in (hex_core's `?HEXPM_PUBLIC_KEY` in
/// `src/hex_core.erl`, mix's `Hex.Config`), published at <https://hex.pm/docs/public_keys> and
/// served at `https://repo.hex.pm/public_key`. It is public; pinning it is what lets the mirror
/// refuse a registry file hex.pm did not sign.
pub const HEXPM_PUBLIC_KEY_PEM: &str = "\
-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEApqREcFDt5vV21JVe2QNB
Edvzk6w36aNFhVGWN5toNJRjRJ6m4hIuG4KaXtDWVLjnvct6MYMfqhC79HAGwyF+
IqR6Q6a5bbFSsImgBJwz1oadoVKD6ZNetAuCIK84cjMrEFRkELtEIPNHblCzUkkM
3rS9+DPlnfG8hBvGi6tvQIuZmXGCxF/73hU0/MyGhbmEjIKRtG6b0sJYKelRLTPW
XgK7s5pESgiwf2YC/2MGDXjAJfpfCd0RpLdvd4eRiXtVlE9qO9bND94E7PgQ/xqZ
J1i2xWFndWa6nfFnRxZmCStCOZWYYPlaxr+FZceFbpMwzTNs4g3d4tLNUcbKAIH4
0wIDAQAB
-----END PUBLIC KEY-----
";

/// Why a configured public key was refused. The messages name `hex.public_key`, the setting a
/// person would fix.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyError {
    #[error(
        "hex.public_key is not PEM: expected a '-----BEGIN PUBLIC KEY-----' (or '-----BEGIN RSA PUBLIC KEY-----') block"
    )]
    NotPem,
    #[error(
        "hex.public_key holds a private key ('{label}'); configure the repository's public key ('BEGIN PUBLIC KEY') instead, and keep the private key secret"
    )]
    PrivateKey { label: String },
    #[error(
        "hex.public_key is a '{label}' PEM block; expected 'PUBLIC KEY' (SPKI) or 'RSA PUBLIC KEY' (PKCS#1)"
    )]
    UnsupportedLabel { label: String },
    #[error("hex.public_key is not a valid RSA public key in its '{label}' block: {reason}")]
    Invalid { label: String, reason: String },
}

/// An RSA public key that checks registry signatures (RSASSA-PKCS1-v1_5, SHA-512), as hex_core's
/// `public_key:verify(Payload, sha512, Signature, Key)` does.
#[derive(Clone, Debug)]
pub struct HexPublicKey {
    key: VerifyingKey<Sha512>,
}

impl HexPublicKey {
    /// Parses a PEM public key: SPKI (`BEGIN PUBLIC KEY`, what hex.pm publishes) or PKCS#1
    /// (`BEGIN RSA PUBLIC KEY`). Text around the block (a comment line, blank lines) is ignored.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let (label, block) = pem_block(pem).ok_or(KeyError::NotPem)?;
        let parsed = match label {
            "PUBLIC KEY" => rsa::PublicKey::from_public_key_pem(&block).map_err(|e| e.to_string()),
            "RSA PUBLIC KEY" => rsa::PublicKey::from_pkcs1_pem(&block).map_err(|e| e.to_string()),
            _ if label.contains("PRIVATE KEY") => {
                return Err(KeyError::PrivateKey {
                    label: label.to_owned(),
                });
            }
            _ => {
                return Err(KeyError::UnsupportedLabel {
                    label: label.to_owned(),
                });
            }
        };
        let key = parsed.map_err(|reason| KeyError::Invalid {
            label: label.to_owned(),
            reason,
        })?;
        Ok(Self {
            key: VerifyingKey::new(key),
        })
    }

    /// hex.pm's key ([`HEXPM_PUBLIC_KEY_PEM`]).
    pub fn hexpm() -> Self {
        Self::from_pem(HEXPM_PUBLIC_KEY_PEM).expect("the built-in hex.pm public key parses")
    }

    /// The key `hex.public_key` configures: its PEM, or hex.pm's key when it is empty.
    pub fn from_config(pem: &str) -> Result<Self, KeyError> {
        if pem.trim().is_empty() {
            Ok(Self::hexpm())
        } else {
            Self::from_pem(pem)
        }
    }

    /// Whether `signature` is this key's RSASSA-PKCS1-v1_5 SHA-512 signature of `payload`.
    pub fn verifies(&self, payload: &[u8], signature: &[u8]) -> bool {
        Signature::try_from(signature).is_ok_and(|sig| self.key.verify(payload, &sig).is_ok())
    }
}

/// The mirror's own key (`hex.resign_key`): registry files it changed (the release policy took
/// releases out) are signed with it, and its public half is served at `/hex/public_key`.
#[derive(Clone, Debug)]
pub struct HexSigningKey {
    key: rsa::pkcs1v15::SigningKey<Sha512>,
    public_pem: String,
}

impl HexSigningKey {
    /// Parses a PEM private key: PKCS#8 (`BEGIN PRIVATE KEY`) or PKCS#1 (`BEGIN RSA PRIVATE KEY`).
    pub fn from_pem(pem: &str) -> Result<Self, String> {
        use rsa::pkcs1::DecodeRsaPrivateKey;
        use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey, LineEnding};
        let (label, block) = pem_block(pem)
            .ok_or("hex.resign_key is not PEM: expected a '-----BEGIN PRIVATE KEY-----' block")?;
        let key = match label {
            "PRIVATE KEY" => rsa::PrivateKey::from_pkcs8_pem(&block).map_err(|e| e.to_string()),
            "RSA PRIVATE KEY" => rsa::PrivateKey::from_pkcs1_pem(&block).map_err(|e| e.to_string()),
            other => Err(format!(
                "a '{other}' block; expected 'PRIVATE KEY' or 'RSA PRIVATE KEY'"
            )),
        }
        .map_err(|e| format!("hex.resign_key is not an RSA private key: {e}"))?;
        let public_pem = key
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| format!("hex.resign_key: its public key cannot be written: {e}"))?;
        Ok(Self {
            key: rsa::pkcs1v15::SigningKey::new(key),
            public_pem,
        })
    }

    /// RSASSA-PKCS1-v1_5 with SHA-512 over `payload`, as hex.pm signs.
    pub fn sign(&self, payload: &[u8]) -> Vec<u8> {
        use rsa::signature::{SignatureEncoding, Signer};
        self.key.sign(payload).to_vec()
    }

    /// The public key, SPKI PEM: what clients pin to trust the mirror's registry files.
    pub fn public_pem(&self) -> &str {
        &self.public_pem
    }
}

/// The label and the normalized text (LF line ends, nothing around it) of the first PEM block.
/// The PEM decoder is strict about both, and a key pasted into a TOML string often has neither.
fn pem_block(text: &str) -> Option<(&str, String)> {
    let mut lines = text.lines().map(str::trim);
    let label = lines.by_ref().find_map(|line| {
        line.strip_prefix("-----BEGIN ")?
            .strip_suffix("-----")
            .filter(|label| !label.is_empty())
    })?;
    let end = format!("-----END {label}-----");
    let mut block = format!("-----BEGIN {label}-----\n");
    for line in lines {
        block.push_str(line);
        block.push('\n');
        if line == end {
            return Some((label, block));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hex::test_support::{OTHER_KEY_PUB, TEST_KEY_PUB, TEST_KEY_RSA_PUB, sign_with};

    #[test]
    fn the_built_in_key_parses() {
        let key = HexPublicKey::hexpm();
        assert!(!key.verifies(b"payload", &[0u8; 256]));
        assert!(HexPublicKey::from_config("").is_ok());
        assert!(HexPublicKey::from_config("  \n").is_ok());
    }

    #[test]
    fn spki_and_pkcs1_forms_both_parse_and_verify() {
        let signature = sign_with("test", b"payload");
        for pem in [TEST_KEY_PUB, TEST_KEY_RSA_PUB] {
            let key = HexPublicKey::from_pem(pem).unwrap();
            assert!(key.verifies(b"payload", &signature));
            assert!(!key.verifies(b"payloaD", &signature));
            assert!(!key.verifies(b"payload", &signature[1..]));
        }
        let other = HexPublicKey::from_config(OTHER_KEY_PUB).unwrap();
        assert!(!other.verifies(b"payload", &signature));
    }

    #[test]
    fn pem_as_pasted_into_a_config_file_parses() {
        let indented: String = TEST_KEY_PUB
            .lines()
            .map(|line| format!("    {line}\r\n"))
            .collect();
        let pem = format!("# the test key\n\n{indented}\n");
        assert!(HexPublicKey::from_pem(&pem).is_ok());
    }

    #[test]
    fn bad_keys_are_refused_with_a_reason() {
        assert_eq!(HexPublicKey::from_pem("hello").unwrap_err(), KeyError::NotPem);
        let truncated: String = TEST_KEY_PUB.lines().take(3).collect::<Vec<_>>().join("\n");
        assert_eq!(HexPublicKey::from_pem(&truncated).unwrap_err(), KeyError::NotPem);
        let private = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        let err = HexPublicKey::from_pem(private).unwrap_err();
        assert!(matches!(err, KeyError::PrivateKey { .. }), "{err}");
        assert!(err.to_string().contains("private key"));
        let cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            HexPublicKey::from_pem(cert).unwrap_err(),
            KeyError::UnsupportedLabel { .. }
        ));
        let garbage = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
        let err = HexPublicKey::from_pem(garbage).unwrap_err();
        assert!(matches!(err, KeyError::Invalid { .. }), "{err}");
        assert!(err.to_string().starts_with("hex.public_key is not a valid RSA"));
        // An SPKI block in a PKCS#1 wrapper is not an RSA public key.
        let relabelled = TEST_KEY_PUB.replace("PUBLIC KEY", "RSA PUBLIC KEY");
        assert!(matches!(
            HexPublicKey::from_pem(&relabelled).unwrap_err(),
            KeyError::Invalid { .. }
        ));
    }
}
