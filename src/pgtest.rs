//! A throw-away PostgreSQL server for tests ([`TempPostgres`]): its own cluster in its own
//! directory, on its own TCP port of 127.0.0.1, removed when dropped.
//!
//! Used by unit tests in `src/` and by the integration tests in `tests/`
//! (`readgate::pgtest`). A test that needs PostgreSQL fails when the server binaries are
//! missing, in CI (`CI=true`) and everywhere else alike: it never skips.
//! `scripts/install-test-deps` installs Debian's `postgresql`.
//!
//! The server binaries are found on `PATH` (`initdb`, with `pg_ctl` and `postgres` beside
//! its real location), else in the highest `/usr/lib/postgresql/<version>/bin`. When the
//! test runs as root, `initdb` and `pg_ctl` (which refuse root) run as the `postgres` user
//! through `runuser`, and the directory is given to that user.
//!
//! The cluster: `initdb -A trust -E UTF8 --no-locale --no-sync -U readgate` (trust: no
//! password, the server only listens on 127.0.0.1 and on a socket in the private directory;
//! no locale: text sorts by byte, as SQLite's BINARY collation does), then
//! `fsync = on`: `--no-sync` only skips syncing initdb's own files, while the server
//! syncs its WAL for real, because the durability and cluster scenarios kill it and
//! count on what was committed. A database `readgate` owned by `readgate` is created.
//!
//! Starting and stopping block (`pg_ctl -w`, about a second); async tests may call them
//! directly, or through `spawn_blocking` when other tasks must go on meanwhile.

use std::io::ErrorKind;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The role and database every [`TempPostgres`] has.
pub const USER: &str = "readgate";
/// See [`USER`].
pub const DATABASE: &str = "readgate";
/// The unprivileged user the server runs as when the test runs as root.
const SERVER_USER: &str = "postgres";
/// How many fresh ports [`TempPostgres::start`] tries when another process took the one
/// it picked before the server could bind it.
const PORT_ATTEMPTS: usize = 8;

