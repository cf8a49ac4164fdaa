//! The client against real servers of several majors: authentication methods (trust, md5,
//! SCRAM, SCRAM with channel binding under TLS), slot creation with an exported snapshot,
//! streaming with the options of each version, feedback reaching the slot, and a clean
//! finish whose last acknowledgement the slot shows.

use std::sync::Arc;
use std::time::Duration;

use walrus_replication::{
    ConnectConfig, CreateSlot, Frame, Host, Lsn, PluginRequest, ReplicationClient,
    ReplicationError, SnapshotAction, TlsMode,
};
use walrus_testkit::{unique_name, PgCluster};

const PASSWORD: &str = "pw-with-'quote";

fn config(pg: &PgCluster, user: &str, db: &str) -> ConnectConfig {
    let mut cfg = ConnectConfig::new(Host::Tcp(pg.host().to_string()), pg.port(), user, db);
    cfg.tls_mode = TlsMode::Disable;
    cfg
}

/// A database with a published table `t`, and a role `walrus` with `password`.
async fn setup(pg: &PgCluster, encryption: &str) -> String {
    let db = unique_name("repl");
    pg.create_database(&db).await.unwrap();
    let c = pg.connect(&db).await.unwrap();
    c.batch_execute(&format!(
        "SET password_encryption = '{encryption}';
         CREATE ROLE walrus LOGIN REPLICATION PASSWORD '{}';
         CREATE TABLE t (id int PRIMARY KEY, v text);
         ALTER TABLE t OWNER TO walrus;
         CREATE PUBLICATION p FOR TABLE t;",
        PASSWORD.replace('\'', "''")
    ))
    .await
    .unwrap();
    db
}

/// What the slot has confirmed, from `pg_replication_slots`.
async fn confirmed(pg: &PgCluster, db: &str, slot: &str) -> Lsn {
    let c = pg.connect(db).await.unwrap();
    let text: String = c
        .query_one(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .unwrap()
        .get(0);
    text.parse().unwrap()
}

/// Creates a slot, inserts rows, streams them, confirms their commit and finishes; checks
/// every step against the server.
async fn round_trip(pg: &PgCluster, cfg: &ConnectConfig, db: &str) {
    let mut client = ReplicationClient::connect(cfg).await.unwrap();
    assert_eq!(client.server_version().major, pg.major());
    let id = client.identify_system().await.unwrap();
    assert_eq!(id.dbname.as_deref(), Some(db));
    let slot = unique_name("s");
    let created = client
        .create_slot(&CreateSlot {
            name: slot.clone(),
            temporary: false,
            snapshot: SnapshotAction::Export,
            failover: false,
        })
        .await
        .unwrap();
    assert_eq!(created.plugin, "pgoutput");
    assert!(created.snapshot_name.is_some());
    assert!(created.consistent_point.0 > 0);

    let c = pg.connect(db).await.unwrap();
    c.batch_execute("INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 500) g")
        .await
        .unwrap();
    c.batch_execute("SELECT pg_logical_emit_message(false, 'walrus-test', 'hello')")
        .await
        .unwrap();

    let request = PluginRequest {
        publications: vec!["p".into()],
        binary: true,
        messages: true,
        ..PluginRequest::default()
    };
    let mut stream = client
        .start(
            &slot,
            created.consistent_point,
            created.consistent_point,
            &request,
        )
        .await
        .unwrap();
    assert_eq!(stream.options().binary, pg.major() >= 14);
    stream.set_status_interval(Duration::from_millis(100));

    let (mut inserts, mut commit_end, mut message) = (0, None, false);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while commit_end.is_none() || (pg.major() >= 14 && !message) {
        assert!(tokio::time::Instant::now() < deadline, "no commit streamed");
        for frame in stream.next_batch().await.unwrap() {
            if let Frame::XLogData { data, .. } = frame.unwrap() {
                match data[0] {
                    b'I' => inserts += 1,
                    // Commit: flags, commit LSN, end LSN, time.
                    b'C' => {
                        commit_end =
                            Some(Lsn(u64::from_be_bytes(data[10..18].try_into().unwrap())));
                    }
                    b'M' => message = true,
                    _ => {}
                }
            }
        }
    }
    assert_eq!(inserts, 500);
    let end = commit_end.unwrap();
    // Nothing was confirmed by connecting or streaming.
    assert_eq!(confirmed(pg, db, &slot).await, created.consistent_point);

    // Proactive feedback reaches the slot without any keepalive asking for it.
    stream.set_flushed(end);
    stream.set_flushed(Lsn(end.0 - 1)); // ignored: never backwards
    let wait = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let _ = tokio::time::timeout(Duration::from_millis(200), stream.next_batch()).await;
        if confirmed(pg, db, &slot).await == end {
            break;
        }
        assert!(
            tokio::time::Instant::now() < wait,
            "feedback never reached the slot"
        );
    }

    // A position set just before finishing is sent before CopyDone.
    c.batch_execute("INSERT INTO t VALUES (1000, 'last')")
        .await
        .unwrap();
    let mut last_end = None;
    while last_end.is_none() {
        for frame in stream.next_batch().await.unwrap() {
            if let Frame::XLogData { data, .. } = frame.unwrap() {
                if data[0] == b'C' {
                    last_end = Some(Lsn(u64::from_be_bytes(data[10..18].try_into().unwrap())));
                }
            }
        }
    }
    let last_end = last_end.unwrap();
    stream.set_flushed(last_end);
    assert_eq!(stream.finish().await.unwrap(), last_end);
    assert_eq!(confirmed(pg, db, &slot).await, last_end);
}

