//! TLS to PostgreSQL: `require` encrypts both the SQL and the replication connection,
//! `verify-full` accepts a server whose certificate chains to the configured CA and names
//! the host, and refuses one signed by another CA; a client certificate
//! (`sslcert`/`sslkey`) passes `cert` authentication on both connections, and without it
//! walrus stops with the authentication error instead of retrying.

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType};

use crate::common::*;

struct Pki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
    /// A client certificate for role `certuser` (its common name), by the same CA.
    client_cert_pem: String,
    client_key_pem: String,
}

fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let client_key = KeyPair::generate().unwrap();
    let mut client_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    client_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "certuser");
    let client_cert = client_params.signed_by(&client_key, &ca).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress(std::net::IpAddr::V4(
            std::net::Ipv4Addr::LOCALHOST,
        )));
    let cert = params.signed_by(&key, &ca).unwrap();
    Pki {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        client_cert_pem: client_cert.pem(),
        client_key_pem: client_key.serialize_pem(),
    }
}

/// Writes the server's certificate and key into its data directory (owned by the server's
/// user, as PostgreSQL requires for the key) and turns TLS on.
async fn enable_tls(env: &Env, pki: &Pki) {
    let data = env.cluster.data_dir();
    let meta = std::fs::metadata(data).unwrap();
    for (name, body, mode) in [
        ("server.crt", &pki.cert_pem, 0o644),
        ("server.key", &pki.key_pem, 0o600),
        ("root.crt", &pki.ca_pem, 0o644),
    ] {
        let path = data.join(name);
        std::fs::write(&path, body).unwrap();
        std::os::unix::fs::chown(&path, Some(meta.uid()), Some(meta.gid())).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let c = env.cluster.connect("postgres").await.unwrap();
    // Separate calls: a multi-statement string is one transaction, and ALTER SYSTEM refuses
    // to run in one.
    c.batch_execute("ALTER SYSTEM SET ssl = on").await.unwrap();
    // The CA that client certificates must chain to (`cert` authentication).
    c.batch_execute("ALTER SYSTEM SET ssl_ca_file = 'root.crt'")
        .await
        .unwrap();
    c.batch_execute("SELECT pg_reload_conf()").await.unwrap();
    // The reload is asynchronous: wait until new connections see it.
    for _ in 0..50 {
        let c = env.cluster.connect("postgres").await.unwrap();
        let on: String = c.query_one("SHOW ssl", &[]).await.unwrap().get(0);
        if on == "on" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("ssl did not turn on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_require_and_verify_full() {
    let env = Env::new().await;
    let pki = pki();
    enable_tls(&env, &pki).await;
    let c = env.sql().await;
    c.batch_execute("CREATE TABLE secret (id int PRIMARY KEY)")
        .await
        .unwrap();

    // require: everything walrus opens is encrypted.
    let cfg = env.write_config(&env.config(r#"["public.secret"]"#, "sslmode = \"require\""));
    let mut walrus = Walrus::start(&cfg);
    wait_until(Duration::from_secs(30), "replication start", || {
        walrus.log().contains("starting replication")
    })
    .await;
    c.batch_execute("INSERT INTO secret VALUES (1)")
        .await
        .unwrap();
    wait_for_events(&env.out_path(), 1, Duration::from_secs(30), |e| {
        e["value"]["op"] == "c"
    })
    .await;
    let plain: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
              WHERE a.application_name = 'walrus' AND NOT s.ssl",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let encrypted: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
              WHERE a.application_name = 'walrus' AND s.ssl AND a.backend_type = 'walsender'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(plain, 0, "every walrus connection must use TLS");
    assert_eq!(encrypted, 1, "the replication connection must use TLS");
    walrus.interrupt();
    assert!(walrus.wait(Duration::from_secs(30)).success());

    // verify-full with the right CA, by the name on the certificate.
    let ca = env.dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let extra = format!(
        "sslmode = \"verify-full\"\nsslrootcert = \"{}\"",
        ca.display()
    );
    let by_name = |text: String| text.replace("@127.0.0.1:", "@localhost:");
    let cfg = env.write_config(&by_name(env.config(r#"["public.secret"]"#, &extra)));
    let mut walrus = Walrus::start(&cfg);
    wait_until(Duration::from_secs(30), "replication start", || {
        walrus.log().contains("starting replication")
    })
    .await;
    c.batch_execute("INSERT INTO secret VALUES (2)")
        .await
        .unwrap();
    wait_for_events(&env.out_path(), 2, Duration::from_secs(30), |e| {
        e["value"]["op"] == "c"
    })
    .await;
    walrus.interrupt();
    assert!(walrus.wait(Duration::from_secs(30)).success());

    // verify-full with a CA that did not sign the server's certificate: refused.
    let other = env.dir.path().join("other-ca.pem");
    std::fs::write(&other, self::pki().ca_pem).unwrap();
    let extra = format!(
        "sslmode = \"verify-full\"\nsslrootcert = \"{}\"",
        other.display()
    );
    let cfg = env.write_config(&by_name(env.config(r#"["public.secret"]"#, &extra)));
    let out = walrus_check(&cfg);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("FAIL connection"), "{stdout}");
    // `walrus run` stops with the TLS error instead of retrying forever.
    let mut walrus = Walrus::start(&cfg);
    let status = walrus.wait(Duration::from_secs(30));
    assert!(!status.success());
    assert!(walrus.log().contains("sslrootcert"), "{}", walrus.log());

    // verify-full by IP address: a configuration error that names the key.
    let cfg = env.write_config(&env.config(r#"["public.secret"]"#, &extra));
    let mut walrus = Walrus::start(&cfg);
    let status = walrus.wait(Duration::from_secs(30));
    assert!(!status.success());
    assert!(walrus.log().contains("source.sslmode"), "{}", walrus.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificate_on_both_connections() {
    let env = Env::new().await;
    let pki = pki();
    enable_tls(&env, &pki).await;
    let c = env.sql().await;
    c.batch_execute(
        "CREATE ROLE certuser LOGIN SUPERUSER REPLICATION;
         CREATE TABLE badge (id int PRIMARY KEY)",
    )
    .await
    .unwrap();
    // certuser must present a certificate naming it, over TLS, on SQL and replication
    // connections; everyone else keeps trust (the test's own connections).
    env.cluster
        .set_hba(
            "hostssl all certuser 127.0.0.1/32 cert\n\
             hostssl replication certuser 127.0.0.1/32 cert\n\
             host all certuser 127.0.0.1/32 reject\n\
             host replication certuser 127.0.0.1/32 reject\n\
             host all all 127.0.0.1/32 trust\n\
             host replication all 127.0.0.1/32 trust\n\
             local all all trust\n",
        )
        .unwrap();
    let cert = env.dir.path().join("client.crt");
    let key = env.dir.path().join("client.key");
    std::fs::write(&cert, &pki.client_cert_pem).unwrap();
    std::fs::write(&key, &pki.client_key_pem).unwrap();
    let as_certuser = |text: String| text.replace("postgres://postgres@", "postgres://certuser@");

    let extra = format!(
        "sslmode = \"require\"\nsslcert = \"{}\"\nsslkey = \"{}\"",
        cert.display(),
        key.display()
    );
    let cfg = env.write_config(&as_certuser(env.config(r#"["public.badge"]"#, &extra)));
    let mut walrus = Walrus::start(&cfg);
    wait_until(Duration::from_secs(30), "replication start", || {
        walrus.log().contains("starting replication")
    })
    .await;
    c.batch_execute("INSERT INTO badge VALUES (1)")
        .await
        .unwrap();
    wait_for_events(&env.out_path(), 1, Duration::from_secs(30), |e| {
        e["value"]["op"] == "c"
    })
    .await;
    // Both kinds of connection presented the certificate.
    let row = c
        .query_one(
            "SELECT count(*) FILTER (WHERE a.backend_type = 'walsender'),
                    count(*) FILTER (WHERE a.backend_type <> 'walsender'),
                    count(*) FILTER (WHERE s.client_dn IS DISTINCT FROM '/CN=certuser')
               FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
              WHERE a.usename = 'certuser'",
            &[],
        )
        .await
        .unwrap();
    let (walsenders, sql, without): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(
        walsenders, 1,
        "the replication connection authenticates by certificate"
    );
    assert!(sql >= 1, "the SQL connections authenticate by certificate");
    assert_eq!(
        without, 0,
        "every certuser connection shows the certificate's name"
    );
    walrus.interrupt();
    assert!(walrus.wait(Duration::from_secs(30)).success());

    // Without the certificate the server refuses certuser: a fatal authentication error,
    // not a retry loop.
    let cfg = env.write_config(&as_certuser(
        env.config(r#"["public.badge"]"#, "sslmode = \"require\""),
    ));
    let mut walrus = Walrus::start(&cfg);
    let status = walrus.wait(Duration::from_secs(30));
    assert!(!status.success());
    assert!(walrus.log().contains("certificate"), "{}", walrus.log());
}
