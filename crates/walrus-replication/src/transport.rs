//! The connection under the replication protocol: socket, TLS, startup and authentication,
//! and reading and writing whole messages.
//!
//! ```text
//! connect (TCP or unix socket)
//!   └─ SSLRequest ─▶ 'S' ─▶ TLS handshake (rustls; the caller's ClientConfig)
//!                  └ 'N' ─▶ plain (refused when TLS is required)
//!   └─ StartupMessage(user, database, replication=database, options, application_name)
//!   └─ Authentication*: ok | cleartext | md5 | SASL SCRAM-SHA-256[-PLUS]
//!   └─ ParameterStatus* (server_version), BackendKeyData, ReadyForQuery
//! ```
//!
//! TLS is the caller's `rustls::ClientConfig`, the same one its SQL connections use, so the
//! replication connection verifies (or does not verify) the server exactly like they do and
//! presents the same client certificate. `sslmode` maps onto [`TlsMode`] plus that config:
//! `disable` → [`TlsMode::Disable`]; `prefer` → [`TlsMode::Prefer`]; `require`,
//! `verify-ca`, `verify-full` → [`TlsMode::Require`] with a config whose certificate
//! verifier does what the mode says.
//!
//! Under TLS, SCRAM binds the authentication to the channel (`SCRAM-SHA-256-PLUS`,
//! `tls-server-end-point`, RFC 5929): the hash of the server's certificate, with the hash of
//! its signature algorithm (SHA-256 for MD5 and SHA-1), goes into the exchange, so a
//! man in the middle holding another certificate cannot relay it.

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use postgres_protocol::authentication::sasl::{self, ChannelBinding, ScramSha256};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use crate::error::{ReplicationError, Result};
use crate::frame::{parse_error_fields, MAX_MESSAGE_LEN};
use crate::version::ServerVersion;

/// Where the server is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Host {
    /// A host name or IP address.
    Tcp(String),
    /// A directory holding the server's unix socket (`.s.PGSQL.<port>`).
    Unix(PathBuf),
}

/// Whether to ask for TLS (libpq's `sslmode`, without the verification part, which lives in
/// the `rustls::ClientConfig`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TlsMode {
    /// Never.
    Disable,
    /// When the server offers it.
    #[default]
    Prefer,
    /// Always: a server without TLS is refused.
    Require,
}

/// Everything needed to open a replication connection.
#[derive(Clone)]
pub struct ConnectConfig {
    /// Server address.
    pub host: Host,
    /// TCP port (also names the unix socket).
    pub port: u16,
    /// Role name.
    pub user: String,
    /// Password, for cleartext, md5 and SCRAM; never logged.
    pub password: Option<String>,
    /// Database (logical replication is per database).
    pub dbname: String,
    /// `application_name`, shown in `pg_stat_replication`.
    pub application_name: String,
    /// The startup `options` string (`-c name=value ...`), e.g. to pin `datestyle`.
    pub options: Option<String>,
    /// Whether to use TLS.
    pub tls_mode: TlsMode,
    /// The TLS configuration (shared with the caller's SQL connections); needed unless
    /// `tls_mode` is `Disable`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Name the certificate is checked against (verify-full); the host by default.
    pub tls_server_name: Option<String>,
    /// Limit on connecting, TLS and authentication together.
    pub connect_timeout: Duration,
}

impl std::fmt::Debug for ConnectConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("dbname", &self.dbname)
            .field("tls_mode", &self.tls_mode)
            .finish_non_exhaustive()
    }
}

