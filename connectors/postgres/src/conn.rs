//! Connection parameters for PostgreSQL, shared by the ordinary SQL connection
//! (tokio-postgres: management queries, checks, snapshots) and the replication connection
//! (walrus-replication: the change stream).
//!
//! The URL in `source.url` is parsed once; the password comes from the URL,
//! `source.password` or `source.password_file`, and is never logged. TLS follows libpq's
//! `sslmode`: `disable`, `prefer` (TLS if offered), `require` (TLS, certificate not
//! checked), `verify-ca`, `verify-full`. One `rustls::ClientConfig` is built from it at
//! start (with the client certificate of `source.sslcert`/`source.sslkey`, if any) and
//! used by every connection walrus opens, so the SQL and the replication connection verify
//! the server, and identify themselves, identically.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use walrus_core::config::{Secret, SourceConfig, SslMode};
use walrus_replication::{ConnectConfig, Host, ReplicationClient, TlsMode};

use crate::error::PgError;

/// Startup options for walrus's sessions: values in pgoutput's text format are rendered
/// by the walsender's session, so these pin the formats the type parsers expect, whatever
/// the server's or role's defaults are.
/// `lc_monetary=C` makes `money` text `$1,234.56` whatever the database's locale.
pub const SESSION_OPTIONS: &str = "-c datestyle=ISO -c intervalstyle=postgres -c timezone=UTC -c extra_float_digits=3 -c lc_monetary=C";

/// Everything needed to connect, parsed from `[source]`.
#[derive(Clone)]
pub struct ConnParams {
    /// Host name, IP address, or Unix socket directory.
    pub host: String,
    /// Whether `host` is a Unix socket directory.
    pub unix_socket: bool,
    /// TCP port.
    pub port: u16,
    /// Role name.
    pub user: String,
    /// Password (may be empty for trust or peer authentication).
    pub password: Secret,
    /// Database name.
    pub dbname: String,
    /// TLS mode.
    pub sslmode: SslMode,
    /// CA file for verification.
    pub sslrootcert: Option<PathBuf>,
    /// `application_name`.
    pub application_name: String,
    /// The TLS configuration of every connection (none when `sslmode = disable` or the
    /// host is a Unix socket).
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for ConnParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display())
    }
}

