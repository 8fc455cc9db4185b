//! Whole-file parsing and validation.

use super::*;

const MINIMAL: &str = r#"
[gateway]
id = "gw-1"
data_dir = "var"
sending_facility = "HOSP-A"
[dicom]
ae_title = "READGATE"
listen = "0.0.0.0:11112"
[[dicom.peers]]
ae_title = "CT01"
[[destinations]]
id = "rc1"
facility = "RC1"
ae_title = "RC1PACS"
host = "127.0.0.1"
port = 11113
[[routes]]
destination = "rc1"
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("test.toml"))
}

#[test]
fn minimal_config_gets_defaults() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.dicom.stable_after_secs, 10);
    assert_eq!(c.dicom.duplicate_policy, DuplicatePolicy::Replace);
    assert_eq!(c.forward.max_attempts, 20);
}

#[test]
fn unknown_key_is_named() {
    let text = MINIMAL.replace("stable", "x").replace(
        "listen = \"0.0.0.0:11112\"",
        "listen = \"0.0.0.0:11112\"\nstabel_after_secs = 3",
    );
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("stabel_after_secs"), "{err}");
}

#[test]
fn bad_value_names_key() {
    let text = MINIMAL.replace("port = 11113", "port = \"eleven\"");
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("`destinations.port` (line 16)"), "{err}");
    let text = MINIMAL.replace("destination = \"rc1\"", "destination = \"rc9\"");
    let err = parse(&text).unwrap_err().to_string();
    assert!(
        err.contains("routes[0].destination") && err.contains("rc9"),
        "{err}"
    );
    let text = MINIMAL.replace("ae_title = \"CT01\"", "ae_title = \"A_TITLE_TOO_LONG_X\"");
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("dicom.peers[0].ae_title"), "{err}");
}

#[test]
fn audit_section() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.audit.syslog, None);
    assert_eq!(c.audit.app_name, "readgate");
    let with = |extra: &str| parse(&format!("{MINIMAL}\n[audit]\n{extra}"));
    let c = with("syslog = \"tcp://127.0.0.1:601\"\napp_name = \"rg-gw1\"").unwrap();
    assert_eq!(c.audit.syslog.as_deref(), Some("tcp://127.0.0.1:601"));
    for (extra, key) in [
        ("syslog = \"udp://x:514\"", "audit.syslog"),
        ("syslog = \"tcp://x\"", "audit.syslog"),
        ("syslog = \"tls://x:6514\"", "audit.tls_ca"),
        (
            "syslog = \"tls://x:6514\"\ntls_ca = \"/nonexistent/ca.pem\"",
            "audit.tls_ca",
        ),
        (
            "syslog = \"tcp://x:601\"\ntls_ca = \"ca.pem\"",
            "audit.tls_ca",
        ),
        ("tls_cert = \"c.pem\"", "audit.tls_key"),
        ("app_name = \"read gate\"", "audit.app_name"),
        ("retry_max_secs = 0", "audit.retry_max_secs"),
        ("sylog = \"tcp://x:601\"", "sylog"),
    ] {
        let err = with(extra).unwrap_err().to_string();
        assert!(err.contains(key), "{extra}: {err}");
    }
}

#[test]
fn shipped_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_CONFIG_PATH);
    let c = Config::load(&path).unwrap();
    assert_eq!(c.dicom.ae_title, "READGATE");
    assert_eq!(c.dicom.listen.port(), 11112);
    assert_eq!(c.destinations[0].port, 11113);
    assert_eq!(c.ledger.part_time_warning_percent, 20.0);
    assert_eq!(
        c.http.as_ref().map(|h| h.listen.port()),
        Some(8080),
        "shipped config serves HTTP on 8080"
    );
}

