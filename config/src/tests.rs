// figment::Jail closures must return figment::Error, which is large; fine in tests.
#![allow(clippy::result_large_err)]

use std::path::{Path, PathBuf};

use figment::Jail;

use super::*;

fn config_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every settings file shipped under `config/` (the crate's own Cargo.toml aside).
fn shipped_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(config_dir())
        .expect("config dir is readable")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| {
            p.is_file()
                && p.file_name().is_some_and(|n| n != "Cargo.toml")
                && p.extension().is_some_and(|e| e == "toml" || e == "json")
        })
        .collect();
    files.sort();
    files
}

fn load_err(file: Option<&Path>) -> String {
    match Settings::load(file) {
        Ok(s) => panic!("expected an error, got {s:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn every_shipped_config_file_parses() {
    let files = shipped_files();
    assert!(
        files.iter().any(|f| f.ends_with("coffer.toml")),
        "config/coffer.toml must exist, found {files:?}"
    );
    Jail::expect_with(|_| {
        for file in &files {
            Settings::load(Some(file)).map_err(|e| format!("{}: {e}", file.display()))?;
        }
        Ok(())
    });
}

#[test]
fn shipped_coffer_toml_states_the_defaults() {
    Jail::expect_with(|_| {
        let loaded =
            Settings::load(Some(&config_dir().join("coffer.toml"))).map_err(|e| e.to_string())?;
        assert_eq!(loaded, Settings::default());
        Ok(())
    });
}

/// Every key of the tree, optional ones included, appears in `config/coffer.toml`
/// (commented out when its default is derived), so the file documents everything.
#[test]
fn shipped_coffer_toml_documents_every_key() {
    let text = std::fs::read_to_string(config_dir().join("coffer.toml")).expect("read coffer.toml");
    let mut full = Settings::default();
    full.database.url = Some(String::new());
    full.storage.root = Some(PathBuf::new());
    full.storage.endpoint = Some(String::new());
    full.storage.bucket = Some(String::new());
    full.storage.credentials_file = Some(PathBuf::new());
    full.storage.access_key_id = Some(String::new());
    full.storage.secret_access_key = Some(Secret::new(""));
    full.security.encryption_key_file = Some(PathBuf::new());
    full.security.session_key_file = Some(PathBuf::new());
    full.alerts.webhook_url = Some(String::new());
    let value = figment::value::Value::serialize(&full).expect("serialize settings");
    let dict = value.into_dict().expect("settings serialize to a table");
    let mut missing = Vec::new();
    for (key, value) in dict {
        match value.into_dict() {
            Some(section) => {
                if !text.contains(&format!("[{key}]")) {
                    missing.push(format!("[{key}]"));
                }
                for sub in section.keys() {
                    let documented = text.lines().any(|l| {
                        let l = l.trim_start_matches(['#', ' ']);
                        l.starts_with(&format!("{sub} =")) || l.starts_with(&format!("{sub}="))
                    });
                    if !documented {
                        missing.push(format!("{key}.{sub}"));
                    }
                }
            }
            None => {
                if !text.lines().any(|l| l.starts_with(&format!("{key} ="))) {
                    missing.push(key);
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "config/coffer.toml does not document: {missing:?}"
    );
}

#[test]
fn no_file_and_no_environment_gives_defaults() {
    Jail::expect_with(|_| {
        assert_eq!(
            Settings::load(None).map_err(|e| e.to_string())?,
            Settings::default()
        );
        Ok(())
    });
}

#[test]
fn unknown_key_in_file_is_named() {
    Jail::expect_with(|jail| {
        jail.create_file("c.toml", "[server]\nprot = 9000\n")?;
        let err = load_err(Some(Path::new("c.toml")));
        assert!(
            err.contains("unknown configuration key `server.prot`"),
            "{err}"
        );
        assert!(err.contains("c.toml"), "names the file: {err}");
        Ok(())
    });
}

#[test]
fn unknown_top_level_key_and_section_are_named() {
    Jail::expect_with(|jail| {
        jail.create_file("a.toml", "colour = \"blue\"\n")?;
        assert!(load_err(Some(Path::new("a.toml"))).contains("`colour`"));
        jail.create_file("b.toml", "[servre]\nport = 1\n")?;
        assert!(load_err(Some(Path::new("b.toml"))).contains("`servre`"));
        Ok(())
    });
}

#[test]
fn unknown_key_in_environment_is_named() {
    Jail::expect_with(|jail| {
        jail.set_env("COFFER_SERVER__PROT", "9000");
        let err = load_err(None);
        assert!(err.contains("server.prot"), "{err}");
        Ok(())
    });
}

#[test]
fn foreign_coffer_variables_are_not_settings() {
    Jail::expect_with(|jail| {
        jail.set_env("COFFER_ADMIN_PASSWORD", "not-a-setting-at-all");
        jail.set_env("COFFER_TEST_POSTGRES_URL", "postgres://x");
        assert_eq!(
            Settings::load(None).map_err(|e| e.to_string())?,
            Settings::default()
        );
        Ok(())
    });
}

#[test]
fn environment_overrides_file() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "c.toml",
            "data_dir = \"/srv/file\"\n[server]\nport = 9100\nbind = \"0.0.0.0\"\n",
        )?;
        jail.set_env("COFFER_SERVER__PORT", "9200");
        jail.set_env("COFFER_DATA_DIR", "/srv/env");
        jail.set_env("COFFER_DATABASE__URL", "postgres://postgres@127.0.0.1/test");
        let s = Settings::load(Some(Path::new("c.toml"))).map_err(|e| e.to_string())?;
        assert_eq!(s.server.port, 9200);
        assert_eq!(s.server.bind, "0.0.0.0");
        assert_eq!(s.data_dir, PathBuf::from("/srv/env"));
        assert_eq!(s.database_url(), "postgres://postgres@127.0.0.1/test");
        Ok(())
    });
}

#[test]
fn brief_config_json_keeps_its_shape() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "config.json",
            r#"{
                "backup": {"encryption_enabled": true},
                "retention": {"max_backups": 10, "max_age_days": 30, "enabled": true},
                "quota": {"max_storage_mb": 500, "warning_threshold_mb": 400},
                "security": {"encryption_key_file": "./config/secret.key", "session_timeout_hours": 24}
            }"#,
        )?;
        let s = Settings::load(Some(Path::new("config.json"))).map_err(|e| e.to_string())?;
        assert_eq!(s.quota.max_storage_mb, 500);
        assert_eq!(s.quota.warning_threshold_mb, 400);
        assert_eq!(
            s.encryption_key_file(),
            PathBuf::from("./config/secret.key")
        );
        assert_eq!(s.server.port, 8001);
        Ok(())
    });
}

