//! Web console sessions in the database (issue #13), over HTTP through `readgate::serve`
//! in-process: a session survives a restart (SQLite); with two nodes on one PostgreSQL
//! database a session opened on one is valid on the other (pages, CSRF-protected POSTs,
//! logout on either ends it on both); idle expiry; the database holds no session id; a
//! database that cannot be reached is a 503, not a login loop.

mod common;

use common::http::WebClient;
use common::*;
use readgate::pgtest::TempPostgres;
use std::time::Duration;

const ADMIN_PW: &str = "admin-pass-1";

fn users_toml() -> String {
    let admin = readgate::web::auth::hash_password(ADMIN_PW).unwrap();
    format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n\
[[http.users]]\nname = \"admin\"\nrole = \"admin\"\npassword_hash = \"{admin}\"\n"
    )
}

fn body(r: &common::http::HttpResponse) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

/// The id in a client's `readgate_session=<id>` cookie.
fn session_id(c: &WebClient) -> String {
    let cookie = c.cookie.as_deref().expect("a session cookie");
    cookie
        .strip_prefix("readgate_session=")
        .expect("the session cookie")
        .to_string()
}

/// The client is signed in: the held list answers 200 with the user's name.
async fn signed_in(c: &mut WebClient) -> bool {
    let r = c.get("/").await;
    match r.status {
        200 => {
            assert!(body(&r).contains("admin"), "{}", body(&r));
            true
        }
        303 => {
            assert_eq!(r.header("location"), Some("/login"));
            false
        }
        s => panic!("GET / answered {s}: {}", body(&r)),
    }
}

/// A CSRF-protected POST that reaches the action: re-evaluating a study readgate does not
/// have is refused with 409 (a wrong token would be 403, no session a 303 to the login
/// page).
async fn csrf_post(c: &mut WebClient, csrf: &str) -> u16 {
    c.post_form("/studies/1.2.3.4.5.404/reevaluate", &[("csrf", csrf)])
        .await
        .status
}