impl ConnectConfig {
    /// A configuration with the defaults: no password, TLS preferred (but without a TLS
    /// config it is not attempted), 10 s to connect.
    pub fn new(host: Host, port: u16, user: &str, dbname: &str) -> Self {
        ConnectConfig {
            host,
            port,
            user: user.to_string(),
            password: None,
            dbname: dbname.to_string(),
            application_name: "walrus".to_string(),
            options: None,
            tls_mode: TlsMode::Prefer,
            tls: None,
            tls_server_name: None,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// The byte stream under the protocol.
pub(crate) enum Socket {
    Tcp(TcpStream),
    Unix(UnixStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Socket::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Socket::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Socket::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Socket::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_flush(cx),
            Socket::Unix(s) => Pin::new(s).poll_flush(cx),
            Socket::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Socket::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Socket::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Whether lowering `SO_RCVLOWAT` wakes a reader for data already waiting: Linux 4.18 and
/// later. On older kernels data that arrived under a raised mark could sit unread until the
/// next segment (with an idle server, its next keepalive), so the mark is left alone there
/// and read coalescing falls back to its timer.
fn low_water_signals_readers() -> bool {
    static SIGNALS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SIGNALS.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .and_then(|r| kernel_at_least(&r, (4, 18)))
            .unwrap_or(false)
    })
}

/// Whether a kernel release string (`6.1.0-18-amd64`) is at least `(major, minor)`; `None`
/// when it does not start with two numbers.
fn kernel_at_least(release: &str, want: (u32, u32)) -> Option<bool> {
    let mut parts = release.trim().split(['.', '-']);
    let major: u32 = parts.next()?.parse().ok()?;
    let minor: u32 = parts.next()?.parse().ok()?;
    Some((major, minor) >= want)
}

/// One backend message outside copy mode: tag and body.
#[derive(Debug)]
pub(crate) struct Message {
    pub(crate) tag: u8,
    pub(crate) body: Bytes,
}

/// A connection after startup: socket, buffers and what the server told about itself.
pub(crate) struct Conn {
    pub(crate) socket: Socket,
    pub(crate) rbuf: BytesMut,
    pub(crate) wbuf: BytesMut,
    pub(crate) server_version: ServerVersion,
    /// Whether the connection is encrypted.
    pub(crate) tls: bool,
    /// How the server authenticated us: `trust`, `password`, `md5`, `SCRAM-SHA-256` or
    /// `SCRAM-SHA-256-PLUS` (channel-bound).
    pub(crate) auth: &'static str,
}

/// Size of each socket read; the read buffer grows to it before every read.
pub(crate) const READ_CHUNK: usize = 256 * 1024;

impl Conn {
    /// Connects, negotiates TLS, starts up with `replication=database` and authenticates.
    pub(crate) async fn connect(cfg: &ConnectConfig) -> Result<Conn> {
        tokio::time::timeout(cfg.connect_timeout, Self::connect_inner(cfg))
            .await
            .map_err(|_| ReplicationError::Timeout("connecting and authenticating"))?
    }

    async fn connect_inner(cfg: &ConnectConfig) -> Result<Conn> {
        let (socket, cert) = open(cfg).await?;
        let tls = cert.is_some();
        let mut conn = Conn {
            socket,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            wbuf: BytesMut::with_capacity(1024),
            server_version: ServerVersion {
                major: 0,
                num: 0,
                text: String::new(),
            },
            tls,
            auth: "trust",
        };
        let mut params: Vec<(&str, &str)> = vec![
            ("user", &cfg.user),
            ("database", &cfg.dbname),
            ("replication", "database"),
            ("application_name", &cfg.application_name),
            ("client_encoding", "UTF8"),
        ];
        if let Some(options) = &cfg.options {
            params.push(("options", options));
        }
        frontend::startup_message(params.iter().copied(), &mut conn.wbuf)
            .map_err(|e| ReplicationError::Invalid(format!("startup parameters: {e}")))?;
        conn.flush().await?;
        conn.authenticate(cfg, cert.as_deref()).await?;
        let mut version = None;
        loop {
            let msg = conn.read_message().await?;
            match msg.tag {
                b'S' => {
                    let (name, value) = parameter_status(&msg.body)?;
                    if name == "server_version" {
                        version = Some(ServerVersion::parse(&value)?);
                    }
                }
                b'K' | b'N' => {}
                b'Z' => break,
                b'E' => return Err(ReplicationError::Server(parse_error_fields(&msg.body))),
                other => return Err(unexpected(other, "startup")),
            }
        }
        conn.server_version = version.ok_or_else(|| {
            ReplicationError::Protocol("the server did not report server_version".into())
        })?;
        Ok(conn)
    }

    /// Runs the authentication exchange up to `AuthenticationOk`.
    async fn authenticate(&mut self, cfg: &ConnectConfig, cert: Option<&[u8]>) -> Result<()> {
        let password = || {
            cfg.password.as_deref().ok_or_else(|| {
                ReplicationError::Auth(format!(
                    "the server asks for a password for role {:?} and none was given",
                    cfg.user
                ))
            })
        };
        loop {
            let msg = self.read_message().await?;
            match msg.tag {
                b'R' => {}
                b'E' => return Err(ReplicationError::Server(parse_error_fields(&msg.body))),
                other => return Err(unexpected(other, "authentication")),
            }
            let mut body = msg.body;
            if body.len() < 4 {
                return Err(ReplicationError::Protocol(
                    "short authentication message".into(),
                ));
            }
            match body.get_i32() {
                0 => return Ok(()),
                3 => {
                    self.auth = "password";
                    // Cleartext: only sensible under TLS, but the server asked for it.
                    frontend::password_message(password()?.as_bytes(), &mut self.wbuf)
                        .map_err(proto)?;
                    self.flush().await?;
                }
                5 => {
                    self.auth = "md5";
                    if body.len() < 4 {
                        return Err(ReplicationError::Protocol("md5 salt missing".into()));
                    }
                    let salt = [body[0], body[1], body[2], body[3]];
                    let hash = postgres_protocol::authentication::md5_hash(
                        cfg.user.as_bytes(),
                        password()?.as_bytes(),
                        salt,
                    );
                    frontend::password_message(hash.as_bytes(), &mut self.wbuf).map_err(proto)?;
                    self.flush().await?;
                }
                10 => {
                    let mechanisms = cstrings(&body);
                    self.scram(password()?, &mechanisms, cert).await?;
                }
                other => {
                    return Err(ReplicationError::Auth(format!(
                        "authentication method {other} is not supported (trust, password, md5 and \
                         scram-sha-256 are; see pg_hba.conf)"
                    )))
                }
            }
        }
    }

    /// SCRAM-SHA-256, with channel binding when under TLS and the server offers it.
    async fn scram(
        &mut self,
        password: &str,
        mechanisms: &[String],
        cert: Option<&[u8]>,
    ) -> Result<()> {
        let plus = mechanisms.iter().any(|m| m == sasl::SCRAM_SHA_256_PLUS);
        let plain = mechanisms.iter().any(|m| m == sasl::SCRAM_SHA_256);
        let end_point = cert.and_then(tls_server_end_point);
        let (mechanism, binding) = match (end_point, plus) {
            (Some(hash), true) => (
                sasl::SCRAM_SHA_256_PLUS,
                ChannelBinding::tls_server_end_point(hash),
            ),
            // Under TLS but the server does not offer binding (or the certificate's
            // algorithm has no defined hash): say we could have.
            (Some(_), false) | (None, false) if cert.is_some() && plain => {
                (sasl::SCRAM_SHA_256, ChannelBinding::unrequested())
            }
            _ if plain => (sasl::SCRAM_SHA_256, ChannelBinding::unsupported()),
            _ => {
                return Err(ReplicationError::Auth(format!(
                    "the server offers SASL mechanisms {mechanisms:?}, none of which this client speaks"
                )))
            }
        };
        self.auth = mechanism;
        let mut scram = ScramSha256::new(password.as_bytes(), binding);
        frontend::sasl_initial_response(mechanism, scram.message(), &mut self.wbuf)
            .map_err(proto)?;
        self.flush().await?;
        let cont = self.auth_step(11).await?;
        scram
            .update(&cont)
            .map_err(|e| ReplicationError::Auth(format!("SCRAM: {e}")))?;
        frontend::sasl_response(scram.message(), &mut self.wbuf).map_err(proto)?;
        self.flush().await?;
        let fin = self.auth_step(12).await?;
        scram
            .finish(&fin)
            .map_err(|e| ReplicationError::Auth(format!("SCRAM server signature: {e}")))
    }

    /// Reads an `Authentication` message of `kind`, returning its data.
    async fn auth_step(&mut self, kind: i32) -> Result<Bytes> {
        let msg = self.read_message().await?;
        match msg.tag {
            b'R' => {}
            b'E' => return Err(ReplicationError::Server(parse_error_fields(&msg.body))),
            other => return Err(unexpected(other, "SCRAM")),
        }
        let mut body = msg.body;
        if body.len() < 4 || body.get_i32() != kind {
            return Err(ReplicationError::Protocol(format!(
                "expected SASL step {kind} from the server"
            )));
        }
        Ok(body)
    }

    /// Writes out `wbuf`. Cancel-safe: what was not written yet stays in `wbuf`.
    pub(crate) async fn flush(&mut self) -> Result<()> {
        while !self.wbuf.is_empty() {
            let n = self
                .socket
                .write_buf(&mut self.wbuf)
                .await
                .map_err(ReplicationError::io("writing to the server"))?;
            if n == 0 {
                return Err(ReplicationError::Closed(" while writing"));
            }
        }
        self.socket
            .flush()
            .await
            .map_err(ReplicationError::io("writing to the server"))
    }

    /// Sets the socket's receive low-water mark (`SO_RCVLOWAT`): until `bytes` are waiting,
    /// the kernel does not wake the runtime for arriving data. Lowering it wakes a reader at
    /// once if enough is waiting, so nothing that arrived meanwhile is left unread. Returns
    /// whether the mark was set: only on TCP (plain or under TLS) and on Linux 4.18 and later
    /// (see [`low_water_signals_readers`]); the caller then waits on a timer instead.
    pub(crate) fn set_read_low_water(&self, bytes: usize) -> bool {
        use std::os::fd::AsRawFd;
        if !low_water_signals_readers() {
            return false;
        }
        let fd = match &self.socket {
            Socket::Tcp(s) => s.as_raw_fd(),
            Socket::Tls(s) => s.get_ref().0.as_raw_fd(),
            Socket::Unix(_) => return false,
        };
        let value = libc::c_int::try_from(bytes.max(1)).unwrap_or(libc::c_int::MAX);
        // SAFETY: `fd` is this connection's open socket; the option value is a c_int that
        // lives across the call, with its size passed.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVLOWAT,
                std::ptr::from_ref(&value).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            tracing::debug!(error = %io::Error::last_os_error(), "SO_RCVLOWAT not set");
        }
        rc == 0
    }

    /// Reads more bytes into `rbuf`. Cancel-safe (a cancelled read took nothing).
    pub(crate) async fn fill(&mut self) -> Result<usize> {
        if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 4 {
            self.rbuf.reserve(READ_CHUNK);
        }
        let n = self
            .socket
            .read_buf(&mut self.rbuf)
            .await
            .map_err(ReplicationError::io("reading from the server"))?;
        if n == 0 {
            return Err(ReplicationError::Closed(""));
        }
        Ok(n)
    }

    /// Reads one whole message (outside copy mode).
    pub(crate) async fn read_message(&mut self) -> Result<Message> {
        loop {
            if self.rbuf.len() >= 5 {
                let len =
                    i32::from_be_bytes([self.rbuf[1], self.rbuf[2], self.rbuf[3], self.rbuf[4]]);
                if len < 4 || len as usize > MAX_MESSAGE_LEN {
                    return Err(ReplicationError::Protocol(format!(
                        "backend message {:?} with length {len}",
                        char::from(self.rbuf[0])
                    )));
                }
                let total = 1 + len as usize;
                if self.rbuf.len() >= total {
                    let mut msg = self.rbuf.split_to(total).freeze();
                    let tag = msg[0];
                    msg.advance(5);
                    return Ok(Message { tag, body: msg });
                }
            }
            self.fill().await?;
        }
    }

    /// Sends `Terminate` and closes the socket, ignoring errors (the session is over).
    pub(crate) async fn terminate(mut self) {
        frontend::terminate(&mut self.wbuf);
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let _ = self.flush().await;
            let _ = self.socket.shutdown().await;
        })
        .await;
    }
}