#[test]
fn wrong_type_is_named() {
    Jail::expect_with(|jail| {
        jail.create_file("c.toml", "[server]\nport = \"eighty\"\n")?;
        let err = load_err(Some(Path::new("c.toml")));
        assert!(err.contains("server.port"), "{err}");
        Ok(())
    });
}

#[test]
fn out_of_range_values_are_refused() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "q.toml",
            "[quota]\nmax_storage_mb = 100\nwarning_threshold_mb = 200\n",
        )?;
        assert!(load_err(Some(Path::new("q.toml"))).contains("quota.warning_threshold_mb"));
        jail.create_file("s.toml", "[security]\nsession_timeout_hours = 0\n")?;
        assert!(load_err(Some(Path::new("s.toml"))).contains("session_timeout_hours"));
        jail.create_file("d.toml", "[database]\nurl = \"mysql://x\"\n")?;
        assert!(load_err(Some(Path::new("d.toml"))).contains("database.url"));
        Ok(())
    });
}

#[test]
fn missing_file_is_an_error() {
    Jail::expect_with(|_| {
        assert!(load_err(Some(Path::new("nope.toml"))).contains("does not exist"));
        Ok(())
    });
}

#[test]
fn derived_paths_follow_data_dir() {
    let s = Settings {
        data_dir: PathBuf::from("/var/lib/coffer"),
        ..Settings::default()
    };
    assert_eq!(
        s.database_url(),
        "sqlite:///var/lib/coffer/coffer.db?mode=rwc"
    );
    assert_eq!(
        s.storage_root(),
        PathBuf::from("/var/lib/coffer/repository")
    );
    assert_eq!(
        s.encryption_key_file(),
        PathBuf::from("/var/lib/coffer/keys/master.key")
    );
}

