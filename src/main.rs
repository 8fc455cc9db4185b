fn main() -> std::process::ExitCode {
    match readgate::cli::main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("readgate: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
