//! Test support (feature `test-support`): the S3 store that tests run against — the
//! Garage cluster `.ci/garage start` runs and names in `COFFER_TEST_S3_*`.

use crate::S3Options;

/// The bucket of `COFFER_TEST_S3_*`, under a prefix of its own for `test` (so tests and
/// runs never see each other's objects); `None` after printing why when the variables
/// are not set.
///
/// # Panics
/// When they are not set and `COFFER_TEST_REQUIRE_ALL=1` forbids skipping (CI), or when
/// only some of them are.
#[must_use]
pub fn s3_options(test: &str) -> Option<S3Options> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let Some(endpoint) = var("COFFER_TEST_S3_ENDPOINT") else {
        assert!(
            !std::env::var("COFFER_TEST_REQUIRE_ALL").is_ok_and(|v| v == "1"),
            "{test}: COFFER_TEST_S3_ENDPOINT is not set (start a cluster with \
             `.ci/garage start` and source its env file), and COFFER_TEST_REQUIRE_ALL=1 \
             forbids skipping"
        );
        eprintln!(
            "skipped: {test}: no S3 store (COFFER_TEST_S3_ENDPOINT unset; `.ci/garage start` \
             starts one)"
        );
        return None;
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    Some(S3Options {
        endpoint: Some(endpoint),
        bucket: var("COFFER_TEST_S3_BUCKET").expect("COFFER_TEST_S3_BUCKET"),
        region: var("COFFER_TEST_S3_REGION").unwrap_or_else(|| "garage".to_owned()),
        prefix: format!("t/{test}-{}-{nanos}", std::process::id()).replace("::", "-"),
        path_style: true,
        access_key_id: var("COFFER_TEST_S3_ACCESS_KEY_ID").expect("COFFER_TEST_S3_ACCESS_KEY_ID"),
        secret_access_key: var("COFFER_TEST_S3_SECRET_ACCESS_KEY")
            .expect("COFFER_TEST_S3_SECRET_ACCESS_KEY"),
        concurrency: 8,
    })
}

/// Whether the kernel and the file system of `dir` take uncached writes
/// (`RWF_DONTCACHE`): probed with a write of one byte into a file that is removed again.
///
/// # Panics
/// When no file can be created in `dir`.
#[must_use]
pub fn uncached_writes_supported(dir: &std::path::Path) -> bool {
    let path = dir.join(format!(".uncached-probe-{}", std::process::id()));
    let probe = std::fs::File::create_new(&path).expect("a file in the directory");
    let flags = rustix::io::ReadWriteFlags::from_bits_retain(0x80);
    let supported = rustix::io::pwritev2(&probe, &[std::io::IoSlice::new(b"x")], 0, flags).is_ok();
    std::fs::remove_file(&path).expect("the probe removed");
    supported
}

/// How many bytes of `path` are in the page cache, as `fincore` (util-linux) counts
/// them; `None` after printing why when `fincore` cannot tell.
#[must_use]
pub fn resident_bytes(path: &std::path::Path) -> Option<u64> {
    let out = std::process::Command::new("fincore")
        .args(["--bytes", "--noheadings", "--output", "RES"])
        .arg(path)
        .output();
    match out {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().parse().ok(),
        other => {
            eprintln!(
                "fincore cannot count the resident pages of {}: {other:?}",
                path.display()
            );
            None
        }
    }
}