impl ConnParams {
    /// Parses `source.url` and resolves the password.
    pub fn from_config(cfg: &SourceConfig) -> Result<Self, PgError> {
        let pg = tokio_postgres::Config::from_str(&cfg.url).map_err(|e| PgError::Config {
            key: "source.url",
            message: format!("not a PostgreSQL URL: {e}"),
        })?;
        let (host, unix_socket) = match pg.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => (h.clone(), false),
            Some(tokio_postgres::config::Host::Unix(p)) => (p.display().to_string(), true),
            None => ("localhost".to_string(), false),
        };
        let port = pg.get_ports().first().copied().unwrap_or(5432);
        let user = pg
            .get_user()
            .map(str::to_string)
            .ok_or_else(|| PgError::Config {
                key: "source.url",
                message: "no user name: write postgres://USER@host:port/database".into(),
            })?;
        let dbname = pg.get_dbname().unwrap_or(&user).to_string();
        let url_password = pg
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned());
        let password = if let Some(p) = &cfg.password {
            p.clone()
        } else if let Some(path) = &cfg.password_file {
            let text = std::fs::read_to_string(path).map_err(|e| PgError::Config {
                key: "source.password_file",
                message: format!("cannot read {}: {e}", path.display()),
            })?;
            Secret::new(text.lines().next().unwrap_or("").to_string())
        } else {
            Secret::new(url_password.unwrap_or_default())
        };
        let url_mode = match pg.get_ssl_mode() {
            tokio_postgres::config::SslMode::Disable => SslMode::Disable,
            tokio_postgres::config::SslMode::Require => SslMode::Require,
            _ => SslMode::Prefer,
        };
        let sslmode = cfg.sslmode.unwrap_or(url_mode);
        // Certificates of PostgreSQL servers name hosts; an IP address would fail every
        // connection attempt on the name check, so refuse it up front with the fix.
        if sslmode == SslMode::VerifyFull && host.parse::<std::net::IpAddr>().is_ok() {
            return Err(PgError::Config {
                key: "source.sslmode",
                message: format!(
                    "verify-full needs the server's DNS name in source.url, not the IP address {host}; \
                     use the name on its certificate, or sslmode = \"verify-ca\""
                ),
            });
        }
        let tls = if sslmode == SslMode::Disable || unix_socket {
            None
        } else {
            Some(Arc::new(rustls_config(
                sslmode,
                cfg.sslrootcert.as_deref(),
                client_cert(cfg)?,
            )?))
        };
        Ok(ConnParams {
            host,
            unix_socket,
            port,
            user,
            password,
            dbname,
            sslmode,
            sslrootcert: cfg.sslrootcert.clone(),
            application_name: cfg.application_name.clone(),
            tls,
        })
    }

    /// `user@host:port/db` with no password, for logs and errors.
    pub fn display(&self) -> String {
        format!("{}@{}:{}/{}", self.user, self.host, self.port, self.dbname)
    }

    /// Opens an ordinary SQL connection; its driver task runs in the background.
    pub async fn connect_sql(&self) -> Result<tokio_postgres::Client, PgError> {
        let mut pg = tokio_postgres::Config::new();
        if self.unix_socket {
            pg.host_path(&self.host);
        } else {
            pg.host(&self.host);
        }
        pg.port(self.port)
            .user(&self.user)
            .dbname(&self.dbname)
            .application_name(&self.application_name)
            .connect_timeout(Duration::from_secs(10))
            .options(SESSION_OPTIONS);
        if !self.password.expose().is_empty() {
            pg.password(self.password.expose());
        }
        let what = || format!("connecting to {}", self.display());
        let client = if let Some(tls) = &self.tls {
            pg.ssl_mode(if self.sslmode == SslMode::Prefer {
                tokio_postgres::config::SslMode::Prefer
            } else {
                tokio_postgres::config::SslMode::Require
            });
            // The connector keeps its own Arc of the config; a clone of ours shares the
            // verifier, roots and client certificate with the replication connection.
            let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls.as_ref().clone());
            let (client, conn) = pg.connect(tls).await.map_err(|e| PgError::sql(what(), e))?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "sql connection ended");
                }
            });
            client
        } else {
            pg.ssl_mode(tokio_postgres::config::SslMode::Disable);
            let (client, conn) = pg
                .connect(tokio_postgres::NoTls)
                .await
                .map_err(|e| PgError::sql(what(), e))?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "sql connection ended");
                }
            });
            client
        };
        Ok(client)
    }

    /// The replication connection's parameters: same host, role, password, session
    /// options and TLS configuration as the SQL connections.
    pub fn replication_config(&self) -> ConnectConfig {
        let host = if self.unix_socket {
            Host::Unix(PathBuf::from(&self.host))
        } else {
            Host::Tcp(self.host.clone())
        };
        let mut cfg = ConnectConfig::new(host, self.port, &self.user, &self.dbname);
        let password = self.password.expose();
        cfg.password = (!password.is_empty()).then(|| password.to_string());
        cfg.application_name = self.application_name.clone();
        cfg.options = Some(SESSION_OPTIONS.to_string());
        cfg.tls_mode = match (&self.tls, self.sslmode) {
            (None, _) | (_, SslMode::Disable) => TlsMode::Disable,
            (Some(_), SslMode::Prefer) => TlsMode::Prefer,
            (Some(_), _) => TlsMode::Require,
        };
        cfg.tls = self.tls.clone();
        cfg
    }

    /// Opens a replication connection (`replication=database`), in command mode.
    pub async fn connect_replication(&self) -> Result<ReplicationClient, PgError> {
        ReplicationClient::connect(&self.replication_config())
            .await
            .map_err(PgError::Replication)
    }
}

/// The client certificate chain and key of `source.sslcert` / `source.sslkey`, if set.
fn client_cert(
    cfg: &SourceConfig,
) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>, PgError> {
    let (Some(cert_path), Some(key_path)) = (&cfg.sslcert, &cfg.sslkey) else {
        return Ok(None);
    };
    let read = |key: &'static str, path: &Path| {
        std::fs::read(path).map_err(|e| PgError::Config {
            key,
            message: format!("cannot read {}: {e}", path.display()),
        })
    };
    let pem = read("source.sslcert", cert_path)?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PgError::Config {
            key: "source.sslcert",
            message: format!("{} is not a PEM certificate file: {e}", cert_path.display()),
        })?;
    if certs.is_empty() {
        return Err(PgError::Config {
            key: "source.sslcert",
            message: format!("{} holds no PEM certificate", cert_path.display()),
        });
    }
    let pem = read("source.sslkey", key_path)?;
    let key = rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| PgError::Config {
            key: "source.sslkey",
            message: format!("{} is not a PEM key file: {e}", key_path.display()),
        })?
        .ok_or_else(|| PgError::Config {
            key: "source.sslkey",
            message: format!(
                "{} holds no private key (PKCS#8, PKCS#1 or SEC1 PEM expected)",
                key_path.display()
            ),
        })?;
    Ok(Some((certs, key)))
}

