//! `readgate doctor`: what to run before go-live and at 3 a.m. One line per check — the
//! config, the data directory (owner, mode, free space against `storage.min_free_mb`), the
//! clock (NTP, where systemd says), a C-ECHO to every destination and PACS with its
//! round-trip time, readgate's own listeners, the TLS certificates' expiry, the audit
//! chain, the queue and the oldest held study — as a table (coloured on a terminal) or
//! JSON for monitoring. Exits 1 when any check fails; warnings do not fail it.

use crate::audit::AuditLog;
use crate::config::Config;
use crate::dicom::dimse::{self, Command as Dimse, CommandBuilder};
use crate::store::Store;
use dicom_ul::pdu::{PDataValue, PDataValueType};
use dicom_ul::{ClientAssociationOptions, Pdu};
use serde::Serialize;
use std::io::IsTerminal;
use std::path::Path;
use std::time::{Duration, Instant};

/// A certificate expiring sooner than this is a warning.
const EXPIRY_WARNING_DAYS: i64 = 30;
/// Longest wait for each C-ECHO and each listener.
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub check: String,
    pub outcome: Outcome,
    pub detail: String,
}

fn check(name: impl Into<String>, outcome: Outcome, detail: impl Into<String>) -> Check {
    Check {
        check: name.into(),
        outcome,
        detail: detail.into(),
    }
}

/// Runs every check for the config at `path`; prints them; the exit code.
pub fn run(path: &Path, format: super::Format) -> anyhow::Result<std::process::ExitCode> {
    let checks = match Config::load(path) {
        Err(e) => vec![check("config", Outcome::Fail, format!("{e:#}"))],
        Ok(config) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let mut checks = vec![check(
                "config",
                Outcome::Ok,
                format!("{} is valid", path.display()),
            )];
            checks.extend(local_checks(&config));
            checks.extend(runtime.block_on(network_checks(&config)));
            checks
        }
    };
    match format {
        super::Format::Json => println!("{}", serde_json::to_string_pretty(&checks)?),
        super::Format::Table => print_table(&checks),
    }
    Ok(if checks.iter().any(|c| c.outcome == Outcome::Fail) {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    })
}

fn print_table(checks: &[Check]) {
    let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let width = checks.iter().map(|c| c.check.len()).max().unwrap_or(0);
    for c in checks {
        let (word, code) = match c.outcome {
            Outcome::Ok => ("ok  ", "32"),
            Outcome::Warn => ("WARN", "33"),
            Outcome::Fail => ("FAIL", "31"),
        };
        let word = if colour {
            format!("\x1b[{code}m{word}\x1b[0m")
        } else {
            word.to_string()
        };
        println!("{word}  {:<width$}  {}", c.check, c.detail);
    }
    let failed = checks.iter().filter(|c| c.outcome == Outcome::Fail).count();
    let warned = checks.iter().filter(|c| c.outcome == Outcome::Warn).count();
    println!(
        "{} checks: {failed} failed, {warned} warnings",
        checks.len()
    );
}

