//! The client's own TLS identity for `--authenticate`: an ECDSA P-256 key
//! and a self-signed certificate with the client-auth usage, kept as PEM
//! files of mode 0600 in the state directory.
//!
//! rfsd does not check the certificate's issuer or names; it knows the
//! client by the key hash, which the operator grants with `rfsd client add
//! ADDR --keyhash H`.

use anyhow::{Context, Result};
use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, KeyPair, PKCS_ECDSA_P256_SHA256};
use rfs_core::KeyHash;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::Paths;
use crate::durable;
use crate::tls::cert_key_hash;

/// A loaded client certificate chain and its private key.
pub(crate) type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// Returns the key hash of the client's identity, creating the key and
/// certificate first when they do not exist yet. An existing identity is
/// kept, so a repeated setup does not invalidate the operator's grant.
///
/// # Errors
///
/// Fails when the files cannot be written or the existing ones are broken.
pub(crate) fn ensure(paths: &Paths) -> Result<KeyHash> {
    if paths.client_key().exists() && paths.client_cert().exists() {
        return key_hash(paths);
    }

    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).context("generating a client key")?;
    let name = hostname::get()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "rfs-sync".to_owned());
    let mut params =
        CertificateParams::new(vec![name]).context("describing the client certificate")?;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params
        .self_signed(&key)
        .context("signing the client certificate")?;

    durable::create_private_dir(&paths.state_dir)?;
    durable::write_atomically(&paths.client_key(), key.serialize_pem().as_bytes(), 0o600)?;
    durable::write_atomically(&paths.client_cert(), cert.pem().as_bytes(), 0o600)?;
    cert_key_hash(cert.der())
}

/// Returns the client's certificate chain and private key.
///
/// # Errors
///
/// Fails when either file is missing or is not PEM of the right kind.
pub(crate) fn load(paths: &Paths) -> Result<Identity> {
    let cert_file = paths.client_cert();
    let key_file = paths.client_key();
    let cert = CertificateDer::from_pem_file(&cert_file).with_context(|| {
        format!(
            "reading client certificate {} (run rfs-sync --setup --authenticate --force)",
            cert_file.display()
        )
    })?;
    let key = PrivateKeyDer::from_pem_file(&key_file)
        .with_context(|| format!("reading client key {}", key_file.display()))?;
    Ok((vec![cert], key))
}

/// Returns the key hash of the client's certificate.
///
/// # Errors
///
/// Fails when the certificate is missing or broken.
pub(crate) fn key_hash(paths: &Paths) -> Result<KeyHash> {
    let (chain, _) = load(paths)?;
    let cert = chain
        .first()
        .context("client certificate file holds no certificate")?;
    cert_key_hash(cert)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_created_identity_is_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::resolve(dir.path());

        let first = ensure(&paths).unwrap();
        let second = ensure(&paths).unwrap();

        assert_eq!(first, second);
        assert_eq!(key_hash(&paths).unwrap(), first);
        let mode = std::fs::metadata(paths.client_key())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(load(&paths).is_ok());
    }
}
