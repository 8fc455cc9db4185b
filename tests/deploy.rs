//! What the Debian package installs: the man pages in deploy/man are the ones the CLI
//! definitions give.

use clap::CommandFactory;
use std::collections::BTreeMap;
use std::path::Path;

const MAN_DIR: &str = "deploy/man";

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
Runs \fBreadgate config\-check\fR, then \fBreadgate serve\fR, as the readgate user. The
package does not enable it: edit the configuration, then
\fBsystemctl enable \-\-now readgate\fR.
.SH "SEE ALSO"
\fBreadgate\-doctor\fR(1), \fBreadgate\-config\-check\fR(1), \fBreadgate\-serve\fR(1),
\fBjournalctl\fR(1); \fI/usr/share/doc/readgate/README.md\fR
"#;

#[test]
fn man_pages_are_generated_from_the_cli() {
    let pages = man_pages();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(MAN_DIR);
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