/// What can be checked without the network.
fn local_checks(config: &Config) -> Vec<Check> {
    let mut out = vec![data_dir(config), clock()];
    out.extend(certificates(config));
    let db = config.database();
    let path = config.database_path();
    if config.database.url.is_none() && !path.exists() {
        out.push(check(
            "database",
            Outcome::Fail,
            format!(
                "no database at {} yet: has `readgate serve` run?",
                path.display()
            ),
        ));
        return out;
    }
    out.push(
        match AuditLog::open_read_only_at(&db).and_then(|log| log.verify()) {
            Ok(v) if v.finding.is_none() => check(
                "audit chain",
                Outcome::Ok,
                format!("{} entries verified", v.entries),
            ),
            Ok(v) => check(
                "audit chain",
                Outcome::Fail,
                format!("{:?} (`readgate audit verify` tells more)", v.finding),
            ),
            Err(e) => check("audit chain", Outcome::Fail, e.to_string()),
        },
    );
    match Store::open_read_only_at(&db) {
        Err(e) => out.push(check("database", Outcome::Fail, e.to_string())),
        Ok(store) => {
            out.push(match store.destination_stats() {
                Ok(stats) => {
                    let queued: i64 = stats.iter().map(|s| s.1).sum();
                    let instances: i64 = stats.iter().map(|s| s.2).sum();
                    check(
                        "queue",
                        Outcome::Ok,
                        format!("{queued} studies ({instances} instances) waiting to be sent"),
                    )
                }
                Err(e) => check("queue", Outcome::Fail, e.to_string()),
            });
            let held = store
                .count_by_state()
                .ok()
                .and_then(|c| {
                    c.iter()
                        .find(|(s, _)| *s == crate::model::StudyState::Held)
                        .map(|(_, n)| *n)
                })
                .unwrap_or(0);
            out.push(match store.oldest_held() {
                Ok(Some((uid, since))) => {
                    let hours = (crate::time::now_ms() - since) as f64 / 3_600_000.0;
                    check(
                        "held studies",
                        if hours > 24.0 {
                            Outcome::Warn
                        } else {
                            Outcome::Ok
                        },
                        format!("{held} held; the oldest for {hours:.1} h ({uid})"),
                    )
                }
                Ok(None) => check("held studies", Outcome::Ok, "none held"),
                Err(e) => check("held studies", Outcome::Fail, e.to_string()),
            });
        }
    }
    out
}

/// Owner, mode and free space of `gateway.data_dir`.
fn data_dir(config: &Config) -> Check {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = &config.gateway.data_dir;
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) => return check("data dir", Outcome::Fail, format!("{}: {e}", dir.display())),
    };
    let mode = meta.permissions().mode() & 0o777;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let free = free_bytes(dir);
    let floor = config.storage.min_free_mb.saturating_mul(1024 * 1024);
    let mut problems = Vec::new();
    if mode & 0o077 != 0 {
        problems.push(format!(
            "mode {mode:o} lets other users read patient data (want 700)"
        ));
    }
    // Run as root (`sudo readgate doctor`), the owner is readgate's system user: only
    // the mode is checked then.
    if me != 0 && meta.uid() != me {
        problems.push(format!(
            "owned by uid {}, not by this user ({me})",
            meta.uid()
        ));
    }
    let space = match free {
        Some(f) if f < floor => {
            problems.push(format!(
                "{} MiB free, under storage.min_free_mb = {}",
                f / (1024 * 1024),
                config.storage.min_free_mb
            ));
            String::new()
        }
        Some(f) => format!("{} MiB free", f / (1024 * 1024)),
        None => "free space unknown".into(),
    };
    if problems.is_empty() {
        check(
            "data dir",
            Outcome::Ok,
            format!("{} (mode {mode:o}, {space})", dir.display()),
        )
    } else {
        check(
            "data dir",
            Outcome::Fail,
            format!("{}: {}", dir.display(), problems.join("; ")),
        )
    }
}

fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs writes into the zeroed struct we own; the path is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// Whether systemd says the clock is NTP-synchronised (audit times and the ledger's
/// months depend on it). Unknown where `timedatectl` is missing: a warning.
fn clock() -> Check {
    let out = std::process::Command::new("timedatectl")
        .args(["show", "--property=NTPSynchronized", "--value"])
        .output();
    match out {
        Ok(o) if o.status.success() => match String::from_utf8_lossy(&o.stdout).trim() {
            "yes" => check("clock", Outcome::Ok, "NTP synchronised (timedatectl)"),
            other => check(
                "clock",
                Outcome::Warn,
                format!("NTP not synchronised (timedatectl: {other}): audit times may drift"),
            ),
        },
        _ => check(
            "clock",
            Outcome::Warn,
            "NTP state unknown (no timedatectl): check the host's time service",
        ),
    }
}