#[test]
fn alerts_and_disk_settings_are_checked() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "ok.toml",
            "[alerts]\nwebhook_url = \"https://hooks.example.com/c?token=s3cret\"\n\
             [disk]\nwarning_free_mb = 100\nmin_free_mb = 100\n",
        )?;
        let s = Settings::load(Some(Path::new("ok.toml"))).map_err(|e| e.to_string())?;
        assert_eq!(
            s.alerts.webhook_url.as_deref(),
            Some("https://hooks.example.com/c?token=s3cret")
        );
        assert_eq!((s.disk.warning_free_mb, s.disk.min_free_mb), (100, 100));
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("s3cret"),
            "the token leaks through Debug: {shown}"
        );
        assert!(shown.contains("hooks.example.com"), "{shown}");

        for (i, url) in [
            "ftp://x/y",
            "hooks.example.com/x",
            "https://",
            "http:///x",
            "",
        ]
        .into_iter()
        .enumerate()
        {
            let name = format!("bad{i}.toml");
            jail.create_file(&name, &format!("[alerts]\nwebhook_url = \"{url}\"\n"))?;
            let err = load_err(Some(Path::new(&name)));
            assert!(err.contains("alerts.webhook_url"), "{url}: {err}");
        }
        jail.create_file("d.toml", "[disk]\nwarning_free_mb = 10\nmin_free_mb = 20\n")?;
        assert!(load_err(Some(Path::new("d.toml"))).contains("disk.min_free_mb"));
        jail.create_file("u.toml", "[alerts]\nwebhook = \"https://x\"\n")?;
        assert!(load_err(Some(Path::new("u.toml"))).contains("`alerts.webhook`"));
        jail.create_file("v.toml", "[disk]\nreserve_mb = 1\n")?;
        assert!(load_err(Some(Path::new("v.toml"))).contains("`disk.reserve_mb`"));
        Ok(())
    });
}

#[test]
fn alerts_and_disk_settings_come_from_the_environment() {
    Jail::expect_with(|jail| {
        jail.set_env("COFFER_ALERTS__WEBHOOK_URL", "http://10.0.0.5:8080/hook");
        jail.set_env("COFFER_DISK__MIN_FREE_MB", "0");
        let s = Settings::load(None).map_err(|e| e.to_string())?;
        assert_eq!(
            s.alerts.webhook_url.as_deref(),
            Some("http://10.0.0.5:8080/hook")
        );
        assert_eq!(s.disk.min_free_mb, 0);
        assert_eq!(s.disk.warning_free_mb, 5120);
        jail.set_env("COFFER_DISK__WARNING_FREE", "1");
        assert!(load_err(None).contains("disk.warning_free"));
        Ok(())
    });
}

#[test]
fn the_host_of_a_webhook_url() {
    for (url, host) in [
        ("https://hooks.example.com/a?b", Some("hooks.example.com")),
        ("http://user:pw@10.0.0.5:8080/x", Some("10.0.0.5:8080")),
        ("https://h#frag", Some("h")),
        ("https://", None),
        ("https://:80/x", None),
        ("ftp://h/x", None),
        ("h/x", None),
    ] {
        assert_eq!(url_host(url), host, "{url}");
    }
}

