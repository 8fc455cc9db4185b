//! `readgate migrate [--dry-run]`: brings the configured database to this readgate's
//! schema version, saying what it finds, what it applies and what it reaches. `readgate
//! serve` refuses an older schema unless started with `--migrate`.

use super::*;
use crate::store::schema::{self, LATEST};

/// Runs `readgate migrate`; exit 0 when the database is (or would be) at [`LATEST`].
pub fn run(path: &std::path::Path, dry_run: bool) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    let db = config.database();
    let shown = match &db {
        crate::config::Database::Sqlite(path) => path.display().to_string(),
        crate::config::Database::Postgres { url, .. } => crate::db::redact_url(url),
    };
    if let crate::config::Database::Sqlite(path) = &db {
        if !path.exists() {
            println!(
                "no database at {shown} yet: nothing to migrate (`readgate serve` creates it at schema version {LATEST})"
            );
            return Ok(());
        }
    }
    // Read-only first: a database of a newer readgate is refused here, untouched.
    let found = Store::open_read_only_at(&db)?.schema_version()?;
    println!("database {shown}: schema version {found} (this readgate's: {LATEST})");
    if found == LATEST {
        println!("already current: nothing to apply");
        return Ok(());
    }
    if dry_run {
        println!("would apply:");
        for version in found + 1..=LATEST {
            println!("  migration {version}: {}", schema::description(version));
        }
        println!("would reach schema version {LATEST}; nothing was changed (--dry-run)");
        println!(
            "before applying: stop `readgate serve`, take a backup (`readgate backup DIR`, with the readgate that wrote this database), then run `readgate migrate`"
        );
        return Ok(());
    }
    let actor = format!("cli:{}", super::os_user());
    let mut applied = Vec::new();
    let store = Store::open_migrating_at(&db, &mut |version| {
        println!(
            "applied migration {version}: {}",
            schema::description(version)
        );
        applied.push(version);
    })?;
    let reached = store.schema_version()?;
    drop(store);
    // Each migration is evidence of a change to the data store: recorded once all have
    // committed (the trail's tables are those of migration 1).
    let audit = crate::audit::AuditLog::open_at(&db).context("opening the audit trail")?;
    let entries: Vec<_> = applied
        .iter()
        .map(|&version| crate::audit::NewEntry::schema_migrated(&actor, version))
        .collect();
    audit
        .append_batch(&entries)
        .context("recording the migrations in the audit trail")?;
    if applied.is_empty() && found == 0 {
        println!("the database was empty: created at schema version {reached}");
    } else if applied.is_empty() {
        // Another process migrated it between the look and the open.
        println!("already brought to schema version {reached} by another readgate");
    } else {
        println!("schema version {reached} reached");
    }
    Ok(())
}