/// Every configured certificate: readable, and how long until it expires.
fn certificates(config: &Config) -> Vec<Check> {
    let mut files: Vec<(String, std::path::PathBuf)> = Vec::new();
    let mut add = |what: String, p: &Option<std::path::PathBuf>| {
        if let Some(p) = p {
            files.push((what, p.clone()));
        }
    };
    add("dicom.tls_cert".into(), &config.dicom.tls_cert);
    if let Some(h) = &config.hl7 {
        add("hl7.tls_cert".into(), &h.tls_cert);
    }
    if let Some(h) = &config.http {
        add("http.tls_cert".into(), &h.tls_cert);
    }
    for d in &config.destinations {
        add(format!("destination {} tls_cert", d.id), &d.tls_cert);
    }
    for p in &config.pacs {
        add(format!("pacs {} tls_cert", p.id), &p.tls_cert);
    }
    files
        .into_iter()
        .map(|(what, path)| expiry(&what, &path))
        .collect()
}

fn expiry(what: &str, path: &Path) -> Check {
    let name = format!("certificate {what}");
    let certs = match crate::tls::certificates(path) {
        Ok(c) => c,
        Err(e) => return check(name, Outcome::Fail, e.to_string()),
    };
    let Some(first) = certs.first() else {
        return check(name, Outcome::Fail, "no certificate");
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(first.as_ref()) else {
        return check(
            name,
            Outcome::Fail,
            format!("{}: not an X.509 certificate", path.display()),
        );
    };
    let not_after = cert.validity().not_after.timestamp();
    let days = (not_after - crate::time::now_ms() / 1000) / 86_400;
    let outcome = if not_after < crate::time::now_ms() / 1000 {
        Outcome::Fail
    } else if days < EXPIRY_WARNING_DAYS {
        Outcome::Warn
    } else {
        Outcome::Ok
    };
    let when = if not_after < crate::time::now_ms() / 1000 {
        format!("EXPIRED on {}", cert.validity().not_after)
    } else {
        format!("expires in {days} days ({})", cert.validity().not_after)
    };
    check(name, outcome, format!("{}: {when}", path.display()))
}

/// C-ECHO to every destination and PACS; readgate's own listeners accept connections.
async fn network_checks(config: &Config) -> Vec<Check> {
    let mut out = Vec::new();
    for d in &config.destinations {
        let tls = d.tls_client();
        let calling = d.calling_ae(config).to_string();
        out.push(
            echo(
                format!("C-ECHO destination {}", d.id),
                Peer {
                    host: &d.host,
                    port: d.port,
                    ae_title: &d.ae_title,
                    calling: &calling,
                    server_name: d.tls_name(),
                },
                tls,
            )
            .await,
        );
    }
    for p in &config.pacs {
        let calling = p.calling_ae(config);
        out.push(
            echo(
                format!("C-ECHO pacs {}", p.id),
                Peer {
                    host: &p.host,
                    port: p.port,
                    ae_title: &p.ae_title,
                    calling: &calling,
                    server_name: p.tls_name(),
                },
                p.tls_client(),
            )
            .await,
        );
    }
    let mut listeners = vec![("DICOM", config.dicom.listen)];
    if let Some(a) = config.dicom.tls_listen {
        listeners.push(("DICOM TLS", a));
    }
    if let Some(h) = &config.hl7 {
        listeners.push(("HL7 (MLLP)", h.listen));
        if let Some(a) = h.tls_listen {
            listeners.push(("HL7 TLS", a));
        }
    }
    if let Some(h) = &config.http {
        listeners.push(("HTTP", h.listen));
    }
    for (what, addr) in listeners {
        let name = format!("listener {what}");
        // A wildcard address is reached on loopback.
        let target = if addr.ip().is_unspecified() {
            std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
        } else {
            addr
        };
        out.push(
            match tokio::time::timeout(TIMEOUT, tokio::net::TcpStream::connect(target)).await {
                Ok(Ok(_)) => check(name, Outcome::Ok, format!("{addr} accepts connections")),
                Ok(Err(e)) => check(
                    name,
                    Outcome::Fail,
                    format!("{addr}: {e} (is readgate serve running?)"),
                ),
                Err(_) => check(
                    name,
                    Outcome::Fail,
                    format!("{addr}: no answer in {} s", TIMEOUT.as_secs()),
                ),
            },
        );
    }
    out
}

struct Peer<'a> {
    host: &'a str,
    port: u16,
    ae_title: &'a str,
    calling: &'a str,
    server_name: &'a str,
}

