//! `readgate serve`: opens the store and spool, recovers from any earlier crash, and runs
//! the pipeline — receive → spool → study → decide → forward — until told to stop;
//! applies a changed configuration file when asked to reload (SIGHUP, `readgate reload`).

pub mod control;
pub mod reload;

use crate::config::{Config, Live};
use crate::decide::{Decide, Gate};
use crate::forward::Wakeups;
use crate::receive::{self, Receiver};
use crate::spool::Spool;
use crate::store::Store;
use crate::study::StudyStage;
use anyhow::Context as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tracing::{info, warn};

/// A running gateway (the daemon, or an instance inside a test).
pub struct Running {
    pub dicom_addr: SocketAddr,
    pub hl7_addr: Option<SocketAddr>,
    /// The HTTP server (`[http]`), if configured.
    pub http_addr: Option<SocketAddr>,
    pub store: Arc<Store>,
    pub audit: Arc<crate::audit::AuditLog>,
    /// The configuration in force; [`Running::reload`] replaces it.
    pub live: Live,
    /// The console and API, which keep users, tokens and the roster of their own.
    web: Option<Arc<crate::web::WebState>>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
    /// Wakes the decision stage (held studies are decided again after a reload).
    stored: Arc<Notify>,
    /// Changes the log filter when a reload changes `[log] level`.
    log_level: Option<reload::SetLogLevel>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    /// Ships the audit trail to the `[audit] syslog` collector, if configured.
    audit_sender: Option<crate::audit::syslog::Sender>,
    /// Stops this node's heartbeat, which then records it stopped (after the stages).
    node_stop: watch::Sender<bool>,
    node_task: Option<tokio::task::JoinHandle<()>>,
}

/// What the start does with a database of an older readgate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// Applies the migrations it needs ([`Store::open_migrating`]): tests, the demo,
    /// `readgate serve --migrate`.
    Migrate,
    /// Refuses it, naming `readgate migrate` ([`Store::open_current`]): `readgate serve`.
    RequireLatest,
}

/// Starts every stage; returns once the DICOM port is listening. Migrates the schema.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    start_with(config, None).await
}

/// The store, the spool and the audit trail, with whatever an earlier run left behind
/// cleaned up and re-indexed (blocking: file system and SQLite).
fn open_storage(
    config: &Config,
    schema: Schema,
) -> anyhow::Result<(Arc<Store>, Arc<Spool>, Arc<crate::audit::AuditLog>)> {
    let data_dir = &config.gateway.data_dir;
    crate::spool::private_dir(data_dir)
        .with_context(|| format!("cannot create data_dir {}", data_dir.display()))?;
    let db = config.database();
    if let crate::config::Database::Sqlite(path) = &db {
        private_database(path)?;
    }
    let mut migrated = Vec::new();
    let store = Arc::new(match schema {
        Schema::RequireLatest => Store::open_current_at(&db)?,
        Schema::Migrate => Store::open_migrating_at(&db, &mut |version| migrated.push(version))?,
    });
    let spool = Arc::new(
        Spool::open_for(
            &config.spool_dir(),
            config.storage.min_free_mb * 1024 * 1024,
            config.spool_node(),
        )
        .with_context(|| format!("cannot open the spool in {}", config.spool_dir().display()))?,
    );
    let partials = spool
        .clear_partials()
        .context("cleaning the spool's tmp/")?;
    if partials > 0 {
        info!(
            partials,
            "removed partial (never acknowledged) files left by an earlier run"
        );
    }
    crate::receive::recover(&spool, &store, config.dicom.duplicate_policy)
        .context("re-indexing spool files")?;
    let audit = Arc::new(crate::audit::AuditLog::open_at(&db).context("opening the audit trail")?);
    if !migrated.is_empty() {
        for &version in &migrated {
            info!(
                version,
                description = crate::store::schema::description(version),
                "applied schema migration (--migrate)"
            );
        }
        let entries: Vec<_> = migrated
            .iter()
            .map(|&version| crate::audit::NewEntry::schema_migrated("system", version))
            .collect();
        audit
            .append_batch(&entries)
            .context("recording the schema migrations in the audit trail")?;
    }
    let counts = store.count_by_state()?;
    info!(
        gateway = %config.gateway.id,
        data_dir = %data_dir.display(),
        studies = ?counts,
        "store opened"
    );

    Ok((store, spool, audit))
}

/// As [`start`], with another decision stage in place of plain routing.
pub async fn start_with(
    config: Config,
    decider: Option<Arc<dyn Decide>>,
) -> anyhow::Result<Running> {
    start_opts(config, decider, Schema::Migrate).await
}