/// Opens the socket and negotiates TLS; returns the server's certificate under TLS.
async fn open(cfg: &ConnectConfig) -> Result<(Socket, Option<Vec<u8>>)> {
    let host = match &cfg.host {
        Host::Unix(dir) => {
            let path = dir.join(format!(".s.PGSQL.{}", cfg.port));
            let s = UnixStream::connect(&path)
                .await
                .map_err(ReplicationError::io("connecting to the unix socket"))?;
            return Ok((Socket::Unix(s), None));
        }
        Host::Tcp(host) => host,
    };
    let mut tcp = TcpStream::connect((host.as_str(), cfg.port))
        .await
        .map_err(ReplicationError::io("connecting to the server"))?;
    let _ = tcp.set_nodelay(true);
    let tls = match (cfg.tls_mode, &cfg.tls) {
        (TlsMode::Disable, _) => return Ok((Socket::Tcp(tcp), None)),
        (TlsMode::Prefer, None) => return Ok((Socket::Tcp(tcp), None)),
        (TlsMode::Require, None) => {
            return Err(ReplicationError::Invalid(
                "TLS is required but no TLS configuration was given".into(),
            ))
        }
        (_, Some(tls)) => tls.clone(),
    };
    let mut buf = BytesMut::new();
    frontend::ssl_request(&mut buf);
    tcp.write_all(&buf)
        .await
        .map_err(ReplicationError::io("sending SSLRequest"))?;
    let answer = tcp
        .read_u8()
        .await
        .map_err(ReplicationError::io("reading the answer to SSLRequest"))?;
    match answer {
        b'S' => {}
        b'N' if cfg.tls_mode == TlsMode::Prefer => return Ok((Socket::Tcp(tcp), None)),
        b'N' => {
            return Err(ReplicationError::Tls(
                "the server does not accept TLS connections (ssl = off), and sslmode requires TLS"
                    .into(),
            ))
        }
        other => {
            return Err(ReplicationError::Protocol(format!(
                "answer {other:#x} to SSLRequest"
            )))
        }
    }
    let name = cfg.tls_server_name.as_deref().unwrap_or(host);
    let server_name = rustls::pki_types::ServerName::try_from(name.to_string())
        .map_err(|e| ReplicationError::Tls(format!("server name {name:?}: {e}")))?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(server_name, tcp)
        .await
        .map_err(|e| ReplicationError::Tls(format!("handshake with {name}: {e}")))?;
    let cert = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.as_ref().to_vec())
        .unwrap_or_default();
    Ok((Socket::Tls(Box::new(stream)), Some(cert)))
}