/// One C-ECHO (Verification) over its own association, plain or TLS; its round trip.
async fn echo(
    name: String,
    peer: Peer<'_>,
    tls: Result<Option<std::sync::Arc<rustls::ClientConfig>>, String>,
) -> Check {
    let addr = format!("{}:{}", peer.host, peer.port);
    let started = Instant::now();
    let options = ClientAssociationOptions::new()
        .calling_ae_title(peer.calling.to_string())
        .called_ae_title(peer.ae_title.to_string())
        .with_presentation_context(
            crate::dicom::VERIFICATION_SOP_CLASS,
            vec![crate::dicom::IMPLICIT_VR_LE],
        )
        .connection_timeout(TIMEOUT);
    let outcome = match tls {
        Err(e) => Err(e),
        Ok(None) => {
            match tokio::time::timeout(TIMEOUT, options.establish_async(addr.as_str())).await {
                Ok(Ok(a)) => verify(a).await,
                Ok(Err(e)) => Err(crate::dicom::error_chain(&e)),
                Err(_) => Err("association timed out".into()),
            }
        }
        Ok(Some(tls)) => {
            let options = options.tls_config(tls).server_name(peer.server_name);
            match tokio::time::timeout(TIMEOUT, options.establish_tls_async(addr.as_str())).await {
                Ok(Ok(a)) => verify(a).await,
                Ok(Err(e)) => Err(crate::dicom::error_chain(&e)),
                Err(_) => Err("association timed out".into()),
            }
        }
    };
    let ms = started.elapsed().as_millis();
    match outcome {
        Ok(()) => check(
            name,
            Outcome::Ok,
            format!("{}@{addr} answered in {ms} ms", peer.ae_title),
        ),
        Err(e) => check(
            name,
            Outcome::Fail,
            format!("{}@{addr}: {e}", peer.ae_title),
        ),
    }
}

/// Sends C-ECHO-RQ on the first accepted context and reads its status; releases.
async fn verify<S: crate::tls::Wire>(
    mut association: dicom_ul::association::client::AsyncClientAssociation<S>,
) -> Result<(), String> {
    let Some(context) = association
        .presentation_contexts()
        .iter()
        .find(|pc| pc.reason == dicom_ul::pdu::PresentationContextResultReason::Acceptance)
        .map(|pc| pc.id)
    else {
        return Err("Verification not accepted".into());
    };
    let rq = CommandBuilder::new()
        .uid(
            dimse::TAG_AFFECTED_SOP_CLASS,
            crate::dicom::VERIFICATION_SOP_CLASS,
        )
        .u16(dimse::TAG_COMMAND_FIELD, dimse::C_ECHO_RQ)
        .u16(dimse::TAG_MESSAGE_ID, 1)
        .u16(dimse::TAG_DATA_SET_TYPE, dimse::NO_DATA_SET)
        .encode();
    let pdu = Pdu::PData {
        data: vec![PDataValue {
            presentation_context_id: context,
            value_type: PDataValueType::Command,
            is_last: true,
            data: rq,
        }],
    };
    association.send(&pdu).await.map_err(|e| e.to_string())?;
    let mut command = Vec::new();
    loop {
        let pdu = tokio::time::timeout(TIMEOUT, association.receive())
            .await
            .map_err(|_| "no C-ECHO response in time".to_string())?
            .map_err(|e| e.to_string())?;
        let Pdu::PData { data } = pdu else {
            return Err(format!("unexpected {}", pdu.short_description()));
        };
        let mut last = false;
        for pdv in data {
            if command.len() + pdv.data.len() > 64 * 1024 {
                return Err("C-ECHO response over 64 KiB".into());
            }
            command.extend_from_slice(&pdv.data);
            last |= pdv.is_last;
        }
        if last {
            break;
        }
    }
    let rsp = Dimse::decode(&command).map_err(|e| e.to_string())?;
    let status = rsp
        .u16(dimse::TAG_STATUS)
        .map_err(|e| e.to_string())?
        .unwrap_or(0xFFFF);
    let _ = association.release().await;
    if status == dimse::status::SUCCESS {
        Ok(())
    } else {
        Err(format!("C-ECHO status {status:04X}"))
    }
}