#[test]
fn ledger_and_http_keys_are_validated_by_name() {
    let c = parse(MINIMAL).unwrap();
    assert!(!c.ledger.full_time_remote_eligible);
    assert_eq!(c.ledger.part_time_critical_percent, 30.0);
    assert!(c.http.is_none());
    for (extra, key) in [
            ("[ledger]\npart_time_warning_percent = 120\n", "ledger.part_time_warning_percent"),
            ("[ledger]\npart_time_warning_percent = 40\n", "ledger.part_time_critical_percent"),
            ("[ledger]\nunchanged_similarity = 1.5\n", "ledger.unchanged_similarity"),
            ("[ledger]\nburst_count = 1\n", "ledger.burst_count"),
            ("[ledger]\nutc_offset = \"JST\"\n", "ledger.utc_offset"),
            ("[ledger]\nmin_open_sec = 5\n", "min_open_sec"),
            (
                "[[ledger.readers]]\nids = []\nname = \"a\"\nfacility = \"RC1\"\nemployment = \"full_time\"\n",
                "ledger.readers[0].ids",
            ),
            (
                "[[ledger.readers]]\nids = [\"1\"]\nname = \"a\"\nfacility = \"RC1\"\nemployment = \"boss\"\n",
                "employment",
            ),
            (
                "[[ledger.readers]]\nids = [\"1\"]\nname = \"a\"\nfacility = \"RC1\"\nemployment = \"trainee\"\nvalid_to = \"2026-02-30\"\n",
                "ledger.readers[0].valid_to",
            ),
            (
                "[[ledger.places]]\nfacility = \"RC1\"\nnetworks = [\"10.0.0.0/8\", \"10.0.0.0/33\"]\n",
                "ledger.places[0].networks[1]",
            ),
            (
                "[http]\n[[http.tokens]]\nname = \"v\"\ntoken_sha256 = \"abc\"\n",
                "http.tokens[0].token_sha256",
            ),
            ("[http]\nlisten = \"nowhere\"\n", "http.listen"),
        ] {
            let err = parse(&format!("{MINIMAL}{extra}")).unwrap_err().to_string();
            assert!(err.contains(key), "{extra}: {err}");
        }
}

#[test]
fn pacs_and_priors_keys_are_validated_by_name() {
    let pacs =
        "[[pacs]]\nid = \"main\"\nae_title = \"HOSPPACS\"\nhost = \"10.0.0.20\"\nport = 104\n";
    let c = parse(&format!("{MINIMAL}{pacs}")).unwrap();
    assert_eq!(
        (
            c.priors.refresh_secs,
            c.priors.retry_secs,
            c.priors.max_studies,
            c.priors.send_max
        ),
        (3600, 60, 10, 3)
    );
    assert_eq!(c.pacs[0].retrieve, crate::config::pacs::Retrieve::Get);
    assert!(c.destinations[0].send_priors);
    assert!(c.policy.priors.same_modality);
    for (extra, key) in [
        (format!("{pacs}{pacs}"), "pacs[1].id"),
        (
            pacs.replace("104", "104\ntimeout_secs = 0"),
            "pacs[0].timeout_secs",
        ),
        (
            pacs.replace("HOSPPACS", "A_TITLE_TOO_LONG_X"),
            "pacs[0].ae_title",
        ),
        (
            format!("{pacs}[priors]\nretry_secs = 0\n"),
            "priors.retry_secs",
        ),
        (
            format!("{pacs}[priors]\nmax_studies = 1\n[policy.priors]\nmost_recent_count = 2\n"),
            "priors.max_studies",
        ),
        (format!("{pacs}[priors]\nrefresh = 5\n"), "refresh"),
        (format!("{pacs}[priors]\nsend_max = 0\n"), "priors.send_max"),
        (pacs.replace("104", "104\nretrieve = \"find\""), "retrieve"),
        (
            "[policy.priors]\non_pacs_unreachable = \"ignore\"\n".to_string(),
            "on_pacs_unreachable",
        ),
    ] {
        let err = parse(&format!("{MINIMAL}{extra}")).unwrap_err().to_string();
        assert!(err.contains(key), "{key}: {err}");
    }
}