/// As [`start_with`], doing `schema` with a database of an older readgate.
async fn start_opts(
    config: Config,
    decider: Option<Arc<dyn Decide>>,
    schema: Schema,
) -> anyhow::Result<Running> {
    let live = Live::new(config);
    let config = live.current();
    // Opening, migrating and re-indexing the spool can take a while on a large data
    // directory: it runs off the async workers like every other store call.
    let cfg = config.clone();
    let (store, spool, audit) = tokio::task::spawn_blocking(move || open_storage(&cfg, schema))
        .await
        .context("opening the store")??;

    // This process as a node: joined (refused when another live process has the same
    // gateway.id) and knowing whether it runs the timers before any stage starts.
    let node = crate::cluster::Node::new(&config, listens(&config));
    let joining = (node.clone(), store.clone());
    tokio::task::spawn_blocking(move || joining.0.join(&joining.1))
        .await
        .context("joining the cluster")?
        .context("joining the cluster ([gateway] id, [database])")?;
    let listener = TcpListener::bind(config.dicom.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen for DICOM on {} (dicom.listen)",
                config.dicom.listen
            )
        })?;
    let dicom_addr = listener.local_addr()?;
    let leadership = node.leadership();
    let audit_sender = crate::audit::syslog::Sender::start_from_config(
        &config,
        Some(Arc::new(move || leadership.leads())),
    )
    .map_err(|e| anyhow::anyhow!("audit syslog forwarding (audit.syslog): {e}"))?;
    let (shutdown, shutdown_rx) = watch::channel(false);
    let stored = Arc::new(Notify::new());
    let history = Arc::new(Notify::new());
    let wakeups = Arc::new(Wakeups::new(&config));
    let decider = decider.unwrap_or_else(|| Arc::new(Gate::new(live.clone())));
    let mut tasks = JoinSet::new();

    audit.record(
        crate::audit::NewEntry::new(crate::audit::kind::CONFIG_LOADED, "system").detail(serde_json::json!({
            "gateway": config.gateway.id,
            "sending_facility": config.gateway.sending_facility,
            "policy": {"id": config.policy.id, "version": config.policy.version},
            "destinations": config.destinations.iter().map(|d| serde_json::json!({"id": d.id, "facility": d.facility, "ae_title": d.ae_title})).collect::<Vec<_>>(),
        })),
    );
    audit.record(
        crate::audit::NewEntry::new(crate::audit::kind::APPLICATION_START, "system")
            .detail(serde_json::json!({"version": env!("CARGO_PKG_VERSION")})),
    );
    // readgate's own C-MOVEs: the PACS stores the priors back through the listener.
    let moves = Arc::new(crate::receive::moves::Moves::new(
        config.pacs.iter().map(|p| p.calling_ae(&config)).collect(),
    ));
    let receiver = Arc::new(Receiver {
        moves: moves.clone(),
        config: live.clone(),
        audit: audit.clone(),
        spool: spool.clone(),
        store: store.clone(),
        stored: stored.clone(),
        history: history.clone(),
        slots: Arc::new(tokio::sync::Semaphore::new(config.dicom.max_associations)),
        wakeups: wakeups.clone(),
    });
    if let Some(tls_listen) = config.dicom.tls_listen {
        let (Some(cert), Some(key)) = (&config.dicom.tls_cert, &config.dicom.tls_key) else {
            anyhow::bail!("dicom.tls_listen needs dicom.tls_cert and dicom.tls_key");
        };
        let tls =
            crate::tls::ServerTls::load(cert, key, config.dicom.tls_client_ca.as_deref(), &[])
                .map_err(|e| anyhow::anyhow!("dicom.tls_cert / tls_key / tls_client_ca: {e}"))?;
        let tls_listener = TcpListener::bind(tls_listen).await.with_context(|| {
            format!("cannot listen for DICOM TLS on {tls_listen} (dicom.tls_listen)")
        })?;
        info!(listen = %tls_listener.local_addr()?, mutual = config.dicom.tls_client_ca.is_some(), "readgate is receiving DICOM over TLS");
        tasks.spawn(receive::serve(
            tls_listener,
            receiver.clone(),
            shutdown_rx.clone(),
            Some(Arc::new(tls)),
        ));
    }
    tasks.spawn(receive::serve(
        listener,
        receiver,
        shutdown_rx.clone(),
        None,
    ));
    let stage = StudyStage {
        store: store.clone(),
        decider,
        stable_after: Duration::from_secs(config.dicom.stable_after_secs),
        stored: stored.clone(),
        wakeups: wakeups.clone(),
        notify: crate::study::Notifications {
            gateway: config.gateway.id.clone(),
            webhook: crate::notify::Webhook::from_config(&config.notify),
            audit: Some(audit.clone()),
            config: Some(live.clone()),
        },
        node: node.clone(),
    };
    tasks.spawn(stage.run(shutdown_rx.clone()));
    let prior_cache = if config.pacs.is_empty() {
        None
    } else {
        let (cfg, st, au, mv, re) = (
            live.clone(),
            store.clone(),
            audit.clone(),
            moves.clone(),
            stored.clone(),
        );
        let cache = tokio::task::spawn_blocking(move || {
            crate::priors::cache::PriorCache::open(cfg, st, au, mv, re)
        })
        .await
        .context("opening the priors cache")?
        .with_context(|| {
            format!(
                "cannot prepare {} (retrieved priors)",
                config.gateway.data_dir.join("priors").display()
            )
        })?;
        Some(Arc::new(cache))
    };
    if let Some(cache) = &prior_cache {
        let answered = Arc::new(Notify::new());
        let lookup = crate::priors::lookup::Lookup {
            config: live.clone(),
            store: store.clone(),
            audit: audit.clone(),
            wanted: history.clone(),
            reconsider: stored.clone(),
            answered: answered.clone(),
        };
        tasks.spawn(lookup.run(shutdown_rx.clone()));
        let prefetch = crate::priors::prefetch::Prefetch {
            config: live.clone(),
            store: store.clone(),
            cache: cache.clone(),
            wanted: answered,
        };
        tasks.spawn(prefetch.run(shutdown_rx.clone()));
        info!(
            pacs = config.pacs.len(),
            "readgate asks the hospital PACS for patients' prior studies"
        );
    }
    let hl7_addr = match &config.hl7 {
        Some(hl7) => {
            let listener = TcpListener::bind(hl7.listen)
                .await
                .with_context(|| format!("cannot listen for HL7 on {} (hl7.listen)", hl7.listen))?;
            let addr = listener.local_addr()?;
            let disk = crate::intake::DiskBounds {
                spool: spool.clone(),
                quarantine_bytes: hl7.quarantine_max_mb.saturating_mul(1024 * 1024),
                quarantine_ms: i64::try_from(hl7.quarantine_days.saturating_mul(86_400_000))
                    .unwrap_or(i64::MAX),
                audit: Some(audit.clone()),
            };
            let intake =
                crate::intake::Intake::start(store.clone(), stored.clone(), history.clone(), disk);
            let state = Arc::new(
                crate::intake::listener::Listener::new(hl7.clone(), intake).following(live.clone()),
            );
            if let Some(tls_listen) = hl7.tls_listen {
                let (Some(cert), Some(key)) = (&hl7.tls_cert, &hl7.tls_key) else {
                    anyhow::bail!("hl7.tls_listen needs hl7.tls_cert and hl7.tls_key");
                };
                let tls = crate::tls::server_config_for_clients(
                    cert,
                    key,
                    hl7.tls_client_ca.as_deref(),
                    &[],
                )
                .map_err(|e| anyhow::anyhow!("hl7.tls_cert / tls_key / tls_client_ca: {e}"))?;
                let tls_listener = TcpListener::bind(tls_listen).await.with_context(|| {
                    format!("cannot listen for HL7 TLS on {tls_listen} (hl7.tls_listen)")
                })?;
                info!(listen = %tls_listener.local_addr()?, mutual = hl7.tls_client_ca.is_some(), "readgate is receiving HL7 (MLLP) over TLS");
                tasks.spawn(crate::intake::listener::serve(
                    tls_listener,
                    state.clone(),
                    shutdown_rx.clone(),
                    Some(tls),
                ));
            }
            tasks.spawn(crate::intake::listener::serve(
                listener,
                state,
                shutdown_rx.clone(),
                None,
            ));
            info!(listen = %addr, "readgate is receiving HL7 (MLLP)");
            Some(addr)
        }
        None => None,
    };
    let (http_addr, web) = match &config.http {
        Some(http) => {
            let state = Arc::new(
                crate::web::WebState::new(store.clone(), http, &config.ledger)
                    .context("loading the reading ledger's roster ([ledger])")?
                    .with_pipeline(&config, audit.clone(), stored.clone(), wakeups.clone()),
            );
            let (addr, task) = crate::web::start(http, state.clone(), shutdown_rx.clone()).await?;
            tasks.spawn(async move {
                let _ = task.await;
            });
            (Some(addr), Some(state))
        }
        None => (None, None),
    };
    let fleet = crate::forward::fleet::Fleet {
        live: live.clone(),
        store: store.clone(),
        spool: spool.clone(),
        wakeups: wakeups.clone(),
        audit: audit.clone(),
        priors: prior_cache.clone(),
        node: node.clone(),
    };
    tasks.spawn(fleet.run(shutdown_rx.clone()));
    // The heartbeat outlives the stages: leases are given back after the last delivery.
    let (node_stop, node_stop_rx) = watch::channel(false);
    let node_task = tokio::spawn(node.run(store.clone(), node_stop_rx));
    info!(
        ae_title = %config.dicom.ae_title,
        listen = %dicom_addr,
        destinations = config.destinations.len(),
        "readgate is receiving DICOM"
    );
    Ok(Running {
        dicom_addr,
        hl7_addr,
        audit,
        http_addr,
        live,
        web,
        reloading: tokio::sync::Mutex::new(()),
        stored,
        log_level: None,
        store,
        shutdown,
        tasks,
        audit_sender,
        node_stop,
        node_task: Some(node_task),
    })
}

