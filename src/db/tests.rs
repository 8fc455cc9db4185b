//! The database layer on a PostgreSQL server of its own (`pgtest`): statements held back
//! until the next answer is needed (`Conn::defer`, `BEGIN`, `SAVEPOINT`) fail their
//! transaction as if sent at once, and the store's pool hands out separate connections.

use super::{params, Conn, Pool};

fn count(conn: &Conn) -> Vec<i64> {
    conn.query_map("SELECT x FROM t ORDER BY x", [], |r| r.get(0))
        .unwrap()
}

/// A server of its own and a connection to it, with an empty table `t (x)`.
fn server_with_table() -> (crate::pgtest::TempPostgres, Conn) {
    let pg = crate::pgtest::TempPostgres::start().unwrap();
    let conn = Conn::postgres(&pg.url()).unwrap();
    conn.execute_batch("CREATE TABLE t (x BIGINT PRIMARY KEY)")
        .unwrap();
    (pg, conn)
}

#[test]
fn held_back_statements_fail_their_transaction_as_if_sent_at_once() {
    let (_pg, mut conn) = server_with_table();

    // A deferred statement that fails is reported by the commit, which commits nothing.
    let tx = conn.transaction().unwrap();
    tx.defer("INSERT INTO t VALUES (?1)", params![1i64])
        .unwrap();
    tx.defer("INSERT INTO t VALUES (?1)", params![1i64])
        .unwrap();
    let err = tx.commit().unwrap_err().to_string();
    assert!(err.contains("duplicate key"), "{err}");
    assert_eq!(count(&conn), Vec::<i64>::new());

    // Deferred statements are sent before the next statement that answers, in order.
    let tx = conn.transaction().unwrap();
    tx.defer("INSERT INTO t VALUES (?1)", params![2i64])
        .unwrap();
    assert_eq!(count(&tx), vec![2]);
    tx.commit().unwrap();

    // After a failed statement the commit is refused, not turned into a silent
    // ROLLBACK, even when the caller goes on.
    let tx = conn.transaction().unwrap();
    assert!(tx
        .execute("INSERT INTO t VALUES (?1)", params![2i64])
        .is_err());
    let err = tx.commit().unwrap_err().to_string();
    assert!(err.contains("rolled back"), "{err}");

    // A savepoint whose deferred statement fails is undone alone, at its release.
    let mut tx = conn.transaction().unwrap();
    let one = tx.savepoint().unwrap();
    one.defer("INSERT INTO t VALUES (?1)", params![3i64])
        .unwrap();
    one.release().unwrap();
    let two = tx.savepoint().unwrap();
    two.defer("INSERT INTO t VALUES (?1)", params![3i64])
        .unwrap();
    let err = two.release().unwrap_err().to_string();
    assert!(err.contains("duplicate key"), "{err}");
    tx.defer("INSERT INTO t VALUES (?1)", params![4i64])
        .unwrap();
    tx.commit().unwrap();
    assert_eq!(count(&conn), vec![2, 3, 4]);

    // A read after the commit sees what it committed; it is not run when a deferred
    // statement failed the commit.
    let tx = conn.transaction().unwrap();
    tx.defer("INSERT INTO t VALUES (?1)", params![7i64])
        .unwrap();
    let rows = tx
        .commit_then_query("SELECT COUNT(*) FROM t WHERE x = ?1", params![7i64])
        .unwrap()
        .unwrap();
    assert_eq!(rows[0].get::<_, i64>(0).unwrap(), 1);
    let tx = conn.transaction().unwrap();
    tx.defer("INSERT INTO t VALUES (?1)", params![7i64])
        .unwrap();
    let err = tx
        .commit_then_query("SELECT COUNT(*) FROM t", [])
        .unwrap_err()
        .to_string();
    assert!(err.contains("duplicate key"), "{err}");
    conn.execute("DELETE FROM t WHERE x = ?1", params![7i64])
        .unwrap();

    // A transaction dropped before its BEGIN went out leaves the connection usable.
    drop(conn.transaction().unwrap());
    let tx = conn.transaction().unwrap();
    tx.defer("INSERT INTO t VALUES (?1)", params![5i64])
        .unwrap();
    drop(tx);
    assert_eq!(count(&conn), vec![2, 3, 4]);
    assert_eq!(
        conn.execute("INSERT INTO t VALUES (?1)", params![6i64])
            .unwrap(),
        1
    );
}

#[test]
fn the_pool_gives_operations_in_progress_connections_of_their_own() {
    let pg = crate::pgtest::TempPostgres::start().unwrap();
    let pool = std::sync::Arc::new(Pool::postgres(&pg.url(), 3).unwrap());
    let all_in = std::sync::Arc::new(std::sync::Barrier::new(3));
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let (pool, all_in) = (pool.clone(), all_in.clone());
            std::thread::spawn(move || {
                let mut conn = pool.get();
                let tx = conn.transaction().unwrap();
                let pid: i64 = tx
                    .query_row("SELECT CAST(pg_backend_pid() AS BIGINT)", [], |r| r.get(0))
                    .unwrap();
                // All three hold their transaction open at once.
                all_in.wait();
                tx.commit().unwrap();
                pid
            })
        })
        .collect();
    let mut pids: Vec<i64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    pids.sort();
    pids.dedup();
    assert_eq!(pids.len(), 3, "three server processes: {pids:?}");
    // Given back: the next operation gets one of them.
    let pid: i64 = pool
        .get()
        .query_row("SELECT CAST(pg_backend_pid() AS BIGINT)", [], |r| r.get(0))
        .unwrap();
    assert!(pids.contains(&pid), "{pid} not in {pids:?}");
}

#[test]
fn a_transaction_whose_statement_found_no_connection_does_not_commit() {
    let (mut pg, mut conn) = server_with_table();
    let tx = conn.transaction().unwrap();
    tx.defer("INSERT INTO t VALUES (?1)", params![1i64])
        .unwrap();
    // The server is away when the transaction's first statements go out: they fail,
    // and with them the transaction, even once the server is back.
    pg.stop().unwrap();
    assert!(tx
        .execute("INSERT INTO t VALUES (?1)", params![2i64])
        .is_err());
    pg.restart().unwrap();
    assert!(tx.commit().is_err());
    assert_eq!(count(&conn), Vec::<i64>::new());
}
