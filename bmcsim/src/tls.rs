//! TLS for the BMC listeners: a fresh test CA per run, and one leaf certificate (signed by it)
//! that every TLS BMC presents.
//!
//! The leaf is `CA:FALSE` with serverAuth, because rustls refuses a CA certificate used as an end
//! entity (`CaUsedAsEndEntity`), which is what a plain `openssl req -x509` self-signed cert is.
//! Clients trust `ca.pem` and keep verification on.

use std::net::IpAddr;
use std::sync::Arc;

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

#[derive(Debug)]
pub struct TestCa {
    /// The CA certificate, PEM, as written to `<ca_dir>/ca.pem`.
    pub ca_pem: String,
    pub server_config: Arc<ServerConfig>,
}

/// Makes the CA and a leaf valid for `localhost`, 127.0.0.1, ::1 and every `extra_ips`
/// (the configured listen addresses).
pub fn make(extra_ips: &[IpAddr]) -> anyhow::Result<TestCa> {
    let ca_key = KeyPair::generate().context("CA key")?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).context("CA params")?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "bmcsim test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).context("CA certificate")?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    for ip in extra_ips {
        let ip = ip.to_string();
        if !ip.starts_with("0.") && ip != "::" && !names.contains(&ip) {
            names.push(ip);
        }
    }
    let leaf_key = KeyPair::generate().context("leaf key")?;
    let mut leaf = CertificateParams::new(names).context("leaf params")?;
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.distinguished_name
        .push(DnType::CommonName, "bmcsim BMC");
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_cert = leaf
        .signed_by(&leaf_key, &issuer)
        .context("leaf certificate")?;

    let chain = vec![CertificateDer::from(leaf_cert.der().to_vec())];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .context("TLS versions")?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .context("TLS server config")?;
    // BMC web servers speak HTTP/1.1 only; offering h2 would let clients take a path that no
    // real BMC offers.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TestCa {
        ca_pem: ca_cert.pem(),
        server_config: Arc::new(config),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makes_a_ca_and_a_server_config() {
        let ca = make(&["127.0.0.2".parse().expect("ip")]).expect("tls");
        assert!(ca.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(ca.server_config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }
}