#[test]
fn replicas_take_the_keys_of_storage_and_are_checked() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "r.toml",
            "[[replicas]]\nname = \"nas\"\nstorage = { backend = \"fs\", root = \"/mnt/nas\" }\n\
             append_only = true\nschedule = \"0 2 * * *\"\nmax_lag_hours = 48\n\n\
             [[replicas]]\nname = \"usb\"\nstorage = { root = \"/media/usb\" }\n",
        )?;
        let s = Settings::load(Some(Path::new("r.toml"))).map_err(|e| e.to_string())?;
        assert_eq!(s.replicas.len(), 2);
        assert_eq!(s.replicas[0].name, "nas");
        assert_eq!(s.replicas[0].storage.backend, StorageBackend::Fs);
        assert_eq!(
            s.replicas[0].storage.root.as_deref(),
            Some(Path::new("/mnt/nas"))
        );
        assert!(s.replicas[0].append_only);
        assert_eq!(s.replicas[0].schedule.as_deref(), Some("0 2 * * *"));
        assert_eq!(s.replicas[0].max_lag_hours, Some(48));
        assert_eq!(s.replicas[0].max_lag_snapshots, None);
        assert!(!s.replicas[1].append_only);

        jail.create_file("dup.toml", "[[replicas]]\nname = \"a\"\nstorage = { root = \"/x\" }\n[[replicas]]\nname = \"a\"\nstorage = { root = \"/y\" }\n")?;
        assert!(load_err(Some(Path::new("dup.toml"))).contains("replicas[1].name"));
        jail.create_file(
            "rel.toml",
            "[[replicas]]\nname = \"a\"\nstorage = { root = \"relative\" }\n",
        )?;
        assert!(load_err(Some(Path::new("rel.toml"))).contains("replicas[0].storage.root"));
        jail.create_file(
            "typo.toml",
            "[[replicas]]\nname = \"a\"\nstorage = { root = \"/x\" }\nappend_onyl = true\n",
        )?;
        assert!(load_err(Some(Path::new("typo.toml"))).contains("append_onyl"));
        Ok(())
    });
}

#[test]
fn s3_storage_needs_a_bucket_and_credentials() {
    Jail::expect_with(|jail| {
        jail.create_file("c.toml", "[storage]\nbackend = \"s3\"\n")?;
        let err = load_err(Some(Path::new("c.toml")));
        assert!(err.contains("storage.bucket"), "{err}");
        jail.create_file(
            "c.toml",
            "[storage]\nbackend = \"s3\"\nbucket = \"coffer\"\n",
        )?;
        let err = load_err(Some(Path::new("c.toml")));
        assert!(err.contains("storage.credentials_file"), "{err}");
        jail.create_file(
            "c.toml",
            "[storage]\nbackend = \"s3\"\nbucket = \"Not_A_Bucket\"\ncredentials_file = \"k\"\n",
        )?;
        let err = load_err(Some(Path::new("c.toml")));
        assert!(err.contains("storage.bucket"), "{err}");
        jail.create_file(
            "c.toml",
            "[storage]\nbackend = \"s3\"\nbucket = \"coffer\"\nprefix = \"../x\"\ncredentials_file = \"k\"\n",
        )?;
        let err = load_err(Some(Path::new("c.toml")));
        assert!(err.contains("storage.prefix"), "{err}");
        jail.create_file(
            "c.toml",
            "[storage]\nbackend = \"s3\"\nbucket = \"coffer\"\nendpoint = \"ftp://x\"\ncredentials_file = \"k\"\n",
        )?;
        let err = load_err(Some(Path::new("c.toml")));
        assert!(err.contains("storage.endpoint"), "{err}");
        // Both keys from the environment are enough.
        jail.create_file(
            "c.toml",
            "[storage]\nbackend = \"s3\"\nbucket = \"coffer\"\n",
        )?;
        jail.set_env("COFFER_STORAGE__ACCESS_KEY_ID", "GKexample");
        jail.set_env("COFFER_STORAGE__SECRET_ACCESS_KEY", "s3cr3t-value");
        let settings = Settings::load(Some(Path::new("c.toml"))).map_err(|e| e.to_string())?;
        let credentials = settings
            .storage
            .credentials()
            .map_err(|e| e.to_string())?
            .expect("credentials");
        assert_eq!(credentials.access_key_id, "GKexample");
        assert_eq!(credentials.secret_access_key.expose(), "s3cr3t-value");
        // The secret never shows in a printed settings tree.
        let printed = format!("{settings:?}");
        assert!(!printed.contains("s3cr3t-value"), "{printed}");
        Ok(())
    });
}

