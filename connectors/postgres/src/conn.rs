//! Connection parameters for PostgreSQL, shared by the ordinary SQL connection
//! (tokio-postgres: management queries, checks) and the replication connection
//! (pgwire-replication: the change stream).
//!
//! The URL in `source.url` is parsed once; the password comes from the URL,
//! `source.password` or `source.password_file`, and is never logged. TLS follows libpq's
//! `sslmode`: `disable`, `prefer` (TLS if offered), `require` (TLS, certificate not
//! checked), `verify-ca`, `verify-full`.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use walrus_core::config::{Secret, SourceConfig, SslMode};
use walrus_core::Lsn;

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
        // The replication transport checks a verify-full certificate against a DNS name
        // only; refuse up front rather than fail every connection attempt.
        if sslmode == SslMode::VerifyFull && host.parse::<std::net::IpAddr>().is_ok() {
            return Err(PgError::Config {
                key: "source.sslmode",
                message: format!(
                    "verify-full needs the server's DNS name in source.url, not the IP address {host}; \
                     use the name on its certificate, or sslmode = \"verify-ca\""
                ),
            });
        }
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
        let client = if self.sslmode == SslMode::Disable || self.unix_socket {
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
        } else {
            pg.ssl_mode(if self.sslmode == SslMode::Prefer {
                tokio_postgres::config::SslMode::Prefer
            } else {
                tokio_postgres::config::SslMode::Require
            });
            let tls = tokio_postgres_rustls::MakeRustlsConnect::new(self.rustls_config()?);
            let (client, conn) = pg.connect(tls).await.map_err(|e| PgError::sql(what(), e))?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "sql connection ended");
                }
            });
            client
        };
        Ok(client)
    }

    fn rustls_config(&self) -> Result<rustls::ClientConfig, PgError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| PgError::Config {
                key: "source.sslmode",
                message: format!("TLS setup failed: {e}"),
            })?;
        let config = match self.sslmode {
            SslMode::Disable | SslMode::Prefer | SslMode::Require => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
                .with_no_client_auth(),
            SslMode::VerifyCa | SslMode::VerifyFull => {
                let mut roots = rustls::RootCertStore::empty();
                match &self.sslrootcert {
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
                let roots = Arc::new(roots);
                if self.sslmode == SslMode::VerifyFull {
                    builder.with_root_certificates(roots).with_no_client_auth()
                } else {
                    let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
                        roots, provider,
                    )
                    .build()
                    .map_err(|e| PgError::Config {
                        key: "source.sslrootcert",
                        message: format!("TLS verifier: {e}"),
                    })?;
                    builder
                        .dangerous()
                        .with_custom_certificate_verifier(Arc::new(CaOnly(inner)))
                        .with_no_client_auth()
                }
            }
        };
        Ok(config)
    }

    /// The replication connection's configuration, resuming at `start` and reporting
    /// `ack` as already confirmed (never more than the slot's confirmed position: the crate
    /// reports it on connect).
    pub fn replication_config(
        &self,
        slot: &str,
        publication: &str,
        start: Lsn,
        status_interval: Duration,
        buffer_events: usize,
    ) -> pgwire_replication::ReplicationConfig {
        use pgwire_replication::{SslMode as M, TlsConfig};
        let tls = match self.sslmode {
            SslMode::Disable => TlsConfig::disabled(),
            SslMode::Prefer => TlsConfig {
                mode: M::Prefer,
                ..TlsConfig::default()
            },
            SslMode::Require => TlsConfig::require(),
            SslMode::VerifyCa => TlsConfig::verify_ca(self.sslrootcert.clone()),
            SslMode::VerifyFull => TlsConfig::verify_full(self.sslrootcert.clone()),
        };
        let lsn = pgwire_replication::Lsn(start.0);
        let cfg = if self.unix_socket {
            pgwire_replication::ReplicationConfig::unix(
                self.host.clone(),
                self.port,
                self.user.clone(),
                self.password.expose().to_string(),
                self.dbname.clone(),
                slot.to_string(),
                publication.to_string(),
            )
        } else {
            pgwire_replication::ReplicationConfig::new(
                self.host.clone(),
                self.user.clone(),
                self.password.expose().to_string(),
                self.dbname.clone(),
                slot.to_string(),
                publication.to_string(),
            )
            .with_port(self.port)
            .with_tls(tls)
        };
        cfg.with_start_lsn(lsn)
            .with_ack_lsn(lsn)
            .with_status_interval(status_interval)
            .with_wakeup_interval(status_interval)
            .with_buffer_size(buffer_events)
            .with_options(SESSION_OPTIONS)
            .with_application_name(self.application_name.clone())
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
}