/// Where this node listens, as `readgate nodes` shows it.
fn listens(config: &Config) -> String {
    let mut parts = vec![format!("dicom={}", config.dicom.listen)];
    if let Some(a) = config.dicom.tls_listen {
        parts.push(format!("dicom-tls={a}"));
    }
    if let Some(h) = &config.hl7 {
        parts.push(format!("hl7={}", h.listen));
    }
    if let Some(h) = &config.http {
        parts.push(format!("http={}", h.listen));
    }
    parts.join(" ")
}

impl Running {
    /// Stops accepting, lets in-flight work finish, and returns when every stage ended.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        let all = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(60), all)
            .await
            .is_err()
        {
            warn!("stages still busy 60 s after shutdown; stopping them");
            self.tasks.abort_all();
        }
        let audit = self.audit.clone();
        let _ = tokio::task::spawn_blocking(move || {
            audit.record(crate::audit::NewEntry::new(
                crate::audit::kind::APPLICATION_STOP,
                "system",
            ))
        })
        .await;
        // Last: whatever the stages recorded while stopping is still sent (bounded wait).
        if let Some(sender) = self.audit_sender.take() {
            let _ = tokio::task::spawn_blocking(move || sender.stop()).await;
        }
        // Last of all the node leaves: it held the timers (and shipped the trail) until now.
        let _ = self.node_stop.send(true);
        if let Some(node) = self.node_task.take() {
            let _ = node.await;
        }
    }
}