/// The `tls-server-end-point` channel binding data: the certificate hashed with its
/// signature's hash, SHA-256 when that is MD5 or SHA-1 (RFC 5929 section 4.1). `None` when
/// the algorithm defines no hash (Ed25519), or the certificate does not parse.
pub fn tls_server_end_point(cert: &[u8]) -> Option<Vec<u8>> {
    use x509_cert::der::Decode;
    let parsed = x509_cert::Certificate::from_der(cert).ok()?;
    let algorithm = match parsed.signature_algorithm.oid.to_string().as_str() {
        // md5WithRSA, sha1WithRSA, sha256WithRSA, ecdsa-with-SHA1, ecdsa-with-SHA256
        "1.2.840.113549.1.1.4"
        | "1.2.840.113549.1.1.5"
        | "1.2.840.113549.1.1.11"
        | "1.2.840.10045.4.1"
        | "1.2.840.10045.4.3.2" => &ring::digest::SHA256,
        // sha384WithRSA, ecdsa-with-SHA384
        "1.2.840.113549.1.1.12" | "1.2.840.10045.4.3.3" => &ring::digest::SHA384,
        // sha512WithRSA, ecdsa-with-SHA512
        "1.2.840.113549.1.1.13" | "1.2.840.10045.4.3.4" => &ring::digest::SHA512,
        _ => return None,
    };
    Some(ring::digest::digest(algorithm, cert).as_ref().to_vec())
}