#[test]
fn expected_images_field_is_a_field_path_named_in_errors() {
    let hl7 = |extra: &str| format!("{MINIMAL}[hl7]\nlisten = \"127.0.0.1:2575\"\n{extra}");
    // Unset by default: the signal is off.
    let c = parse(&hl7("")).unwrap();
    assert_eq!(c.hl7.unwrap().expected_images_field, None);
    for (value, shown) in [
        ("OBR-46", "OBR-46"),
        ("OBR-46.2", "OBR-46.2"),
        ("ZDS-2.1.3", "ZDS-2.1.3"),
        (" IPC-9 ", "IPC-9"),
    ] {
        let c = parse(&hl7(&format!("expected_images_field = \"{value}\"\n"))).unwrap();
        let path = c.hl7.unwrap().expected_images_field.expect("set");
        assert_eq!(path.to_string(), shown);
    }
    let c = parse(&hl7("expected_images_field = \"OBR-46.2\"\n")).unwrap();
    assert_eq!(
        c.hl7.unwrap().expected_images_field,
        Some(FieldPath {
            segment: "OBR".into(),
            field: 46,
            component: Some(2),
            subcomponent: None
        })
    );
    for bad in [
        "OBR",
        "OBR-",
        "OBR-0",
        "obr-46",
        "OB-46",
        "OBRX-4",
        "1BR-4",
        "OBR-46.",
        "OBR-4.0",
        "OBR-4.2.1.1",
        "OBR-x",
        "OBR--3",
        "MSH-10",
        "OBR-46,2",
        "OBR-99999",
        "",
    ] {
        let err = parse(&hl7(&format!("expected_images_field = \"{bad}\"\n")))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`hl7.expected_images_field`") && err.contains("field path"),
            "{bad:?}: {err}"
        );
    }
    // Not a string at all.
    let err = parse(&hl7("expected_images_field = 46\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("`hl7.expected_images_field`"), "{err}");
}

#[test]
fn a_reload_applies_the_expected_images_field() {
    let hl7 = |extra: &str| format!("{MINIMAL}[hl7]\nlisten = \"127.0.0.1:2575\"\n{extra}");
    let running = parse(&hl7("")).unwrap();
    let new = parse(&hl7("expected_images_field = \"OBR-46\"\n")).unwrap();
    let merged = live::merge(&running, new);
    assert!(merged.restart_needed.is_empty(), "{merged:?}");
    assert_eq!(merged.applied, ["hl7"]);
    assert_eq!(
        merged
            .config
            .hl7
            .and_then(|h| h.expected_images_field)
            .map(|p| p.to_string())
            .as_deref(),
        Some("OBR-46")
    );
}

#[test]
fn the_database_is_sqlite_in_data_dir_unless_a_postgresql_url_is_given() {
    use crate::config::Database;
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.database(), Database::Sqlite(c.database_path()));
    let url = "postgresql://gw:secret@db.example:5432/readgate?sslmode=disable";
    let c = parse(&format!("{MINIMAL}\n[database]\nurl = \"{url}\"\n")).unwrap();
    assert_eq!(
        c.database(),
        Database::Postgres {
            url: url.into(),
            pool_size: 8
        }
    );
    for bad in ["mysql://db/readgate", "postgresql://db:notaport/readgate"] {
        let err = parse(&format!("{MINIMAL}\n[database]\nurl = \"{bad}\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("database.url"), "{bad}: {err}");
        assert!(!err.contains("secret"), "{err}");
    }
}

#[test]
fn the_database_settings_are_checked_naming_the_key() {
    for (extra, key) in [
        ("heartbeat_secs = 0", "database.heartbeat_secs"),
        (
            "heartbeat_secs = 10\nlease_secs = 20",
            "database.lease_secs",
        ),
        ("pool_size = 1", "database.pool_size"),
        ("pool_size = 1000", "database.pool_size"),
    ] {
        let err = parse(&format!("{MINIMAL}\n[database]\n{extra}\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(key), "{extra}: {err}");
    }
    let c = parse(&format!("{MINIMAL}\n[database]\npool_size = 2\n")).unwrap();
    assert_eq!(c.database.pool_size, 2);
}
