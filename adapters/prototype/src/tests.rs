//! The archive reader on archives made here: plain and Fernet-encrypted zips, either
//! checksum, damage, a missing file, hostile names. The whole import against the
//! prototype's own generator is in `tests/tests/prototype_import.rs`.

use std::io::Write as _;

use aes::Aes128;
use base64::Engine as _;
use cbc::cipher::{Array, BlockModeEncrypt as _, KeyIvInit as _};
use hmac::{KeyInit as _, Mac as _};

use super::*;

const KEY: &str = "cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4=";

/// A Fernet token of `plain` under [`KEY`] (as Python's `Fernet.encrypt` makes one).
fn fernet_token(plain: &[u8]) -> Vec<u8> {
    let engine = base64::engine::general_purpose::URL_SAFE;
    let key = engine.decode(KEY).unwrap();
    let iv = [7u8; 16];
    let mut data = vec![0x80];
    data.extend_from_slice(&1_700_000_000u64.to_be_bytes());
    data.extend_from_slice(&iv);
    let pad = 16 - plain.len() % 16;
    let mut padded = plain.to_vec();
    padded.extend(std::iter::repeat_n(u8::try_from(pad).unwrap(), pad));
    let mut cipher = cbc::Encryptor::<Aes128>::new_from_slices(&key[16..], &iv).unwrap();
    for block in padded.chunks_exact(16) {
        let mut b = Array::from(<[u8; 16]>::try_from(block).unwrap());
        cipher.encrypt_block(&mut b);
        data.extend_from_slice(&b);
    }
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(&key[..16]).unwrap();
    mac.update(&data);
    data.extend_from_slice(&mac.finalize().into_bytes());
    engine.encode(&data).into_bytes()
}

fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut out);
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .last_modified_time(zip::DateTime::from_date_and_time(2025, 10, 2, 3, 4, 6).unwrap());
        for (name, body) in entries {
            if name.ends_with('/') {
                z.add_directory(*name, options).unwrap();
            } else {
                z.start_file(*name, options).unwrap();
                z.write_all(body).unwrap();
            }
        }
        z.finish().unwrap();
    }
    out.into_inner()
}

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

struct Fixture {
    _dir: tempfile::TempDir,
    installation: PrototypeInstallation,
}

fn installation(stored: &[u8], backup: PrototypeBackup) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("storage/backups")).unwrap();
    std::fs::create_dir_all(dir.path().join("config")).unwrap();
    std::fs::write(dir.path().join("config/secret.key"), KEY).unwrap();
    std::fs::write(
        dir.path().join("storage/backups").join(&backup.filename),
        stored,
    )
    .unwrap();
    let installation = PrototypeInstallation {
        dir: dir.path().to_string_lossy().into_owned(),
        database: String::new(),
        archives: dir
            .path()
            .join("storage/backups")
            .to_string_lossy()
            .into_owned(),
        key_file: Some(
            dir.path()
                .join("config/secret.key")
                .to_string_lossy()
                .into_owned(),
        ),
        fingerprint: "f".repeat(16),
        backups: vec![backup],
        users: Vec::new(),
        audit: Vec::new(),
        settings: PrototypeSettings::default(),
    };
    Fixture {
        _dir: dir,
        installation,
    }
}

fn backup(encrypted: bool, checksum: Option<String>) -> PrototypeBackup {
    PrototypeBackup {
        id: 4,
        filename: if encrypted {
            "backup_20251002_030406.zip.enc".into()
        } else {
            "backup_20251002_030406.zip".into()
        },
        size: 0,
        created_at: "2025-10-02T03:04:06".into(),
        status: "completed".into(),
        checksum,
        encrypted,
    }
}

/// One entry a source gave: path, whether a directory, content, time.
type Seen = (String, bool, Vec<u8>, DateTime<Utc>);

/// The entries a source gives.
fn read_all(source: &mut dyn TreeSource) -> Result<Vec<Seen>, TreeSourceError> {
    let mut seen = Vec::new();
    source.entries(&mut |entry, content| {
        let mut body = Vec::new();
        content.read_to_end(&mut body).unwrap();
        seen.push((entry.path.clone(), entry.dir, body, entry.mtime));
        Ok(())
    })?;
    Ok(seen)
}

