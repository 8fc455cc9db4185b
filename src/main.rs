fn main() -> std::process::ExitCode {
    match readgate::cli::main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("readgate: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
