//! Running a program to its end: the readgate binary under test, DCMTK, python3, sqlite3.

use std::process::{Command, Output};

/// `readgate` (the binary under test), to be given its arguments.
pub fn readgate_bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_readgate"))
}

/// Runs `cmd` to its end and returns its output; panics naming `what` when it cannot be
/// started (the peers are installed by scripts/install-test-deps or .ci/run).
pub fn run_output(cmd: &mut Command, what: &str) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e} (is it installed?)"))
}

/// As [`run_output`], and asserts that it exited 0 ([`assert_success`]).
pub fn run_ok(cmd: &mut Command, what: &str) -> Output {
    let out = run_output(cmd, what);
    assert_success(&out, what);
    out
}

/// Asserts that the program behind `out` exited 0; the failure message names `what` and
/// shows the exit status, stdout and stderr.
pub fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Exit code (-1 when killed by a signal), stdout and stderr of `out`, as text.
pub fn code_stdout_stderr(out: &Output) -> (i32, String, String) {
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