async fn trust_session(major: u32) {
    let pg = PgCluster::builder().major(major).start().unwrap();
    let db = setup(&pg, "md5").await;
    round_trip(&pg, &config(&pg, "postgres", &db), &db).await;
}

async fn password_session(major: u32, method: &str) {
    let pg = PgCluster::builder().major(major).start().unwrap();
    let db = setup(&pg, method).await;
    pg.set_hba(&format!(
        "local all all trust\n\
         host all postgres 127.0.0.1/32 trust\n\
         host replication postgres 127.0.0.1/32 trust\n\
         host all walrus 127.0.0.1/32 {method}\n\
         host replication walrus 127.0.0.1/32 {method}\n"
    ))
    .unwrap();
    let mut cfg = config(&pg, "walrus", &db);
    // Wrong password: a definite error, not worth retrying.
    cfg.password = Some("wrong".into());
    let err = ReplicationClient::connect(&cfg).await.unwrap_err();
    assert_eq!(
        err.server().map(|e| e.code.as_str()),
        Some("28P01"),
        "{err}"
    );
    assert!(!err.is_retryable());
    cfg.password = None;
    let err = ReplicationClient::connect(&cfg).await.unwrap_err();
    assert!(matches!(err, ReplicationError::Auth(_)), "{err}");
    cfg.password = Some(PASSWORD.into());
    let client = ReplicationClient::connect(&cfg).await.unwrap();
    let expected = if method == "md5" {
        "md5"
    } else {
        "SCRAM-SHA-256"
    };
    assert_eq!(client.auth_method(), expected);
    client.close().await;
    round_trip(&pg, &cfg, &db).await;
}

macro_rules! per_major {
    ($($name:ident: $major:literal),*) => {$(
        #[tokio::test]
        async fn $name() {
            trust_session($major).await;
        }
    )*};
}

per_major!(trust_10: 10, trust_11: 11, trust_12: 12, trust_13: 13, trust_14: 14, trust_15: 15, trust_16: 16, trust_17: 17, trust_18: 18);

#[tokio::test]
async fn md5_on_10() {
    password_session(10, "md5").await;
}

#[tokio::test]
async fn md5_on_18() {
    password_session(18, "md5").await;
}

#[tokio::test]
async fn scram_on_10() {
    password_session(10, "scram-sha-256").await;
}

#[tokio::test]
async fn scram_on_16() {
    password_session(16, "scram-sha-256").await;
}