/// The one TLS configuration for `sslmode`: which server certificates are accepted, and
/// the client certificate presented, if any.
fn rustls_config(
    sslmode: SslMode,
    sslrootcert: Option<&Path>,
    client: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<rustls::ClientConfig, PgError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| PgError::Config {
            key: "source.sslmode",
            message: format!("TLS setup failed: {e}"),
        })?;
    let builder = match sslmode {
        SslMode::Disable | SslMode::Prefer | SslMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider))),
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let mut roots = rustls::RootCertStore::empty();
            match sslrootcert {
                Some(path) => {
                    let pem = std::fs::read(path).map_err(|e| PgError::Config {
                        key: "source.sslrootcert",
                        message: format!("cannot read {}: {e}", path.display()),
                    })?;
                    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                        let cert = cert.map_err(|e| PgError::Config {
                            key: "source.sslrootcert",
                            message: format!(
                                "{} is not a PEM certificate file: {e}",
                                path.display()
                            ),
                        })?;
                        roots.add(cert).map_err(|e| PgError::Config {
                            key: "source.sslrootcert",
                            message: format!("{}: {e}", path.display()),
                        })?;
                    }
                }
                None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            }
            let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| PgError::Config {
                key: "source.sslrootcert",
                message: format!("TLS verifier: {e}"),
            })?;
            if sslmode == SslMode::VerifyFull {
                builder.with_webpki_verifier(verifier)
            } else {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(CaOnly(verifier)))
            }
        }
    };
    match client {
        None => Ok(builder.with_no_client_auth()),
        Some((certs, key)) => {
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| PgError::Config {
                    key: "source.sslkey",
                    message: format!("the client certificate and key do not fit together: {e}"),
                })
        }
    }
}

/// libpq's `prefer` and `require` encrypt without checking the certificate.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// libpq's `verify-ca`: the chain must lead to a trusted CA; the host name is not checked.
#[derive(Debug)]
struct CaOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for CaOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(url: &str) -> SourceConfig {
        let text = format!("[source]\nurl = \"{url}\"\n[sink]\ntype = \"stdout\"\n");
        walrus_core::config::Config::parse_with_env(&text, |_| None)
            .unwrap()
            .source
    }

    #[test]
    fn parses_url_and_hides_password() {
        let p = ConnParams::from_config(&source(
            "postgres://alice:s3cret@db.example:6543/app?sslmode=require",
        ))
        .unwrap();
        assert_eq!(
            (p.host.as_str(), p.port, p.user.as_str(), p.dbname.as_str()),
            ("db.example", 6543, "alice", "app")
        );
        assert_eq!(p.password.expose(), "s3cret");
        assert_eq!(p.sslmode, SslMode::Require);
        assert!(!format!("{p:?}").contains("s3cret"));
    }

    #[test]
    fn missing_user_names_the_key() {
        let err = ConnParams::from_config(&source("postgres://db.example/app"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("source.url"), "{err}");
    }

    #[test]
    fn replication_connection_shares_the_sql_connections_settings() {
        let p = ConnParams::from_config(&source(
            "postgres://alice:s3cret@db.example:6543/app?sslmode=require",
        ))
        .unwrap();
        let r = p.replication_config();
        assert_eq!(r.host, Host::Tcp("db.example".into()));
        assert_eq!(
            (r.port, r.user.as_str(), r.dbname.as_str()),
            (6543, "alice", "app")
        );
        assert_eq!(r.password.as_deref(), Some("s3cret"));
        assert_eq!(r.options.as_deref(), Some(SESSION_OPTIONS));
        assert_eq!(r.tls_mode, TlsMode::Require);
        // The very same TLS configuration object as the SQL connections'.
        assert!(Arc::ptr_eq(
            r.tls.as_ref().unwrap(),
            p.tls.as_ref().unwrap()
        ));

        let p = ConnParams::from_config(&source("postgres://alice@db.example/app?sslmode=disable"))
            .unwrap();
        assert!(p.tls.is_none());
        let r = p.replication_config();
        assert_eq!(r.tls_mode, TlsMode::Disable);
        assert_eq!(r.password, None);

        // A unix socket directory: no TLS whatever the mode.
        let p = ConnParams::from_config(&source("postgresql://alice@%2Ftmp%2Fpg/app")).unwrap();
        let r = p.replication_config();
        assert_eq!(r.host, Host::Unix(PathBuf::from("/tmp/pg")));
        assert_eq!(r.tls_mode, TlsMode::Disable);
    }

    #[test]
    fn client_certificate_files_are_checked_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["walrus".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let other_key = rcgen::KeyPair::generate().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let cert_path = write("client.crt", &cert.pem());
        let key_path = write("client.key", &key.serialize_pem());
        let other_key_path = write("other.key", &other_key.serialize_pem());
        let not_pem = write("junk.pem", "not a certificate");
        let with = |cert: &Path, key: &Path| {
            let mut s = source("postgres://alice@db.example/app?sslmode=require");
            s.sslcert = Some(cert.to_path_buf());
            s.sslkey = Some(key.to_path_buf());
            ConnParams::from_config(&s)
        };
        assert!(with(&cert_path, &key_path).unwrap().tls.is_some());
        let err = |r: Result<ConnParams, PgError>| match r {
            Err(e) => e.to_string(),
            Ok(_) => panic!("accepted"),
        };
        let e = err(with(&cert_path, &other_key_path));
        assert!(
            e.contains("source.sslkey") && e.contains("do not fit"),
            "{e}"
        );
        let e = err(with(&not_pem, &key_path));
        assert!(e.contains("source.sslcert"), "{e}");
        let e = err(with(&cert_path, &dir.path().join("missing.key")));
        assert!(
            e.contains("source.sslkey") && e.contains("cannot read"),
            "{e}"
        );
        let e = err(with(&cert_path, &not_pem));
        assert!(e.contains("source.sslkey"), "{e}");
    }
}