#[test]
fn the_s3_secret_is_refused_in_a_configuration_file() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "c.toml",
            "[storage]\nbackend = \"s3\"\nbucket = \"coffer\"\naccess_key_id = \"GK1\"\nsecret_access_key = \"in-the-file\"\n",
        )?;
        let err = load_err(Some(Path::new("c.toml")));
        assert!(err.contains("storage.secret_access_key"), "{err}");
        assert!(!err.contains("in-the-file"), "{err}");
        Ok(())
    });
}

#[cfg(unix)]
#[test]
fn the_credentials_file_must_be_private_and_complete() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile_dir();
    let path = dir.join("s3.credentials");
    std::fs::write(
        &path,
        "# Garage key\n[default]\naws_access_key_id = GKabc\naws_secret_access_key = \"topsecret\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let storage = StorageSettings {
        backend: StorageBackend::S3,
        bucket: Some("coffer".into()),
        credentials_file: Some(path.clone()),
        ..StorageSettings::default()
    };
    let err = storage.credentials().unwrap_err().to_string();
    assert!(err.contains("chmod 600"), "{err}");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let credentials = storage.credentials().unwrap().unwrap();
    assert_eq!(credentials.access_key_id, "GKabc");
    assert_eq!(credentials.secret_access_key.expose(), "topsecret");
    std::fs::write(&path, "access_key_id = GKabc\nsecret topsecret\n").unwrap();
    let err = storage.credentials().unwrap_err().to_string();
    assert!(!err.contains("topsecret"), "{err}");
    std::fs::write(&path, "access_key_id = GKabc\n").unwrap();
    let err = storage.credentials().unwrap_err().to_string();
    assert!(err.contains("both"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

/// A fresh directory under the system's temporary directory (this crate has no
/// tempfile dependency).
fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "coffer-config-test-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn s3_replicas_take_their_keys_from_a_file_only() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "s3.toml",
            "[[replicas]]\nname = \"offsite\"\n\
             storage = { backend = \"s3\", bucket = \"coffer-copy\", region = \"garage\", \
             endpoint = \"http://127.0.0.1:3900\", prefix = \"nas1\", credentials_file = \"/etc/coffer/s3\" }\n",
        )?;
        let s = Settings::load(Some(Path::new("s3.toml"))).map_err(|e| e.to_string())?;
        assert_eq!(s.replicas[0].storage.backend, StorageBackend::S3);
        assert_eq!(s.replicas[0].storage.bucket.as_deref(), Some("coffer-copy"));
        jail.create_file(
            "keys.toml",
            "[[replicas]]\nname = \"offsite\"\n\
             storage = { backend = \"s3\", bucket = \"b\", access_key_id = \"x\", credentials_file = \"/etc/coffer/s3\" }\n",
        )?;
        let err = load_err(Some(Path::new("keys.toml")));
        assert!(err.contains("replicas[0].storage"), "{err}");
        jail.create_file(
            "nofile.toml",
            "[[replicas]]\nname = \"offsite\"\nstorage = { backend = \"s3\", bucket = \"b\" }\n",
        )?;
        let err = load_err(Some(Path::new("nofile.toml")));
        assert!(
            err.contains("replicas[0].storage.credentials_file"),
            "{err}"
        );
        jail.create_file(
            "badbucket.toml",
            "[[replicas]]\nname = \"offsite\"\nstorage = { backend = \"s3\", bucket = \"Bad_Bucket\", credentials_file = \"/etc/coffer/s3\" }\n",
        )?;
        let err = load_err(Some(Path::new("badbucket.toml")));
        assert!(err.contains("storage.bucket"), "{err}");
        Ok(())
    });
}

