//! TLS for the connection to rfsd: the server is trusted by the key hash
//! pinned at setup, not by names or certificate authorities.
//!
//! rfsd presents a self-signed certificate, so the usual web PKI checks
//! would reject it. [`PinnedKey`] instead compares the SHA-256 of the
//! certificate's SubjectPublicKeyInfo with the pinned key hash, and still
//! checks the TLS 1.3 handshake signature, which proves that the server
//! holds the private key. During setup no key is pinned yet: the verifier
//! then accepts any key and records it for the operator to confirm.

use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use rfs_core::KeyHash;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

/// The key hash a server presented during a handshake, shared between the
/// verifier and the code that reports connection failures.
pub(crate) type Presented = Arc<Mutex<Option<KeyHash>>>;

/// Returns the key hash of a DER certificate: SHA-256 of its
/// SubjectPublicKeyInfo.
///
/// # Errors
///
/// Fails when the certificate cannot be parsed.
pub(crate) fn cert_key_hash(der: &[u8]) -> Result<KeyHash> {
    KeyHash::of_certificate(der).ok_or_else(|| anyhow::anyhow!("the certificate cannot be parsed"))
}

/// Returns the rustls client configuration: TLS 1.3 only, ring provider,
/// ALPN `h2`, the server checked against `pin` (any key when `None`), and
/// the client's own certificate when given.
///
/// # Errors
///
/// Fails when the client's key does not fit its certificate.
pub(crate) fn client_config(
    pin: Option<KeyHash>,
    presented: Presented,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(PinnedKey {
        pin,
        presented,
        algorithms: provider.signature_verification_algorithms,
    });
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("configuring TLS 1.3")?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match identity {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .context("loading the client key and certificate")?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// A server certificate verifier that trusts exactly one key hash.
#[derive(Debug)]
struct PinnedKey {
    /// The expected key hash; `None` accepts any key (setup's capture mode).
    pin: Option<KeyHash>,
    presented: Presented,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedKey {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let hash = cert_key_hash(end_entity)
            .map_err(|err| rustls::Error::General(format!("server certificate: {err:#}")))?;
        // A poisoned lock only means another handshake panicked; the slot
        // still holds a plain value.
        *self.presented.lock().unwrap_or_else(|err| err.into_inner()) = Some(hash);
        match self.pin {
            Some(pin) if pin != hash => Err(rustls::Error::General(format!(
                "server key hash {hash} is not the pinned {pin}"
            ))),
            _ => Ok(ServerCertVerified::assertion()),
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

#[cfg(test)]
mod tests {
    use rcgen::PublicKeyData as _;
    use rustls::crypto::CryptoProvider;

    use super::*;

    fn provider() -> CryptoProvider {
        rustls::crypto::ring::default_provider()
    }

    fn self_signed() -> rcgen::CertifiedKey<rcgen::KeyPair> {
        rcgen::generate_simple_self_signed(vec!["rfsd".to_owned()]).unwrap()
    }

    fn verify(pin: Option<KeyHash>, der: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let verifier = PinnedKey {
            pin,
            presented: Presented::default(),
            algorithms: provider().signature_verification_algorithms,
        };
        let name = ServerName::try_from("rfsd").unwrap();
        verifier
            .verify_server_cert(der, &[], &name, &[], UnixTime::now())
            .map(|_| ())
    }

    #[test]
    fn only_the_pinned_key_is_trusted() {
        let server = self_signed();
        let other = self_signed();
        let pin = cert_key_hash(server.cert.der()).unwrap();

        assert!(verify(Some(pin), server.cert.der()).is_ok());
        assert!(verify(Some(pin), other.cert.der()).is_err());
        assert!(verify(None, other.cert.der()).is_ok());
    }

    #[test]
    fn the_key_hash_is_that_of_the_public_key() {
        let server = self_signed();
        let spki = server.signing_key.subject_public_key_info();
        assert_eq!(
            cert_key_hash(server.cert.der()).unwrap(),
            KeyHash::of_spki(&spki)
        );
    }
}
