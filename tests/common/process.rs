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

/// Peak resident memory (VmHWM, KiB) of process `pid`.
pub fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

/// A synthetic instance of `mb` MB (sample-dicom/generate.py --big-instance), made once
/// in /tmp/readgate-bench-data and shared by the tests and benchmarks that need one.
pub fn big_instance(mb: u32) -> std::path::PathBuf {
    use std::path::PathBuf;
    let dir = PathBuf::from(format!("/tmp/readgate-bench-data/big-{mb}"));
    let file = dir.join(format!("BIG{mb}MB.dcm"));
    if !file.exists() {
        // Generated aside and renamed, so a concurrent run never reads half a file.
        let tmp = PathBuf::from(format!("{}.tmp-{}", dir.display(), std::process::id()));
        std::fs::create_dir_all(&tmp).expect("bench data dir");
        let status = std::process::Command::new("python3")
            .arg(super::repo_path("sample-dicom/generate.py"))
            .args(["--big-instance", &mb.to_string()])
            .arg(&tmp)
            .status()
            .expect("run generate.py");
        assert!(status.success(), "generate.py failed");
        if std::fs::rename(&tmp, &dir).is_err() {
            let _ = std::fs::remove_dir_all(&tmp); // another run was first
        }
        assert!(file.exists(), "no {}", file.display());
    }
    file
}