const FILES: &[(&str, &[u8])] = &[
    ("empty-dir/", b""),
    ("report.txt", b"line 1\nline 2\n"),
    ("фото/снимок.jpg", b"\xff\xd8\xff binary"),
    ("empty.txt", b""),
];

#[test]
fn an_encrypted_archive_is_read_with_either_checksum() {
    let zip = zip_of(FILES);
    let token = fernet_token(&zip);
    for checksum in [sha(&zip), sha(&token), sha(&zip).to_uppercase()] {
        let f = installation(&token, backup(true, Some(checksum)));
        let mut source = PrototypeFiles.archive(&f.installation, &f.installation.backups[0]);
        let seen = read_all(source.as_mut()).unwrap();
        let names: Vec<_> = seen.iter().map(|e| (e.0.as_str(), e.1)).collect();
        assert_eq!(
            names,
            [
                ("empty-dir/", true),
                ("report.txt", false),
                ("фото/снимок.jpg", false),
                ("empty.txt", false)
            ]
        );
        assert_eq!(seen[1].2, b"line 1\nline 2\n");
        assert_eq!(seen[2].2, b"\xff\xd8\xff binary");
        assert_eq!(seen[1].3.to_rfc3339(), "2025-10-02T03:04:06+00:00");
    }
}

#[test]
fn a_plain_archive_is_read() {
    let zip = zip_of(FILES);
    let f = installation(&zip, backup(false, Some(sha(&zip))));
    let mut source = PrototypeFiles.archive(&f.installation, &f.installation.backups[0]);
    assert_eq!(read_all(source.as_mut()).unwrap().len(), 4);
}

#[test]
fn damage_a_wrong_checksum_or_a_missing_file_is_refused_before_any_entry() {
    let zip = zip_of(FILES);
    let token = fernet_token(&zip);
    let mut damaged = token.clone();
    let middle = damaged.len() / 2;
    damaged[middle] = if damaged[middle] == b'A' { b'B' } else { b'A' };
    let cases = [
        (damaged, Some(sha(&zip)), "does not authenticate"),
        (token.clone(), Some("0".repeat(64)), "matches neither"),
        (b"not a token".to_vec(), None, "not a Fernet token"),
    ];
    for (stored, checksum, expected) in cases {
        let f = installation(&stored, backup(true, checksum));
        let mut source = PrototypeFiles.archive(&f.installation, &f.installation.backups[0]);
        let mut entries = 0;
        let e = source
            .entries(&mut |_, _| {
                entries += 1;
                Ok(())
            })
            .unwrap_err();
        assert!(matches!(e, TreeSourceError::Refused(_)), "{e:?}");
        assert!(e.to_string().contains(expected), "{e}");
        assert!(e.to_string().contains("backup 4"), "{e}");
        assert_eq!(entries, 0, "nothing of a refused archive is given");
    }
    let f = installation(&token, backup(true, None));
    std::fs::remove_file(
        Path::new(&f.installation.archives).join(&f.installation.backups[0].filename),
    )
    .unwrap();
    let mut source = PrototypeFiles.archive(&f.installation, &f.installation.backups[0]);
    let e = read_all(source.as_mut()).unwrap_err();
    assert!(e.to_string().contains("missing"), "{e}");
}

#[test]
fn a_plain_file_that_is_no_zip_is_refused() {
    let f = installation(b"hello, not a zip", backup(false, None));
    let mut source = PrototypeFiles.archive(&f.installation, &f.installation.backups[0]);
    let e = read_all(source.as_mut()).unwrap_err();
    assert!(matches!(e, TreeSourceError::Refused(_)), "{e:?}");
}

#[tokio::test]
async fn a_directory_without_the_prototypes_database_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let e = PrototypeFiles
        .read(&dir.path().to_string_lossy(), None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no database"), "{e}");
    std::fs::write(dir.path().join("other.db"), b"SQLite format 3\0 not really").unwrap();
    let e = PrototypeFiles
        .read(&dir.path().to_string_lossy(), Some("missing.db"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("does not exist"), "{e}");
    let e = PrototypeFiles
        .read(&dir.path().to_string_lossy(), None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("other.db"), "{e}");
}