/// Why a temporary server could not be started, stopped or used.
#[derive(Debug, thiserror::Error)]
pub enum PgTestError {
    /// The server binaries are not installed (`scripts/install-test-deps`).
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH nor in \
         /usr/lib/postgresql/*/bin: run scripts/install-test-deps (Debian package postgresql)"
    )]
    NotFound,
    /// The test runs as root and there is no unprivileged user to run the server as.
    #[error("running as root and user {user} does not exist: PostgreSQL refuses to run as root")]
    NoServerUser { user: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    /// A command failed: its command line, exit status and standard error (and, for the
    /// server's start, the server's log).
    #[error("{command} failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    /// Creating the `readgate` database failed.
    #[error("create database {DATABASE}: {0}")]
    CreateDatabase(String),
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> PgTestError {
    let context = context.into();
    move |source| PgTestError::Io { context, source }
}

/// A PostgreSQL server of its own for one test: started by [`TempPostgres::start`],
/// stopped at once and its directory deleted on drop.
#[derive(Debug)]
pub struct TempPostgres {
    bin: PathBuf,
    /// The private directory: the data directory `data`, the server log and the socket.
    dir: PathBuf,
    port: u16,
    /// Runs `initdb`/`pg_ctl` as this user (`runuser -u`) when the test runs as root.
    run_as: Option<String>,
    running: bool,
}

impl TempPostgres {
    /// Makes a new cluster in a fresh directory and starts it on a free port of 127.0.0.1,
    /// with the database `readgate`.
    pub fn start() -> Result<TempPostgres, PgTestError> {
        TempPostgres::start_configured(None)
    }

    fn start_configured(tls: Option<(&str, &str)>) -> Result<TempPostgres, PgTestError> {
        let bin = find_bin_dir().ok_or(PgTestError::NotFound)?;
        let run_as = if is_root() {
            Some(SERVER_USER.to_string())
        } else {
            None
        };
        let dir = unique_dir()?;
        // From here on, Drop removes the directory (and stops the server) on every error.
        let mut pg = TempPostgres {
            bin,
            dir,
            port: 0,
            run_as,
            running: false,
        };
        if let Some(user) = &pg.run_as {
            chown(&pg.dir, user)?;
        }
        pg.initdb()?;
        if let Some((cert, key)) = tls {
            pg.set_tls(cert, key)?;
        }
        pg.start_on_free_port()?;
        pg.create_database()?;
        Ok(pg)
    }

    /// As [`TempPostgres::start`], with TLS on (`ssl = on`): the server presents the
    /// certificate chain `cert_pem` with the key `key_pem` (PEM text). Connections
    /// without TLS are still accepted, as a server that lets each client choose.
    pub fn start_with_tls(cert_pem: &str, key_pem: &str) -> Result<TempPostgres, PgTestError> {
        TempPostgres::start_configured(Some((cert_pem, key_pem)))
    }

    /// `postgresql://readgate@127.0.0.1:PORT/readgate`.
    pub fn url(&self) -> String {
        format!(
            "postgresql://{USER}@{}:{}/{DATABASE}",
            Ipv4Addr::LOCALHOST,
            self.port
        )
    }

    /// The TCP port the server listens on (the same across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The private directory (the data directory is its `data`, the server log `server.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server's log so far (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Whether the server is running (as far as this handle knows).
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// Stops the server cleanly (`pg_ctl stop -m fast`: open sessions are ended, a
    /// checkpoint is written). No-op when it is not running.
    pub fn stop(&mut self) -> Result<(), PgTestError> {
        self.stop_mode("fast")
    }

    /// Stops the server at once (`pg_ctl stop -m immediate`: no checkpoint; the next
    /// start recovers from the WAL, as after a crash). No-op when it is not running.
    pub fn kill(&mut self) -> Result<(), PgTestError> {
        self.stop_mode("immediate")
    }

    /// Stops the server (fast) if it runs and starts it again on the same port.
    pub fn restart(&mut self) -> Result<(), PgTestError> {
        self.stop()?;
        self.start_server()
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// A command for one of the server binaries, as the server user when running as root.
    fn command(&self, program: &str) -> Command {
        let exe = self.bin.join(program);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.arg("-u").arg(user).arg("--").arg(exe);
                c
            }
            None => Command::new(exe),
        };
        // The server user may not enter the test's working directory.
        cmd.current_dir(&self.dir);
        for var in [
            "PGDATA",
            "PGHOST",
            "PGHOSTADDR",
            "PGPORT",
            "PGUSER",
            "PGDATABASE",
            "PGOPTIONS",
            "PGPASSWORD",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("LC_ALL", "C");
        cmd
    }

    fn initdb(&self) -> Result<(), PgTestError> {
        let mut cmd = self.command("initdb");
        cmd.arg("-D")
            .arg(self.data_dir())
            .args(["-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync"])
            .args(["-U", USER]);
        run(cmd)?;
        // The settings every start uses; the port is given on pg_ctl's command line.
        let socket_dir = self.dir.to_string_lossy().replace('\'', "''");
        let settings = format!(
            "\n# readgate::pgtest\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{socket_dir}'\n\
             # Durability tests kill the server and count on committed data: real fsync.\n\
             fsync = on\n\
             synchronous_commit = on\n\
             full_page_writes = on\n\
             # Many servers run at once on a small machine.\n\
             shared_buffers = 16MB\n\
             max_connections = 50\n\
             log_min_messages = warning\n"
        );
        let conf = self.data_dir().join("postgresql.conf");
        let mut text =
            std::fs::read_to_string(&conf).map_err(io_err(format!("read {}", conf.display())))?;
        text.push_str(&settings);
        // Written by root in place keeps the file's owner (the server user).
        std::fs::write(&conf, text).map_err(io_err(format!("write {}", conf.display())))
    }

    /// Writes the server's certificate and key into the data directory (the key 0600 and,
    /// when running as root, both owned by the server user, as the server requires) and
    /// turns TLS on.
    fn set_tls(&self, cert: &str, key: &str) -> Result<(), PgTestError> {
        use std::os::unix::fs::PermissionsExt;
        for (name, text, mode) in [("server.crt", cert, 0o644), ("server.key", key, 0o600)] {
            let path = self.data_dir().join(name);
            std::fs::write(&path, text).map_err(io_err(format!("write {}", path.display())))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .map_err(io_err(format!("chmod {}", path.display())))?;
            if let Some(user) = &self.run_as {
                chown(&path, user)?;
            }
        }
        let conf = self.data_dir().join("postgresql.conf");
        let mut text =
            std::fs::read_to_string(&conf).map_err(io_err(format!("read {}", conf.display())))?;
        text.push_str("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        std::fs::write(&conf, text).map_err(io_err(format!("write {}", conf.display())))
    }

    /// Picks a free port (bind port 0), starts the server on it; when another process took
    /// the port meanwhile, tries again with a new one.
    fn start_on_free_port(&mut self) -> Result<(), PgTestError> {
        let mut last = None;
        for _ in 0..PORT_ATTEMPTS {
            self.port = free_port()?;
            match self.start_server() {
                Ok(()) => return Ok(()),
                Err(PgTestError::Command {
                    command,
                    status,
                    stderr,
                }) if port_taken(&stderr) => {
                    last = Some(PgTestError::Command {
                        command,
                        status,
                        stderr,
                    });
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(PgTestError::NotFound))
    }

    fn start_server(&mut self) -> Result<(), PgTestError> {
        if self.running {
            return Ok(());
        }
        let log_start = std::fs::metadata(self.log_path())
            .map(|m| m.len())
            .unwrap_or(0);
        let mut cmd = self.command("pg_ctl");
        cmd.arg("start")
            .arg("-w")
            .args(["-t", "60"])
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.log_path())
            .arg("-o")
            .arg(format!("-p {}", self.port));
        match run(cmd) {
            Ok(_) => {
                self.running = true;
                Ok(())
            }
            Err(PgTestError::Command {
                command,
                status,
                stderr,
            }) => {
                // pg_ctl only says "examine the log output": add this start's log.
                let log = self.log();
                let this_start = log.get(log_start as usize..).unwrap_or(&log);
                // A failed start may still have left a postmaster behind (timeout).
                self.running = true;
                let _ = self.stop_mode("immediate");
                Err(PgTestError::Command {
                    command,
                    status,
                    stderr: format!("{stderr}\nserver log:\n{this_start}"),
                })
            }
            Err(e) => Err(e),
        }
    }

    fn stop_mode(&mut self, mode: &str) -> Result<(), PgTestError> {
        if !self.running {
            return Ok(());
        }
        let mut cmd = self.command("pg_ctl");
        cmd.arg("stop")
            .arg("-w")
            .args(["-t", "60"])
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", mode]);
        match run(cmd) {
            Ok(_) => {
                self.running = false;
                Ok(())
            }
            // No server there (it was never up, or died): stopped all the same.
            Err(PgTestError::Command { .. })
                if !self.data_dir().join("postmaster.pid").exists() =>
            {
                self.running = false;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// `CREATE DATABASE readgate` over TCP, on a runtime of its own in a thread of its
    /// own (so that it works whether or not the caller is inside a tokio runtime).
    fn create_database(&self) -> Result<(), PgTestError> {
        let url = format!(
            "postgresql://{USER}@{}:{}/postgres",
            Ipv4Addr::LOCALHOST,
            self.port
        );
        let job = move || -> Result<(), String> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .map_err(|e| e.to_string())?;
                let conn = tokio::spawn(conn);
                client
                    .batch_execute(&format!("CREATE DATABASE {DATABASE} OWNER {USER}"))
                    .await
                    .map_err(|e| e.to_string())?;
                drop(client);
                let _ = conn.await;
                Ok(())
            })
        };
        std::thread::spawn(job)
            .join()
            .map_err(|_| PgTestError::CreateDatabase("the thread panicked".into()))?
            .map_err(PgTestError::CreateDatabase)
    }

    /// Last resort when `pg_ctl stop` failed: SIGKILL the postmaster named in
    /// `postmaster.pid` (its children exit when they see it gone).
    fn kill_postmaster(&self) {
        let Ok(text) = std::fs::read_to_string(self.data_dir().join("postmaster.pid")) else {
            return;
        };
        if let Some(pid) = text
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<i32>().ok())
        {
            if pid > 0 {
                // SAFETY: kill(2) with a pid read from the server's own pid file.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        if self.running && self.stop_mode("immediate").is_err() {
            self.kill_postmaster();
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs a command to its end; a non-zero exit is an error with its standard error.
fn run(mut cmd: Command) -> Result<Output, PgTestError> {
    let line = command_line(&cmd);
    let out = cmd.output().map_err(io_err(format!("run {line}")))?;
    if out.status.success() {
        Ok(out)
    } else {
        let mut stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        let stdout = String::from_utf8_lossy(&out.stdout);
        if stderr.is_empty() {
            stderr = stdout.trim().to_string();
        }
        Err(PgTestError::Command {
            command: line,
            status: out.status.to_string(),
            stderr,
        })
    }
}

fn command_line(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}

/// Whether a failed start's output says the port was in use.
fn port_taken(stderr: &str) -> bool {
    stderr.contains("Address already in use") || stderr.contains("could not bind")
}

/// A port of 127.0.0.1 nothing listens on now (the OS's pick for port 0).
fn free_port() -> Result<u16, PgTestError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(io_err("bind 127.0.0.1:0 to pick a port"))?;
    let port = listener
        .local_addr()
        .map_err(io_err("the picked port"))?
        .port();
    Ok(port)
}

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

/// A new directory under the system's temporary directory, named after the process, the
/// time and a counter; `create_dir` (not `_all`) fails rather than share one.
fn unique_dir() -> Result<PathBuf, PgTestError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let base = std::env::temp_dir();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!(
            "readgate-pg-{}-{:x}-{n}",
            std::process::id(),
            nanos
        ));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err(format!("create {}", dir.display()))(e)),
        }
    }
}

/// Gives `dir` to `user` (the server user, when the test runs as root).
fn chown(dir: &Path, user: &str) -> Result<(), PgTestError> {
    let out = Command::new("id")
        .arg("-u")
        .arg(user)
        .output()
        .map_err(io_err("run id"))?;
    let uid: Option<u32> = String::from_utf8_lossy(&out.stdout).trim().parse().ok();
    let out = Command::new("id")
        .arg("-g")
        .arg(user)
        .output()
        .map_err(io_err("run id"))?;
    let gid: Option<u32> = String::from_utf8_lossy(&out.stdout).trim().parse().ok();
    let (Some(uid), Some(gid)) = (uid, gid) else {
        return Err(PgTestError::NoServerUser {
            user: user.to_string(),
        });
    };
    std::os::unix::fs::chown(dir, Some(uid), Some(gid))
        .map_err(io_err(format!("chown {} to {user}", dir.display())))
}

/// The directory of the server binaries: that of `initdb` on `PATH` (symlinks resolved,
/// so `/usr/local/bin/initdb -> /usr/lib/postgresql/15/bin/initdb` gives the latter),
/// else the highest `/usr/lib/postgresql/<version>/bin`.
fn find_bin_dir() -> Option<PathBuf> {
    let complete = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|b| is_executable(&dir.join(b)))
    };
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let initdb = dir.join("initdb");
        if !is_executable(&initdb) {
            continue;
        }
        if let Some(real) = std::fs::canonicalize(&initdb)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
        {
            if complete(&real) {
                return Some(real);
            }
        }
        if complete(&dir) {
            return Some(dir);
        }
    }
    let mut versions: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let version: Vec<u32> = name
                .split('.')
                .map(|p| p.parse().ok())
                .collect::<Option<_>>()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, bin)| complete(bin))
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn select_one(url: &str) -> i32 {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("connect {url}: {e}"));
        tokio::spawn(conn);
        let row = client.query_one("SELECT 1", &[]).await.unwrap();
        row.get(0)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_server_starts_restarts_and_is_gone_after_drop() {
        let mut pg = TempPostgres::start().unwrap_or_else(|e| panic!("{e}"));
        let url = pg.url();
        assert_eq!(
            url,
            format!("postgresql://readgate@127.0.0.1:{}/readgate", pg.port())
        );
        assert_eq!(select_one(&url).await, 1);

        // Committed before an immediate stop, there after the restart (fsync on).
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        let conn = tokio::spawn(conn);
        client
            .batch_execute("CREATE TABLE t (x BIGINT); INSERT INTO t VALUES (42)")
            .await
            .unwrap();
        let fsync: String = client.query_one("SHOW fsync", &[]).await.unwrap().get(0);
        assert_eq!(fsync, "on");
        pg.kill().unwrap();
        let _ = conn.await;
        assert!(!pg.is_running());
        assert!(tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .is_err());

        pg.restart().unwrap();
        let port = pg.port();
        assert_eq!(pg.url(), url, "same port after a restart");
        assert_eq!(select_one(&url).await, 1);
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        let x: i64 = client
            .query_one("SELECT x FROM t", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(x, 42);
        drop(client);

        // A clean restart as well.
        pg.restart().unwrap();
        assert_eq!(select_one(&url).await, 1);

        let dir = pg.dir().to_path_buf();
        assert!(dir.join("data/PG_VERSION").exists());
        drop(pg);
        assert!(!dir.exists(), "{} left behind", dir.display());
        TcpListener::bind((Ipv4Addr::LOCALHOST, port))
            .unwrap_or_else(|e| panic!("port {port} still taken after drop: {e}"));
    }

    #[test]
    fn servers_started_together_get_their_own_dirs_and_ports() {
        let handles: Vec<_> = (0..3)
            .map(|_| std::thread::spawn(|| TempPostgres::start().unwrap_or_else(|e| panic!("{e}"))))
            .collect();
        let servers: Vec<TempPostgres> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let mut ports: Vec<u16> = servers.iter().map(|s| s.port()).collect();
        ports.sort();
        ports.dedup();
        assert_eq!(ports.len(), 3);
        let mut dirs: Vec<&Path> = servers.iter().map(|s| s.dir()).collect();
        dirs.sort();
        dirs.dedup();
        assert_eq!(dirs.len(), 3);
    }

    #[test]
    fn a_taken_port_is_recognised_and_another_one_is_used() {
        let first = TempPostgres::start().unwrap_or_else(|e| panic!("{e}"));
        let mut second = TempPostgres::start().unwrap_or_else(|e| panic!("{e}"));
        second.stop().unwrap();
        second.port = first.port();
        let err = second.start_server().unwrap_err();
        match &err {
            PgTestError::Command { stderr, .. } => assert!(port_taken(stderr), "{err}"),
            other => panic!("{other}"),
        }
        assert!(!second.is_running());
        second.start_on_free_port().unwrap();
        assert_ne!(second.port(), first.port());
    }

    #[test]
    fn a_failing_command_reports_its_stderr() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo boom >&2; exit 3"]);
        match run(cmd) {
            Err(PgTestError::Command { stderr, status, .. }) => {
                assert_eq!(stderr, "boom");
                assert!(status.contains('3'), "{status}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_server_binaries_are_found() {
        let bin = find_bin_dir().expect("PostgreSQL server binaries");
        assert!(bin.join("pg_ctl").exists());
    }
}