#[tokio::test]
async fn cleartext_on_13() {
    let pg = PgCluster::builder().major(13).start().unwrap();
    let db = setup(&pg, "md5").await;
    pg.set_hba(
        "local all all trust\nhost all postgres 127.0.0.1/32 trust\n\
         host all walrus 127.0.0.1/32 password\nhost replication walrus 127.0.0.1/32 password\n",
    )
    .unwrap();
    let mut cfg = config(&pg, "walrus", &db);
    cfg.password = Some(PASSWORD.into());
    let mut client = ReplicationClient::connect(&cfg).await.unwrap();
    client.identify_system().await.unwrap();
    client.close().await;
}

/// A self-signed certificate for 127.0.0.1, written into the data directory, and TLS on.
fn enable_tls(pg: &PgCluster) -> rustls::pki_types::CertificateDer<'static> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.subject_alt_names.push(rcgen::SanType::IpAddress(
        std::net::Ipv4Addr::LOCALHOST.into(),
    ));
    let cert = params.self_signed(&key).unwrap();
    let data = pg.data_dir();
    let meta = std::fs::metadata(data).unwrap();
    for (name, body, mode) in [
        ("server.crt", cert.pem(), 0o644),
        ("server.key", key.serialize_pem(), 0o600),
    ] {
        let path = data.join(name);
        std::fs::write(&path, body).unwrap();
        std::os::unix::fs::chown(&path, Some(meta.uid()), Some(meta.gid())).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    pg.psql("postgres", "ALTER SYSTEM SET ssl = on").unwrap();
    pg.reload().unwrap();
    cert.der().clone()
}

fn tls_config(ca: Option<rustls::pki_types::CertificateDer<'static>>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca) = ca {
        roots.add(ca).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// verify-full over TLS with SCRAM-SHA-256-PLUS (channel binding, 11+), and `require`
/// refused by a server without TLS.
async fn tls_session(major: u32) {
    let pg = PgCluster::builder().major(major).start().unwrap();
    let db = setup(&pg, "scram-sha-256").await;
    let mut cfg = config(&pg, "walrus", &db);
    cfg.tls_mode = TlsMode::Require;
    cfg.tls = Some(tls_config(None));
    let err = ReplicationClient::connect(&cfg).await.unwrap_err();
    assert!(matches!(err, ReplicationError::Tls(_)), "{err}");

    let ca = enable_tls(&pg);
    pg.set_hba(
        "local all all trust\nhost all postgres 127.0.0.1/32 trust\n\
         hostssl all walrus 127.0.0.1/32 scram-sha-256\nhostssl replication walrus 127.0.0.1/32 scram-sha-256\n",
    )
    .unwrap();
    cfg.tls = Some(tls_config(Some(ca)));
    cfg.password = Some(PASSWORD.into());
    let mut client = ReplicationClient::connect(&cfg).await.unwrap();
    assert!(client.is_tls());
    // Channel binding exists from PostgreSQL 11.
    assert_eq!(client.auth_method(), "SCRAM-SHA-256-PLUS");
    let c = pg.connect(&db).await.unwrap();
    let ssl: bool = c
        .query_one(
            "SELECT bool_and(ssl) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE usename = 'walrus'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ssl);
    client.identify_system().await.unwrap();
    client.close().await;
    round_trip(&pg, &cfg, &db).await;
}

#[tokio::test]
async fn tls_scram_on_13() {
    tls_session(13).await;
}

#[tokio::test]
async fn tls_scram_on_18() {
    tls_session(18).await;
}

/// Definite errors are refused as such: an unknown publication, a missing slot.
#[tokio::test]
async fn definite_errors_are_not_retryable() {
    let pg = PgCluster::builder().major(14).start().unwrap();
    let db = setup(&pg, "md5").await;
    let cfg = config(&pg, "postgres", &db);
    let client = ReplicationClient::connect(&cfg).await.unwrap();
    let request = PluginRequest {
        publications: vec!["p".into()],
        ..PluginRequest::default()
    };
    let err = client
        .start("no_such_slot", Lsn(0), Lsn(0), &request)
        .await
        .unwrap_err();
    assert_eq!(err.server().unwrap().code, "42704", "{err}");
    assert!(!err.is_retryable());
}
