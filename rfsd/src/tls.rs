//! The server's TLS identity and configuration.
//!
//! On first start rfsd creates an ECDSA key and a self-signed certificate in
//! `<state-dir>/tls/` (mode 0600) and logs its key hash. Clients pin that key
//! hash instead of trusting a CA. Client certificates are optional: any
//! well-formed certificate whose handshake signature verifies is accepted,
//! and the grant table decides what its key hash may do.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use rfs_core::KeyHash;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

/// The server's key and certificate, with the key's hash.
#[derive(Debug)]
pub struct Identity {
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    key_hash: KeyHash,
}

impl Identity {
    /// Loads the identity from `<state_dir>/tls/`, creating it first if it
    /// does not exist yet.
    ///
    /// # Errors
    ///
    /// Fails when the files cannot be read, written or parsed.
    pub fn load_or_create(state_dir: &Path) -> Result<Self> {
        let (cert_path, key_path) = paths(state_dir);
        if !cert_path.exists() || !key_path.exists() {
            create(state_dir).context("creating the server's TLS key")?;
            tracing::info!(path = %cert_path.display(), "created a new server key and certificate");
        }

        let cert = CertificateDer::from_pem_file(&cert_path)
            .with_context(|| format!("reading certificate {}", cert_path.display()))?;
        let key = PrivateKeyDer::from_pem_file(&key_path)
            .with_context(|| format!("reading key {}", key_path.display()))?;
        let key_hash = key_hash_of_cert(&cert)
            .with_context(|| format!("certificate {} is malformed", cert_path.display()))?;
        Ok(Self {
            cert,
            key,
            key_hash,
        })
    }

    /// Returns the hash of the server's public key.
    pub fn key_hash(&self) -> KeyHash {
        self.key_hash
    }

    /// Returns the rustls configuration for the listeners: TLS 1.3 only,
    /// ALPN `h2`, client certificates optional.
    ///
    /// # Errors
    ///
    /// Fails when the key does not match the certificate.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(AnyClientCert {
            algorithms: provider.signature_verification_algorithms,
        });
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .context("TLS 1.3 is supported by the ring provider")?
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![self.cert.clone()], self.key.clone_key())
            .context("the server key does not match its certificate")?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }
}

/// Returns the key hash of a DER certificate: SHA-256 of its
/// SubjectPublicKeyInfo.
pub fn key_hash_of_cert(cert: &CertificateDer<'_>) -> Option<KeyHash> {
    KeyHash::of_certificate(cert.as_ref())
}

fn paths(state_dir: &Path) -> (PathBuf, PathBuf) {
    let dir = state_dir.join("tls");
    (dir.join("server.crt"), dir.join("server.key"))
}

fn create(state_dir: &Path) -> Result<()> {
    let (cert_path, key_path) = paths(state_dir);
    let dir = state_dir.join("tls");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;

    let host = hostname::get()
        .ok()
        .and_then(|name| name.into_string().ok());
    let names: Vec<String> = ["rfsd", "localhost", "127.0.0.1", "::1"]
        .into_iter()
        .map(String::from)
        .chain(host)
        .collect();
    let certified =
        rcgen::generate_simple_self_signed(names).context("generating the server certificate")?;
    write_private(&key_path, certified.signing_key.serialize_pem().as_bytes())?;
    write_private(&cert_path, certified.cert.pem().as_bytes())
}

fn write_private(path: &Path, content: &[u8]) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(content)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// Accepts any well-formed client certificate: trust is decided by its key
/// hash in the grant table, not by a CA.
#[derive(Debug)]
struct AnyClientCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match key_hash_of_cert(end_entity) {
            Some(_) => Ok(ClientCertVerified::assertion()),
            None => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::BadEncoding,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Makes sure no other crypto provider is picked by accident anywhere in the
/// process.
pub fn install_crypto_provider() {
    // Fails only when a provider is already installed, which is fine.
    let _ = CryptoProvider::install_default(rustls::crypto::ring::default_provider());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_created_once_and_keeps_its_key_hash() {
        let dir = tempfile::tempdir().unwrap();

        let first = Identity::load_or_create(dir.path()).unwrap();
        let second = Identity::load_or_create(dir.path()).unwrap();

        assert_eq!(first.key_hash(), second.key_hash());
        let key_mode = std::fs::metadata(dir.path().join("tls/server.key")).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&key_mode.permissions()) & 0o777,
            0o600
        );
        assert!(first.server_config().is_ok());
    }
}
