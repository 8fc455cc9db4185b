//! The control socket `readgate reload` talks to: `<gateway.data_dir>/control.sock`, a
//! Unix socket readable by readgate's user only (0600, in the 0700 data directory).
//!
//! One request per connection: the line `reload`, answered with one JSON line (a
//! [`Reloaded`]). Requests are served one at a time; a connection has 5 s to send its
//! line of at most 64 bytes.

use super::reload::Reloaded;
use super::Running;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tracing::{info, warn};

const MAX_REQUEST: u64 = 64;
const REQUEST_TIME: Duration = Duration::from_secs(5);

/// Where the control socket of the readgate serving `data_dir` is.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("control.sock")
}

/// The listening control socket; removed when dropped.
pub struct Control {
    listener: UnixListener,
    path: PathBuf,
}

impl Control {
    /// Listens on `data_dir`'s control socket. `None` (logged) when it cannot: SIGHUP
    /// still reloads then.
    pub fn bind(data_dir: &Path) -> Option<Control> {
        let path = socket_path(data_dir);
        if path.exists() {
            if std::os::unix::net::UnixStream::connect(&path).is_ok() {
                warn!(socket = %path.display(), "another readgate answers on this data directory's control socket; `readgate reload` reaches that one, use SIGHUP for this one");
                return None;
            }
            // Left by a readgate that did not stop cleanly.
            let _ = std::fs::remove_file(&path);
        }
        // Bound and restricted under a name of its own, then renamed into place: whoever
        // finds `control.sock` finds it listening and readgate's user's alone (between
        // bind and listen a client is refused; before the chmod, the umask decides).
        let fresh = path.with_extension(format!("sock.{}", std::process::id()));
        let _ = std::fs::remove_file(&fresh);
        match UnixListener::bind(&fresh) {
            Ok(listener) => {
                use std::os::unix::fs::PermissionsExt;
                let placed =
                    std::fs::set_permissions(&fresh, std::fs::Permissions::from_mode(0o600))
                        .and_then(|()| std::fs::rename(&fresh, &path));
                if let Err(e) = placed {
                    warn!(socket = %path.display(), error = %e, "cannot restrict the control socket; not using it");
                    let _ = std::fs::remove_file(&fresh);
                    return None;
                }
                info!(socket = %path.display(), "`readgate reload` and SIGHUP reload the configuration");
                Some(Control { listener, path })
            }
            Err(e) => {
                warn!(socket = %path.display(), error = %e, "no control socket (`readgate reload` will not reach this process; SIGHUP still reloads)");
                None
            }
        }
    }

    pub async fn accept(&self) -> std::io::Result<UnixStream> {
        self.listener.accept().await.map(|(s, _)| s)
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Answers one request on `stream`: a reload of `config_path`.
pub async fn answer(stream: UnixStream, running: &Running, config_path: &Path) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = tokio::io::BufReader::new(read.take(MAX_REQUEST));
    let request = tokio::time::timeout(REQUEST_TIME, reader.read_line(&mut line)).await;
    let reply = match request {
        Ok(Ok(_)) if line.trim() == "reload" => {
            serde_json::to_string(&running.reload(config_path).await)
                .unwrap_or_else(|e| format!("{{\"outcome\":\"error\",\"error\":\"{e}\"}}"))
        }
        Ok(Ok(_)) => {
            r#"{"outcome":"error","error":"unknown request; the only request is `reload`"}"#
                .to_string()
        }
        Ok(Err(e)) => {
            warn!(error = %e, "control socket: unreadable request");
            return;
        }
        Err(_) => {
            warn!("control socket: no request within 5 s; closed");
            return;
        }
    };
    let _ = write.write_all(format!("{reply}\n").as_bytes()).await;
    let _ = write.shutdown().await;
}

/// Why `readgate reload` got no answer.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    #[error("cannot reach readgate at {path} ({source}): is `readgate serve` running with this data directory? (`systemctl reload readgate` sends SIGHUP instead)")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("readgate at {path} did not answer: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("readgate at {path} answered something unexpected: {answer}")]
    Answer { path: PathBuf, answer: String },
}

/// Asks the readgate serving `data_dir` to reload its configuration file and returns
/// what it did (blocking; for the CLI).
pub fn ask_reload(data_dir: &Path, wait: Duration) -> Result<Reloaded, AskError> {
    use std::io::{BufRead, Write};
    let path = socket_path(data_dir);
    let io = |source| AskError::Io {
        path: path.clone(),
        source,
    };
    let mut stream =
        std::os::unix::net::UnixStream::connect(&path).map_err(|source| AskError::Connect {
            path: path.clone(),
            source,
        })?;
    stream.set_read_timeout(Some(wait)).map_err(io)?;
    stream.write_all(b"reload\n").map_err(io)?;
    let mut answer = String::new();
    // At most 1 MiB of answer.
    std::io::BufReader::new(std::io::Read::take(stream, 1024 * 1024))
        .read_line(&mut answer)
        .map_err(io)?;
    serde_json::from_str(answer.trim()).map_err(|_| AskError::Answer {
        path: path.clone(),
        answer: answer.trim().chars().take(500).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Once `control.sock` is there, it listens and is readgate's user's alone; nothing
    /// else is left in the data directory, and it goes with the listener.
    #[tokio::test(flavor = "multi_thread")]
    async fn the_socket_appears_listening_and_restricted() {
        let dir = tempfile::tempdir().unwrap();
        let path = socket_path(dir.path());
        let control = Control::bind(dir.path()).expect("bound");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        std::os::unix::net::UnixStream::connect(&path).expect("listening");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("control.sock")]);
        // A second readgate on the same data directory finds the first one answering.
        assert!(Control::bind(dir.path()).is_none());
        drop(control);
        assert!(!path.exists());
    }
}
