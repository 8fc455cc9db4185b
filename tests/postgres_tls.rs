//! TLS to PostgreSQL as `[database] url` asks for it (libpq's `sslmode`, `sslrootcert`),
//! against real servers started for the test: one with `ssl = on` and a certificate from
//! a CA made for the test, one without TLS.

mod common;

use common::pki::TestCa;
use readgate::db::Conn;
use readgate::pgtest::TempPostgres;
use std::path::Path;

/// Whether the session of `conn` is encrypted, as the server sees it.
fn encrypted(conn: &Conn) -> bool {
    conn.query_row(
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        [],
        |r| r.get(0),
    )
    .expect("pg_stat_ssl")
}

fn with(url: &str, options: &str) -> String {
    format!("{url}?{options}")
}

fn refused(url: &str) -> String {
    match Conn::postgres(url) {
        Ok(_) => panic!("connected with {url}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn tls_to_postgresql_as_the_url_asks() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = TestCa::new("readgate test database CA");
    let ca_file = ca.write(dir.path(), "db-ca.pem");
    let other_ca = TestCa::new("another CA").write(dir.path(), "other-ca.pem");
    // The certificate names `localhost` only: 127.0.0.1 is another name for verify-full.
    let server = ca.issue(&["localhost"]);
    let pg = TempPostgres::start_with_tls(&server.cert, &server.key).expect("PostgreSQL with TLS");
    let by_ip = pg.url();
    let by_name = format!(
        "postgresql://{}@localhost:{}/{}",
        readgate::pgtest::USER,
        pg.port(),
        readgate::pgtest::DATABASE
    );
    let root = |ca: &Path| format!("sslrootcert={}", ca.display());

    // verify-full with the CA that signed the server's certificate, by the name in it.
    let full = with(&by_name, &format!("sslmode=verify-full&{}", root(&ca_file)));
    let conn = Conn::postgres(&full).expect("verify-full with the right CA");
    assert!(encrypted(&conn));
    // The store and its schema over that connection.
    readgate::store::Store::connect(&full, 4).expect("the store over TLS");

    // verify-full by another name: refused; verify-ca checks the chain only: connects.
    let e = refused(&with(
        &by_ip,
        &format!("sslmode=verify-full&{}", root(&ca_file)),
    ));
    assert!(
        e.contains("TLS") && e.contains("not valid for name \"127.0.0.1\""),
        "{e}"
    );
    let conn = Conn::postgres(&with(
        &by_ip,
        &format!("sslmode=verify-ca&{}", root(&ca_file)),
    ))
    .expect("verify-ca");
    assert!(encrypted(&conn));

    // Another CA: refused, saying why.
    for mode in ["verify-full", "verify-ca", "require"] {
        let e = refused(&with(
            &by_name,
            &format!("sslmode={mode}&{}", root(&other_ca)),
        ));
        assert!(
            e.contains("invalid peer certificate") && e.contains("UnknownIssuer"),
            "{mode}: {e}"
        );
    }

    // require without a CA, and prefer: encrypted, the certificate not verified (libpq's
    // meaning); absent or disable: plain.
    for options in ["sslmode=require", "sslmode=prefer"] {
        let conn = Conn::postgres(&with(&by_ip, options)).expect(options);
        assert!(encrypted(&conn), "{options}");
    }
    for url in [by_ip.clone(), with(&by_ip, "sslmode=disable")] {
        let conn = Conn::postgres(&url).expect("plain");
        assert!(!encrypted(&conn), "{url}");
    }

    // A server without TLS: require refuses, prefer falls back to plain.
    let plain = TempPostgres::start().expect("PostgreSQL without TLS");
    let e = refused(&with(&plain.url(), "sslmode=require"));
    assert!(e.contains("server does not support TLS"), "{e}");
    let e = refused(&with(
        &plain.url(),
        &format!("sslmode=verify-full&{}", root(&ca_file)),
    ));
    assert!(e.contains("server does not support TLS"), "{e}");
    let conn = Conn::postgres(&with(&plain.url(), "sslmode=prefer")).expect("prefer");
    assert!(!encrypted(&conn));
}

#[test]
fn tls_options_are_checked_with_the_configuration() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca_file = TestCa::new("a CA").write(dir.path(), "ca.pem");
    let cfg = |url: &str| {
        let mut c = common::TestConfig::new(dir.path(), 11112);
        c.database_url = Some(url.to_string());
        readgate::config::Config::parse(&c.text(), Path::new("test.toml"))
    };
    let good = format!(
        "postgresql://gw:s3cret@db.example/readgate?sslmode=verify-full&sslrootcert={}",
        ca_file.display()
    );
    assert!(cfg(&good).is_ok());
    for (url, says) in [
        (
            "postgresql://gw:s3cret@db.example/readgate?sslmode=verify-full".to_string(),
            "sslmode=verify-full needs sslrootcert=PATH",
        ),
        (
            "postgresql://gw:s3cret@db.example/readgate?sslmode=sometimes".to_string(),
            "expected disable, allow, prefer, require, verify-ca or verify-full",
        ),
        (
            "postgresql://gw:s3cret@db.example/readgate?sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem"
                .to_string(),
            "/nonexistent/ca.pem",
        ),
    ] {
        let e = cfg(&url).expect_err(&url).to_string();
        assert!(e.contains("database.url") && e.contains(says), "{e}");
        assert!(!e.contains("s3cret"), "{e}");
    }
}
