//! Runs a command with a PostgreSQL server of its own: starts a throw-away server
//! (`readgate::pgtest::TempPostgres`: `initdb`/`pg_ctl` in a temporary directory, a free
//! port, as the `postgres` user when run as root), runs the command with
//! `READGATE_TEST_POSTGRES` set to its URL, stops and removes the server, and exits with
//! the command's status. `scripts/test` runs the integration suite again this way, so
//! that every test config gets a PostgreSQL database (`tests/common`: `suite_database`).
//!
//! `cargo run --example with_postgres -- cargo nextest run …`

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((program, rest)) = args.split_first() else {
        eprintln!("usage: with_postgres COMMAND [ARGS…]");
        return ExitCode::from(2);
    };
    let pg = match readgate::pgtest::TempPostgres::start() {
        Ok(pg) => pg,
        Err(e) => {
            eprintln!("with_postgres: cannot start PostgreSQL: {e}");
            return ExitCode::from(1);
        }
    };
    eprintln!("with_postgres: PostgreSQL at {} for: {program}", pg.url());
    let status = Command::new(program)
        .args(rest)
        .env("READGATE_TEST_POSTGRES", pg.url())
        .status();
    drop(pg); // stops the server and removes its directory
    match status {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(s) => ExitCode::from(u8::try_from(s.code().unwrap_or(1)).unwrap_or(1)),
        Err(e) => {
            eprintln!("with_postgres: cannot run {program}: {e}");
            ExitCode::from(1)
        }
    }
}