/// The database and its WAL files readable by readgate's user only (0600). A new
/// database file is created so before SQLite opens it: SQLite gives the WAL and shared
/// memory files the database file's permissions.
fn private_database(db: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(db)
        .with_context(|| format!("cannot create the database {}", db.display()))?;
    for suffix in ["", "-wal", "-shm"] {
        let path = std::path::PathBuf::from(format!("{}{suffix}", db.display()));
        if path.exists() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("cannot restrict {}", path.display()))?;
        }
    }
    Ok(())
}

/// The daemon: runs until SIGTERM or Ctrl-C; reloads `path` on SIGHUP and when
/// `readgate reload` asks (the control socket).
pub async fn serve(
    config: Config,
    path: &std::path::Path,
    log_level: Option<reload::SetLogLevel>,
    schema: Schema,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    // Handlers first: a SIGTERM that arrives while starting must stop readgate cleanly,
    // not kill it with the default action; a SIGHUP must not kill it either.
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    // Whatever else readgate writes (exports, quarantine) is its user's alone too.
    // SAFETY: umask only sets the process's file mode creation mask.
    unsafe {
        libc::umask(0o077);
    }
    let data_dir = config.gateway.data_dir.clone();
    let mut running = start_opts(config, None, schema).await?;
    if let Some(set) = log_level {
        running.on_log_level(set);
    }
    let control = control::Control::bind(&data_dir);
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = interrupt.recv() => break,
            _ = hangup.recv() => {
                info!(file = %path.display(), "SIGHUP: reloading the configuration");
                running.reload(path).await;
            }
            Ok(stream) = async {
                match &control {
                    Some(c) => c.accept().await,
                    None => std::future::pending().await,
                }
            } => control::answer(stream, &running, path).await,
        }
    }
    drop(control);
    info!("shutdown requested: finishing in-flight work");
    running.stop().await;
    info!("readgate stopped");
    Ok(())
}
