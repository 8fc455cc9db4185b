//! What the Debian package and the container image install: the packaged config passes
//! `readgate config-check` and is config/readgate.toml with its data under
//! /var/lib/readgate; the unit runs the packaged binary on the packaged config; every
//! asset of `[package.metadata.deb]` exists; the man pages in deploy/man are the ones the
//! CLI definitions give. `scripts/package-test` installs the package and runs it.

mod common;

use clap::CommandFactory;
use common::{readgate_bin, repo_path, run_ok};
use std::collections::BTreeMap;
use std::path::Path;

const PACKAGED_CONFIG: &str = "deploy/readgate.toml";
const UNIT: &str = "deploy/readgate.service";
const MAN_DIR: &str = "deploy/man";

#[test]
fn the_packaged_config_passes_config_check_with_its_data_in_var_lib() {
    let out = run_ok(
        readgate_bin()
            .args(["config-check", "--config"])
            .arg(repo_path(PACKAGED_CONFIG)),
        "readgate config-check deploy/readgate.toml",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(": valid"), "{text}");
    assert!(text.contains("data in /var/lib/readgate"), "{text}");
}

/// The packaged config is the shipped one but for its header and `data_dir`, so the two
/// cannot drift apart.
#[test]
fn the_packaged_config_is_the_shipped_one_with_another_data_dir() {
    fn body(path: &str) -> Vec<String> {
        let text = std::fs::read_to_string(repo_path(path)).expect(path);
        text.lines()
            .skip_while(|l| l.starts_with('#'))
            .map(|l| {
                if l.starts_with("data_dir = ") {
                    "data_dir = …".to_string()
                } else {
                    l.to_string()
                }
            })
            .collect()
    }
    assert_eq!(
        body(PACKAGED_CONFIG),
        body("config/readgate.toml"),
        "deploy/readgate.toml differs from config/readgate.toml in more than its header and \
         gateway.data_dir: make the same change in both"
    );
}

/// `Key=value` lines of the unit's `[Service]` section.
fn unit_service_keys() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(repo_path(UNIT)).expect(UNIT);
    let mut in_service = false;
    let mut keys = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_service = line == "[Service]";
        } else if in_service && !line.starts_with('#') {
            if let Some((k, v)) = line.split_once('=') {
                keys.insert(k.to_string(), v.to_string());
            }
        }
    }
    keys
}

#[test]
fn the_unit_checks_then_serves_the_packaged_config_as_readgate() {
    let keys = unit_service_keys();
    assert_eq!(
        keys.get("ExecStartPre").map(String::as_str),
        Some("/usr/bin/readgate config-check --config /etc/readgate/readgate.toml")
    );
    assert_eq!(
        keys.get("ExecStart").map(String::as_str),
        Some("/usr/bin/readgate serve --migrate --config /etc/readgate/readgate.toml")
    );
    assert_eq!(
        keys.get("ExecReload").map(String::as_str),
        Some("/usr/bin/readgate reload --config /etc/readgate/readgate.toml")
    );
    assert_eq!(keys.get("User").map(String::as_str), Some("readgate"));
    assert_eq!(
        keys.get("WorkingDirectory").map(String::as_str),
        Some("/var/lib/readgate")
    );
    assert_eq!(
        keys.get("ReadWritePaths").map(String::as_str),
        Some("/var/lib/readgate")
    );
}

#[test]
fn every_deb_asset_exists_and_the_unit_finds_what_the_package_installs() {
    let manifest: toml::Value =
        toml::from_str(&std::fs::read_to_string(repo_path("Cargo.toml")).expect("Cargo.toml"))
            .expect("Cargo.toml parses");
    let deb = &manifest["package"]["metadata"]["deb"];
    let assets = deb["assets"].as_array().expect("deb assets");
    let mut dests = Vec::new();
    for asset in assets {
        let a = asset.as_array().expect("[source, dest, mode]");
        let (source, dest) = (a[0].as_str().unwrap(), a[1].as_str().unwrap());
        dests.push((source.to_string(), dest.to_string()));
        if source.starts_with("target/release/") {
            continue; // built by cargo deb
        }
        let matches = match source.rsplit_once("/*") {
            // dir/*.ext
            Some((dir, ext)) => std::fs::read_dir(repo_path(dir))
                .expect(dir)
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(ext))
                .count(),
            None => usize::from(repo_path(source).is_file()),
        };
        assert!(matches > 0, "deb asset {source} matches no file");
    }
    let installs = |source: &str, dest: &str| dests.iter().any(|(s, d)| s == source && d == dest);
    assert!(installs("target/release/readgate", "usr/bin/readgate"));
    assert!(installs(PACKAGED_CONFIG, "etc/readgate/readgate.toml"));
    assert!(installs(UNIT, "lib/systemd/system/readgate.service"));
    let scripts = deb["maintainer-scripts"]
        .as_str()
        .expect("maintainer-scripts");
    for script in ["postinst", "prerm", "postrm"] {
        let path = repo_path(scripts).join(script);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).expect(script).permissions(),
        );
        assert!(mode & 0o111 != 0, "{} is not executable", path.display());
    }
}