/// The NUL-terminated strings of a body (SASL mechanism list), up to the empty one.
fn cstrings(body: &[u8]) -> Vec<String> {
    body.split(|&b| b == 0)
        .take_while(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// A `ParameterStatus` body: name and value.
fn parameter_status(body: &[u8]) -> Result<(String, String)> {
    let mut parts = body.split(|&b| b == 0);
    match (parts.next(), parts.next()) {
        (Some(n), Some(v)) => Ok((
            String::from_utf8_lossy(n).into_owned(),
            String::from_utf8_lossy(v).into_owned(),
        )),
        _ => Err(ReplicationError::Protocol(
            "malformed ParameterStatus".into(),
        )),
    }
}

pub(crate) fn unexpected(tag: u8, during: &str) -> ReplicationError {
    ReplicationError::Protocol(format!(
        "unexpected message {:?} during {during}",
        char::from(tag)
    ))
}

#[allow(clippy::needless_pass_by_value)] // the shape `map_err` takes
fn proto(e: io::Error) -> ReplicationError {
    ReplicationError::Invalid(e.to_string())
}

/// Appends a simple `Query` message.
pub(crate) fn query(sql: &str, out: &mut BytesMut) -> Result<()> {
    frontend::query(sql, out).map_err(proto)
}

/// Appends `CopyDone`.
pub(crate) fn copy_done(out: &mut BytesMut) {
    out.put_u8(b'c');
    out.put_i32(4);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_releases_compare_by_major_and_minor() {
        assert_eq!(kernel_at_least("6.18.44-fc-v1300", (4, 18)), Some(true));
        assert_eq!(
            kernel_at_least("4.18.0-553.el8_10.x86_64", (4, 18)),
            Some(true)
        );
        assert_eq!(kernel_at_least("4.9.0-13-amd64", (4, 18)), Some(false));
        assert_eq!(
            kernel_at_least("3.10.0-1160.el7.x86_64\n", (4, 18)),
            Some(false)
        );
        assert_eq!(kernel_at_least("5.4", (4, 18)), Some(true));
        assert_eq!(kernel_at_least("weird", (4, 18)), None);
    }

    #[test]
    fn reads_cstrings_and_parameters() {
        assert_eq!(
            cstrings(b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0"),
            vec!["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]
        );
        assert_eq!(
            parameter_status(b"server_version\x0013.23\x00").unwrap(),
            ("server_version".into(), "13.23".into())
        );
        assert!(parameter_status(b"x").is_err());
    }

    #[test]
    fn end_point_hash_follows_the_signature_algorithm() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["db".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let hash = tls_server_end_point(cert.der()).unwrap();
        assert_eq!(hash.len(), 48, "SHA-384 for ecdsa-with-SHA384");
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["db".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        assert_eq!(tls_server_end_point(cert.der()).unwrap().len(), 32);
        assert!(tls_server_end_point(b"not a certificate").is_none());
    }

    #[test]
    fn debug_hides_the_password() {
        let mut cfg = ConnectConfig::new(Host::Tcp("h".into()), 5432, "u", "d");
        cfg.password = Some("s3cret".into());
        assert!(!format!("{cfg:?}").contains("s3cret"));
    }
}