/// Every text value of `console_sessions`, rows of (id_sha256, user, role, digest, csrf,
/// node), from a connection of the test's own.
fn session_rows(cfg: &common::TestConfig) -> Vec<Vec<String>> {
    cfg.database()
        .query_map(
            "SELECT id_sha256, user_name, role, user_digest, csrf, node FROM console_sessions",
            [],
            |r| (0..6).map(|i| r.get::<_, String>(i)).collect(),
        )
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_console_session_survives_a_restart() {
    let (_dir, mut cfg) = no_reading_site();
    cfg.extra = users_toml();
    let rg = readgate::serve::start(cfg.parse()).await.expect("starts");
    let mut admin = WebClient::new(rg.http_addr.expect("http"));
    assert_eq!(admin.login("admin", ADMIN_PW).await.status, 303);
    assert!(signed_in(&mut admin).await);
    let csrf = admin.csrf().await;
    let id = session_id(&admin);
    rg.stop().await;

    // The database holds the id's SHA-256, never the id.
    let rows = session_rows(&cfg);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(rows[0].iter().all(|v| !v.contains(&id)), "{rows:?}");
    assert_eq!(rows[0][0], readgate::digest::sha256_hex(&id));

    let rg = readgate::serve::start(cfg.parse())
        .await
        .expect("starts again");
    admin.addr = rg.http_addr.expect("http");
    assert!(
        signed_in(&mut admin).await,
        "still signed in after the restart"
    );
    assert_eq!(admin.csrf().await, csrf, "the same session");
    assert_eq!(csrf_post(&mut admin, &csrf).await, 409);
    assert_eq!(csrf_post(&mut admin, "wrong").await, 403);
    let r = admin.post_form("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(r.status, 303);
    // The browser forgets the cookie; whoever kept it gets nothing for it.
    assert!(admin.cookie.is_none());
    admin.cookie = Some(format!("readgate_session={id}"));
    assert!(!signed_in(&mut admin).await, "logged out");
    assert!(session_rows(&cfg).is_empty());
    rg.stop().await;
}

/// A text query on the test's own connection to the PostgreSQL database.
fn pg_rows(pg: &TempPostgres, sql: &str, columns: usize) -> Vec<Vec<String>> {
    let conn = readgate::db::Conn::postgres(&pg.url()).unwrap();
    conn.query_map(sql, [], |r| {
        (0..columns).map(|i| r.get::<_, String>(i)).collect()
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_opened_on_one_node_is_valid_on_the_other() {
    let mut pg = TempPostgres::start().expect("PostgreSQL for the test");
    // The nodes share one configuration's users (a node honours a session only while its
    // entry for the user is the one the session was opened with).
    let users = users_toml();
    let node = || {
        let (dir, mut cfg) = no_reading_site();
        cfg.extra = users.clone();
        cfg.database_url = Some(pg.url());
        (dir, cfg)
    };
    let (_dir_a, cfg_a) = node();
    let (_dir_b, cfg_b) = node();
    let a = readgate::serve::start(cfg_a.parse()).await.expect("node A");
    let b = readgate::serve::start(cfg_b.parse()).await.expect("node B");
    let (addr_a, addr_b) = (a.http_addr.unwrap(), b.http_addr.unwrap());

    // Signed in on A, the same cookie is signed in on B: pages and CSRF-protected POSTs.
    let mut on_a = WebClient::new(addr_a);
    assert_eq!(on_a.login("admin", ADMIN_PW).await.status, 303);
    let csrf = on_a.csrf().await;
    let mut on_b = on_a.clone();
    on_b.addr = addr_b;
    assert!(signed_in(&mut on_b).await, "A's session on B");
    assert_eq!(on_b.csrf().await, csrf);
    assert_eq!(csrf_post(&mut on_b, &csrf).await, 409);
    assert_eq!(csrf_post(&mut on_b, "wrong").await, 403);

    // The database holds no session id.
    let id = session_id(&on_a);
    let rows = pg_rows(
        &pg,
        "SELECT id_sha256, user_name, role, user_digest, csrf, node FROM console_sessions",
        6,
    );
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(rows[0].iter().all(|v| !v.contains(&id)), "{rows:?}");

    // Logout on B ends it on A.
    let r = on_b.post_form("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(r.status, 303);
    assert!(!signed_in(&mut on_a).await, "logged out on B, so on A");
    assert_eq!(csrf_post(&mut on_a, &csrf).await, 303);

    // Idle expiry: a session last seen 8 hours ago has ended on both nodes.
    assert_eq!(on_a.login("admin", ADMIN_PW).await.status, 303);
    let mut on_b = on_a.clone();
    on_b.addr = addr_b;
    assert!(signed_in(&mut on_b).await);
    let idle = readgate::web::auth::SESSION_IDLE.as_millis() as i64;
    let conn = readgate::db::Conn::postgres(&pg.url()).unwrap();
    conn.execute(
        "UPDATE console_sessions SET last_seen_at = ?1",
        [readgate::time::now_ms() - idle + 5_000],
    )
    .unwrap();
    assert!(
        signed_in(&mut on_b).await,
        "seven hours, 59 minutes and 55 s"
    );
    conn.execute(
        "UPDATE console_sessions SET last_seen_at = ?1",
        [readgate::time::now_ms() - idle - 1],
    )
    .unwrap();
    assert!(!signed_in(&mut on_b).await, "ended on B");
    assert!(!signed_in(&mut on_a).await, "and on A");
    assert!(pg_rows(&pg, "SELECT id_sha256 FROM console_sessions", 1).is_empty());
    drop(conn);

    // The database away: a clear 503, not the login page; back once it is.
    assert_eq!(on_a.login("admin", ADMIN_PW).await.status, 303);
    pg.stop().unwrap();
    let r = on_a.get("/").await;
    assert_eq!(r.status, 503, "{}", body(&r));
    assert!(
        body(&r).contains("console sessions cannot be reached"),
        "{}",
        body(&r)
    );
    pg.restart().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = on_a.get("/").await;
        if r.status == 200 {
            break;
        }
        assert_eq!(r.status, 503, "{}", body(&r));
        assert!(std::time::Instant::now() < deadline, "no reconnection");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    a.stop().await;
    b.stop().await;
}
