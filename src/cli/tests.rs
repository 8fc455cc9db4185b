//! The CLI's definitions, checked as clap reads them.

use super::Cli;
use clap::CommandFactory;

/// Every command and every argument, at every level, says what it is in `--help`: a
/// doc comment put above the wrong variant leaves one command without a line and
/// another with two.
#[test]
fn every_command_has_its_own_help_line() {
    fn walk(cmd: &clap::Command, path: &str, seen: &mut Vec<(String, String)>) {
        for sub in cmd.get_subcommands() {
            let path = format!("{path} {}", sub.get_name());
            let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
            assert!(!about.trim().is_empty(), "`{path}` has no help line");
            for arg in sub.get_arguments() {
                let id = arg.get_id().as_str();
                let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                assert!(
                    id == "help" || id == "version" || !help.trim().is_empty(),
                    "`{path}`'s argument {id} has no help line"
                );
            }
            seen.push((path.clone(), about));
            walk(sub, &path, seen);
        }
    }
    let cli = Cli::command();
    cli.clone().debug_assert();
    let mut seen = Vec::new();
    walk(&cli, "readgate", &mut seen);
    assert!(seen.len() > 20, "{seen:?}");
    // No help line holds another command's: the first sentence of each is its own.
    for (path, about) in &seen {
        for (other, other_about) in &seen {
            let first = other_about.split(". ").next().unwrap_or(other_about);
            if other != path && first.len() > 40 {
                assert!(
                    !about.contains(first),
                    "`{path}`'s help holds `{other}`'s: {about}"
                );
            }
        }
    }
}
