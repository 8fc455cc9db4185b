//! `readgate user add`: a console user's entry for `[[http.users]]`.

use super::*;

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Read a password (stdin, or a prompt without echo on a terminal) and print the
    /// `[[http.users]]` entry (argon2id hash) to add to the config. Writes nothing.
    Add {
        /// The user name typed at the console's login.
        name: String,
        /// `viewer` sees every page; `admin` also releases, rejects, re-evaluates and retries.
        #[arg(long, value_parser = ["viewer", "admin"])]
        role: String,
    },
}

fn read_password() -> anyhow::Result<String> {
    use std::io::{BufRead, IsTerminal};
    let stdin = std::io::stdin();
    let tty = stdin.is_terminal();
    let mut saved: Option<libc::termios> = None;
    if tty {
        eprint!("password: ");
        // SAFETY: termios is plain data; fd 0 is stdin, checked to be a terminal.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) == 0 {
                saved = Some(t);
                t.c_lflag &= !libc::ECHO;
                libc::tcsetattr(0, libc::TCSANOW, &t);
            }
        }
    }
    let mut line = String::new();
    let res = stdin.lock().read_line(&mut line);
    if let Some(t) = saved {
        // SAFETY: restores the settings read above.
        unsafe {
            libc::tcsetattr(0, libc::TCSANOW, &t);
        }
        eprintln!();
    }
    res.context("reading the password from stdin")?;
    let pw = line.trim_end_matches(['\n', '\r']).to_string();
    if pw.chars().count() < 8 {
        bail!("the password must have at least 8 characters");
    }
    Ok(pw)
}

pub(super) fn user(command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Add { name, role } => {
            let name = name.trim().to_string();
            if name.is_empty() || name.contains('"') || name.contains('\\') {
                bail!("NAME: expected a non-empty user name without quotes or backslashes");
            }
            let pw = read_password()?;
            let hash = crate::web::auth::hash_password(&pw)?;
            println!(
                "[[http.users]]\nname = \"{name}\"\nrole = \"{role}\"\npassword_hash = \"{hash}\""
            );
            Ok(())
        }
    }
}
