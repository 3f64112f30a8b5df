//! The cluster's certificate authority, the API serving certificate, the admin bearer
//! token and the admin kubeconfig. Generated once under `<data-dir>/pki` and reused, so a
//! restarted `drover up` keeps working with kubeconfigs already handed out.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, SanType};

/// Errors creating or loading key material. Not retryable without fixing the files.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// Reading or writing files under the pki directory failed.
    #[error("pki file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Certificate generation or parsing failed.
    #[error("certificate: {0}")]
    Cert(String),
}

/// CA, serving certificate and admin token.
#[derive(Clone)]
pub struct Pki {
    /// CA certificate (PEM): what clients trust.
    pub ca_pem: String,
    /// CA private key (PEM), kept to sign node and client certificates later.
    pub ca_key_pem: String,
    /// Serving certificate (PEM), signed by the CA, valid for localhost and 127.0.0.1.
    pub cert_pem: String,
    /// Serving key (PEM).
    pub key_pem: String,
    /// The admin bearer token.
    pub admin_token: String,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki").finish_non_exhaustive()
    }
}

fn read(path: &Path) -> Result<Option<String>, PkiError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PkiError::Io {
            path: path.into(),
            source,
        }),
    }
}

fn write_private(path: &Path, contents: &str) -> Result<(), PkiError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| PkiError::Io {
        path: path.into(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    f.write_all(contents.as_bytes()).map_err(io)
}

fn cert_err(e: impl std::fmt::Display) -> PkiError {
    PkiError::Cert(e.to_string())
}

impl Pki {
    /// Loads the material under `dir`, generating whatever is missing. `hosts` are the
    /// extra names/IPs the serving certificate must cover.
    pub fn load_or_create(dir: &Path, hosts: &[String]) -> Result<Pki, PkiError> {
        std::fs::create_dir_all(dir).map_err(|source| PkiError::Io {
            path: dir.into(),
            source,
        })?;
        let paths = [
            "ca.crt",
            "ca.key",
            "apiserver.crt",
            "apiserver.key",
            "admin.token",
        ]
        .map(|f| dir.join(f));
        let existing: Vec<Option<String>> =
            paths.iter().map(|p| read(p)).collect::<Result<_, _>>()?;
        if let [Some(ca), Some(ca_key), Some(cert), Some(key), Some(token)] = existing.as_slice() {
            return Ok(Pki {
                ca_pem: ca.clone(),
                ca_key_pem: ca_key.clone(),
                cert_pem: cert.clone(),
                key_pem: key.clone(),
                admin_token: token.trim().to_string(),
            });
        }
        let pki = Pki::generate(hosts)?;
        write_private(&paths[0], &pki.ca_pem)?;
        write_private(&paths[1], &pki.ca_key_pem)?;
        write_private(&paths[2], &pki.cert_pem)?;
        write_private(&paths[3], &pki.key_pem)?;
        write_private(&paths[4], &pki.admin_token)?;
        Ok(pki)
    }

    /// Generates a fresh CA, serving certificate and token in memory.
    pub fn generate(hosts: &[String]) -> Result<Pki, PkiError> {
        let ca_key = KeyPair::generate().map_err(cert_err)?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "drover-ca");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        ca_params.not_after = rcgen::date_time_ymd(2036, 1, 1);
        let ca_cert = ca_params.self_signed(&ca_key).map_err(cert_err)?;
        let ca_key_pem = ca_key.serialize_pem();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);

        let key = KeyPair::generate().map_err(cert_err)?;
        let mut names: Vec<String> = vec![
            "localhost".into(),
            "drover".into(),
            "kubernetes".into(),
            "kubernetes.default".into(),
            "kubernetes.default.svc".into(),
        ];
        names.extend(hosts.iter().cloned());
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
        params
            .distinguished_name
            .push(DnType::CommonName, "drover-apiserver");
        params.not_after = rcgen::date_time_ymd(2036, 1, 1);
        params
            .subject_alt_names
            .push(SanType::IpAddress(std::net::IpAddr::V4(
                std::net::Ipv4Addr::LOCALHOST,
            )));
        params
            .subject_alt_names
            .push(SanType::IpAddress(std::net::IpAddr::V6(
                std::net::Ipv6Addr::LOCALHOST,
            )));
        for n in names {
            match n.parse::<std::net::IpAddr>() {
                Ok(ip) => params.subject_alt_names.push(SanType::IpAddress(ip)),
                Err(_) => params
                    .subject_alt_names
                    .push(SanType::DnsName(n.try_into().map_err(cert_err)?)),
            }
        }
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &issuer).map_err(cert_err)?;

        let token_bytes: Vec<u8> = uuid::Uuid::new_v4()
            .into_bytes()
            .into_iter()
            .chain(uuid::Uuid::new_v4().into_bytes())
            .collect();
        let admin_token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token_bytes);
        Ok(Pki {
            ca_pem: ca_cert.pem(),
            ca_key_pem,
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            admin_token,
        })
    }

    /// A rustls server config for the serving certificate (ring provider, explicit so
    /// another crate enabling a different default provider cannot make this panic).
    pub fn server_config(&self) -> Result<rustls::ServerConfig, PkiError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(cert_err)?;
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).map_err(cert_err)?;
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(cert_err)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(cert_err)
    }

    /// The admin kubeconfig for `server` (e.g. `https://127.0.0.1:6443`).
    pub fn kubeconfig(&self, server: &str) -> String {
        let ca = base64::engine::general_purpose::STANDARD.encode(&self.ca_pem);
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: drover\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\n\
             users:\n- name: drover-admin\n  user:\n    token: {token}\ncontexts:\n- name: drover\n  context:\n    cluster: drover\n    user: drover-admin\n    namespace: default\n\
             current-context: drover\npreferences: {{}}\n",
            token = self.admin_token
        )
    }

    /// Writes the admin kubeconfig (mode 0600) to `path`.
    pub fn write_kubeconfig(&self, path: &Path, server: &str) -> Result<(), PkiError> {
        write_private(path, &self.kubeconfig(server))
    }
}