/// deploy/man: one page per command, rendered from the clap definitions by clap_mangen;
/// readgate(1) also names the files the package installs.
fn man_pages() -> BTreeMap<String, Vec<u8>> {
    fn walk(cmd: clap::Command, pages: &mut BTreeMap<String, Vec<u8>>) {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            walk(sub.clone(), pages);
        }
        let top = cmd.get_name() == "readgate";
        // Every page's footer names the program and its version, not only readgate(1)'s.
        let man =
            clap_mangen::Man::new(cmd).source(format!("readgate {}", env!("CARGO_PKG_VERSION")));
        let mut page = Vec::new();
        if top {
            man.render_title(&mut page).unwrap();
            man.render_name_section(&mut page).unwrap();
            man.render_synopsis_section(&mut page).unwrap();
            man.render_description_section(&mut page).unwrap();
            man.render_options_section(&mut page).unwrap();
            man.render_subcommands_section(&mut page).unwrap();
            page.extend_from_slice(TOP_PAGE_EXTRA.as_bytes());
            man.render_version_section(&mut page).unwrap();
        } else {
            man.render(&mut page).unwrap();
        }
        pages.insert(man.get_filename(), page);
    }
    let mut cmd = readgate::cli::Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut pages = BTreeMap::new();
    walk(cmd, &mut pages);
    pages
}

const TOP_PAGE_EXTRA: &str = r#".SH FILES
.TP
\fI/etc/readgate/readgate.toml\fR
The configuration (root:readgate, 0640). Every subcommand reads it with
\fB\-\-config /etc/readgate/readgate.toml\fR; without the option,
\fIconfig/readgate.toml\fR under the working directory is read. Every key is documented in
\fI/usr/share/doc/readgate/README.md\fR ("Configuration reference").
.TP
\fI/var/lib/readgate\fR
gateway.data_dir of the packaged configuration: the spool and the SQLite database
(studies, queue, audit trail, reading ledger). Owned by the readgate user, mode 0700. The
package never removes it, not even on purge.
.TP
\fI/lib/systemd/system/readgate.service\fR
Runs \fBreadgate config\-check\fR, then \fBreadgate serve \-\-migrate\fR, as the readgate user. The
package does not enable it: edit the configuration, then
\fBsystemctl enable \-\-now readgate\fR.
.SH "SEE ALSO"
\fBreadgate\-doctor\fR(1), \fBreadgate\-config\-check\fR(1), \fBreadgate\-serve\fR(1),
\fBjournalctl\fR(1); \fI/usr/share/doc/readgate/README.md\fR
"#;

#[test]
fn man_pages_are_generated_from_the_cli() {
    let pages = man_pages();
    let dir = repo_path(MAN_DIR);
    if std::env::var_os("READGATE_WRITE_MAN").is_some() {
        write_man_pages(&dir, &pages);
    }
    let on_disk: BTreeMap<String, Vec<u8>> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".1"))
                .map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    (name, std::fs::read(e.path()).expect("man page"))
                })
                .collect()
        })
        .unwrap_or_default();
    let stale: Vec<&String> = pages
        .keys()
        .chain(on_disk.keys())
        .filter(|name| pages.get(*name) != on_disk.get(*name))
        .collect();
    assert!(
        stale.is_empty(),
        "deploy/man is out of date with the CLI ({stale:?}); regenerate it: \
         READGATE_WRITE_MAN=1 cargo test --test deploy man_pages"
    );
    assert!(pages.contains_key("readgate.1") && pages.contains_key("readgate-serve.1"));
}

fn write_man_pages(dir: &Path, pages: &BTreeMap<String, Vec<u8>>) {
    std::fs::create_dir_all(dir).expect("deploy/man");
    for entry in std::fs::read_dir(dir).expect("deploy/man").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".1") && !pages.contains_key(&name) {
            std::fs::remove_file(entry.path()).expect("remove a stale page");
        }
    }
    for (name, page) in pages {
        std::fs::write(dir.join(name), page).expect("write a man page");
    }
}