#[test]
fn email_settings_are_checked_and_the_password_never_comes_from_the_file() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "c.toml",
            "[notify.email]\nhost = \"smtp.example.com\"\nfrom = \"coffer@example.com\"\nto = [\"ops@example.com\"]\nusername = \"coffer\"\npassword = \"in-the-file\"\n",
        )?;
        let err = load_err(Some(Path::new("c.toml")));
        assert!(err.contains("notify.email.password"), "{err}");
        assert!(err.contains("COFFER_NOTIFY__EMAIL__PASSWORD"), "{err}");
        assert!(!err.contains("in-the-file"), "{err}");

        jail.create_file(
            "d.toml",
            "[notify.email]\nhost = \"smtp.example.com\"\nfrom = \"coffer@example.com\"\nto = []\n",
        )?;
        let err = load_err(Some(Path::new("d.toml")));
        assert!(err.contains("notify.email.to"), "{err}");

        jail.create_file(
            "e.toml",
            "[notify.email]\nhost = \"smtp.example.com\"\ntls = \"tls\"\nfrom = \"coffer@example.com\"\nto = [\"ops@example.com\"]\n",
        )?;
        jail.set_env("COFFER_NOTIFY__EMAIL__PASSWORD", "from-the-env");
        let err = load_err(Some(Path::new("e.toml")));
        assert!(err.contains("notify.email.username"), "{err}");
        jail.set_env("COFFER_NOTIFY__EMAIL__USERNAME", "coffer");
        let s = Settings::load(Some(Path::new("e.toml"))).expect("loads");
        let email = s.notify.email.expect("email");
        assert_eq!(email.port(), 465);
        assert_eq!(email.password().unwrap().unwrap().expose(), "from-the-env");
        assert!(!format!("{email:?}").contains("from-the-env"));
        assert_eq!(email.digest_time(), None);

        // A login without a password would log in with an empty one: refused.
        jail.create_file(
            "f.toml",
            "[notify.email]\nhost = \"smtp.example.com\"\nfrom = \"coffer@example.com\"\nto = [\"ops@example.com\"]\nusername = \"coffer\"\n",
        )?;
        jail.clear_env();
        let err = load_err(Some(Path::new("f.toml")));
        assert!(err.contains("needs a password"), "{err}");

        for (at, ok) in [
            ("07:00", Some((7, 0))),
            ("23:59", Some((23, 59))),
            ("7:00", None),
            ("24:00", None),
            ("07:60", None),
            ("noon", None),
        ] {
            jail.create_file(
                "g.toml",
                &format!("[notify.email]\nhost = \"smtp.example.com\"\nfrom = \"coffer@example.com\"\nto = [\"ops@example.com\"]\ndigest_at = \"{at}\"\n"),
            )?;
            if let Some(time) = ok {
                let s = Settings::load(Some(Path::new("g.toml"))).expect("loads");
                assert_eq!(s.notify.email.expect("email").digest_time(), Some(time));
            } else {
                let err = load_err(Some(Path::new("g.toml")));
                assert!(err.contains("notify.email.digest_at"), "{at}: {err}");
            }
        }
        Ok(())
    });
}

#[cfg(unix)]
#[test]
fn the_email_password_file_must_be_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile_dir();
    let path = dir.join("smtp-password");
    std::fs::write(&path, "hunter2\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let email = EmailSettings {
        host: "smtp.example.com".into(),
        port: None,
        tls: EmailTls::Starttls,
        username: Some("coffer".into()),
        password_file: Some(path.clone()),
        password: None,
        from: "coffer@example.com".into(),
        to: vec!["ops@example.com".into()],
        min_interval_minutes: 60,
        ca_file: None,
        digest_at: Some("07:30".into()),
    };
    let err = email.password().unwrap_err().to_string();
    assert!(
        err.contains("chmod 600") && !err.contains("hunter2"),
        "{err}"
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(email.password().unwrap().unwrap().expose(), "hunter2");
    assert_eq!(email.port(), 587);
}
