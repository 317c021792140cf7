//! TLS on a listener, with rustls: the certificate chain and key read from
//! PEM files, read again on SIGHUP (new handshakes get the new pair, open
//! connections keep theirs, none is dropped), ALPN offering HTTP/2 and
//! HTTP/1.1, TLS 1.2 and 1.3 only.

use std::sync::{Arc, RwLock};

use anyhow::{anyhow, bail, Context, Result};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::spec::listen::TlsFiles;

/// A listener's certificate and key, swapped whole by [`CertStore::reload`].
pub struct CertStore {
    pub files: TlsFiles,
    current: RwLock<Arc<CertifiedKey>>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CertStore({})", self.files.cert.display())
    }
}

impl CertStore {
    /// Reads and checks the pair; every problem names its file.
    pub fn load(files: &TlsFiles) -> Result<Arc<CertStore>> {
        let pair = read_pair(files)?;
        Ok(Arc::new(CertStore { files: files.clone(), current: RwLock::new(Arc::new(pair)) }))
    }

    /// Reads the files again; on any problem the pair in use stays.
    pub fn reload(&self) -> Result<()> {
        let pair = read_pair(&self.files)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(pair);
        Ok(())
    }

    /// The TLS server configuration for a listener: this store answers
    /// every handshake; h2 is offered before http/1.1.
    pub fn server_config(self: &Arc<Self>) -> Arc<rustls::ServerConfig> {
        // ring, not rustls' default aws-lc-rs: it builds with cc alone (no
        // cmake, a minute less of every clean build); what it lacks is the
        // post-quantum key exchange, which rustls marks by deprecation.
        #[allow(deprecated)]
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .expect("ring supports TLS 1.2 and 1.3")
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

/// The certificate chain and key of `files`, checked to belong together.
fn read_pair(files: &TlsFiles) -> Result<CertifiedKey> {
    let (cert_file, key_file) = (files.cert.display(), files.key.display());
    let cert_pem = std::fs::read(&files.cert).with_context(|| format!("cannot read the TLS certificate {cert_file}"))?;
    let key_pem = std::fs::read(&files.key).with_context(|| format!("cannot read the TLS key {key_file}"))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("the TLS certificate {cert_file} is not valid PEM: {e}"))?;
    if chain.is_empty() {
        bail!("the TLS certificate {cert_file} holds no certificate (a PEM block \"BEGIN CERTIFICATE\")");
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => {
            anyhow!("the TLS key {key_file} holds no private key (a PEM block \"BEGIN PRIVATE KEY\", \"BEGIN RSA PRIVATE KEY\" or \"BEGIN EC PRIVATE KEY\")")
        }
        e => anyhow!("the TLS key {key_file} is not valid PEM: {e}"),
    })?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| anyhow!("the TLS key {key_file} cannot be used: {e} (RSA, ECDSA P-256/P-384 and Ed25519 keys can)"))?;
    let pair = CertifiedKey::new(chain, signing);
    pair.keys_match().map_err(|_| anyhow!("the TLS key {key_file} does not belong to the certificate {cert_file} (the first certificate must be the server's own)"))?;
    Ok(pair)
}
