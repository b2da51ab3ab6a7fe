//! `coffer-storage`: the object-storage adapter. It implements the domain's
//! [`ObjectStore`] port with opendal, so every opendal backend can hold a repository:
//! `fs` (a local directory or a mounted NAS share), `s3` (any S3-compatible store) and,
//! for tests, `memory`.
//!
//! The `s3` backend talks HTTP through its own reqwest client (rustls with the process's
//! ring provider: no second TLS stack), reads credentials only from what it is given
//! (never the environment's `AWS_*` variables, `~/.aws` or an instance metadata service),
//! retries temporary failures with exponential backoff and jitter, and bounds every
//! request by a timeout. A put is one `PUT` of the whole object, which S3 makes visible
//! whole or not at all.
//!
//! The `fs` backend writes each object itself (not through opendal) to a temporary file
//! under `<root>/.tmp`, syncs it, renames it into place and syncs the directory, so a
//! reader or a crash (even a power cut) never sees half an object; the write is
//! uncached where the kernel allows it (`RWF_DONTCACHE`), so packs do not fill the page
//! cache. Listing ignores that directory. It reads objects with plain positional reads
//! into one buffer per read (opendal's `fs` reader would keep a pool of old buffers
//! alive). Every call is bounded by a timeout, so a hung NAS mount turns into an error
//! instead of a hung server.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use coffer_domain::storage::{ObjectKey, ObjectStore, RangeReader, StorageError, read_in_pieces};
use futures::{StreamExt as _, TryStreamExt};
use opendal::layers::{RetryLayer, TimeoutLayer};
use opendal::{EntryMode, ErrorKind, HttpTransporter, OperationContext, Operator};
use opendal_http_transport_reqwest::ReqwestTransport;

/// Where temporary files of atomic writes go, inside the `fs` root (same file system, so
/// the final rename is atomic).
const ATOMIC_DIR: &str = ".tmp";

/// An [`ObjectStore`] over an opendal operator.
#[derive(Clone, Debug)]
pub struct OpendalStore {
    op: Operator,
    backend: &'static str,
    /// The directory of the `fs` backend, checked by [`ObjectStore::check`].
    fs_root: Option<PathBuf>,
    /// Requests worth having in flight at once.
    parallelism: usize,
    /// Whether listings carry each object's size (S3's do, fs's do not).
    sized_listings: bool,
    /// Where the repository is, for messages: a directory or `s3://bucket/prefix`.
    location: String,
}

/// Where an S3 repository is and how to reach it. The secret key is only handed to the
/// request signer; this type's `Debug` does not show it.
#[derive(Clone)]
pub struct S3Options {
    /// `http(s)://host[:port]`; `None`: AWS's endpoint for the region.
    pub endpoint: Option<String>,
    pub bucket: String,
    pub region: String,
    /// Keys of the repository start with this path inside the bucket (may be empty).
    pub prefix: String,
    /// `endpoint/bucket` addressing (Garage, MinIO, Ceph) instead of `bucket.endpoint`.
    pub path_style: bool,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Requests in flight at once.
    pub concurrency: usize,
}

impl std::fmt::Debug for S3Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Options")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("prefix", &self.prefix)
            .field("path_style", &self.path_style)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"***")
            .field("concurrency", &self.concurrency)
            .finish()
    }
}

impl OpendalStore {
    /// The object's size, at most `limit`; `None` when it is missing.
    async fn size_up_to(&self, name: &str, limit: u64) -> Result<Option<u64>, StorageError> {
        match self.op.stat(name).await {
            Ok(meta) => Ok(Some(meta.content_length().min(limit))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(map_err("reading", name, &e)),
        }
    }

    /// A repository in a local directory (or NAS mount), created if missing.
    ///
    /// # Errors
    /// When the directory cannot be created or opendal refuses the configuration.
    pub fn fs(root: &Path) -> Result<Self, StorageError> {
        let atomic = root.join(ATOMIC_DIR);
        std::fs::create_dir_all(&atomic).map_err(|e| {
            StorageError::Unavailable(format!(
                "cannot create storage directory {}: {e}",
                root.display()
            ))
        })?;
        let root_str = root.to_str().ok_or_else(|| {
            StorageError::Other(format!(
                "storage root {} is not valid UTF-8",
                root.display()
            ))
        })?;
        let atomic_str = atomic.to_str().unwrap_or_default();
        let builder = opendal::services::Fs::default()
            .root(root_str)
            .atomic_write_dir(atomic_str);
        let op = Operator::new(builder)
            .map_err(|e| StorageError::Other(format!("fs storage: {e}")))?
            .layer(Self::timeouts());
        Ok(Self {
            op,
            backend: "fs",
            fs_root: Some(root.to_path_buf()),
            parallelism: 2,
            sized_listings: false,
            location: root.display().to_string(),
        })
    }

    /// A repository in an S3 bucket (which must exist: Coffer never creates buckets).
    /// Nothing is sent until the first call; [`ObjectStore::check`] tells whether the
    /// bucket is reachable with these credentials.
    ///
    /// # Errors
    /// When opendal refuses the configuration or the HTTP client cannot be built.
    pub fn s3(options: &S3Options) -> Result<Self, StorageError> {
        let prefix = options.prefix.trim_matches('/');
        let location = if prefix.is_empty() {
            format!("s3://{}", options.bucket)
        } else {
            format!("s3://{}/{prefix}", options.bucket)
        };
        let mut builder = opendal::services::S3::default()
            .bucket(&options.bucket)
            .region(&options.region)
            .root(&format!("/{prefix}"))
            .access_key_id(&options.access_key_id)
            .secret_access_key(&options.secret_access_key)
            // Only the credentials given: not AWS_* variables, ~/.aws, nor the instance
            // metadata service (a request to 169.254.169.254 from any machine).
            .disable_config_load()
            .disable_ec2_metadata();
        if let Some(endpoint) = &options.endpoint {
            builder = builder.endpoint(endpoint);
        }
        if !options.path_style {
            builder = builder.enable_virtual_host_style();
        }
        let concurrency = options.concurrency.max(1);
        // reqwest's rustls has no provider of its own here: ring, the process's one (an
        // error only says that a provider is installed already).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest_s3::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(concurrency * 2)
            .build()
            .map_err(|e| StorageError::Other(format!("s3 storage: HTTP client: {e}")))?;
        let op = Operator::new(builder)
            .map_err(|e| StorageError::Other(format!("s3 storage {location}: {e}")))?
            .with_context(
                OperationContext::new()
                    .with_http_transport(HttpTransporter::new(ReqwestTransport::new(client))),
            )
            .layer(Self::timeouts())
            // Outside the timeouts, so each attempt has its own.
            .layer(
                RetryLayer::new()
                    .with_jitter()
                    .with_min_delay(Duration::from_millis(200))
                    .with_max_delay(Duration::from_secs(10))
                    .with_max_times(5),
            );
        Ok(Self {
            op,
            backend: "s3",
            fs_root: None,
            parallelism: concurrency,
            sized_listings: true,
            location,
        })
    }

    /// An in-memory store (tests).
    ///
    /// # Panics
    /// Never in practice: the memory service has no configuration to refuse.
    #[must_use]
    pub fn memory() -> Self {
        let op = Operator::new(opendal::services::Memory::default())
            .expect("the memory service always builds")
            .layer(Self::timeouts());
        Self {
            op,
            backend: "memory",
            fs_root: None,
            parallelism: 2,
            sized_listings: true,
            location: "memory".to_owned(),
        }
    }

    /// The backend's name, for logs and status pages.
    #[must_use]
    pub const fn backend(&self) -> &'static str {
        self.backend
    }

    /// Whether the store refuses to overwrite an object when asked to create it only if
    /// absent (S3's `If-None-Match: *`). Some stores accept the header and overwrite
    /// anyway (Garage 2.5 does), so this writes a probe object twice and looks: the
    /// answer is what the store does, not what it claims. The probe is removed.
    ///
    /// # Errors
    /// When the store cannot be written.
    pub async fn probe_conditional_create(&self) -> Result<bool, StorageError> {
        if !self.op.info().capability().write_with_if_not_exists {
            return Ok(false);
        }
        let key = format!("probes/conditional-create-{}", std::process::id());
        let first = self
            .op
            .write_with(&key, Bytes::from_static(b"first"))
            .if_not_exists(true)
            .await;
        if let Err(e) = first {
            let _ = self.op.delete(&key).await;
            return Err(map_err("writing", &key, &e));
        }
        let second = self
            .op
            .write_with(&key, Bytes::from_static(b"second"))
            .if_not_exists(true)
            .await;
        let kept_first = match self.op.read(&key).await {
            Ok(buffer) => buffer.to_bytes().as_ref() == b"first",
            Err(e) => {
                let _ = self.remove_probe(&key).await;
                return Err(map_err("reading", &key, &e));
            }
        };
        self.remove_probe(&key).await?;
        Ok(second.is_err() && kept_first)
    }

    /// Deletes the probe object and looks until it is gone: a store that applied the
    /// overwrite late (or a retried request that landed after the delete) must not leave
    /// a stray object behind.
    async fn remove_probe(&self, key: &str) -> Result<(), StorageError> {
        for attempt in 0..5u32 {
            if attempt > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(200 << attempt)).await;
            }
            self.op
                .delete(key)
                .await
                .map_err(|e| map_err("deleting", key, &e))?;
            match self.op.stat(key).await {
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(map_err("checking", key, &e)),
                Ok(_) => tracing::warn!(key, attempt, "storage: the probe survived its delete"),
            }
        }
        Err(StorageError::Other(format!(
            "the probe object {key} is still there after five deletes"
        )))
    }

    /// Every object whose key starts with `prefix`, sorted, with the listing's metadata.
    async fn entries(
        &self,
        prefix: &str,
    ) -> Result<Vec<(ObjectKey, opendal::Metadata)>, StorageError> {
        // opendal lists directories; list the deepest directory the prefix names and keep
        // the entries that really start with the prefix.
        let dir = prefix.rfind('/').map_or("", |i| &prefix[..=i]);
        let entries = match self.op.lister_with(dir).recursive(true).await {
            Ok(lister) => lister
                .try_collect::<Vec<_>>()
                .await
                .map_err(|e| map_err("listing", prefix, &e))?,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(map_err("listing", prefix, &e)),
        };
        let mut out: Vec<(ObjectKey, opendal::Metadata)> = entries
            .into_iter()
            .filter(|entry| entry.metadata().mode() == EntryMode::FILE)
            .filter(|entry| {
                let path = entry.path();
                path.starts_with(prefix) && !path.starts_with(ATOMIC_DIR)
            })
            .filter_map(|entry| {
                let (path, meta) = entry.into_parts();
                match ObjectKey::parse(&path) {
                    Ok(key) => Some((key, meta)),
                    Err(e) => {
                        tracing::warn!(path, error = %e, "storage: ignoring a foreign object");
                        None
                    }
                }
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    fn timeouts() -> TimeoutLayer {
        TimeoutLayer::new()
            .with_timeout(CALL_TIMEOUT)
            .with_io_timeout(Duration::from_secs(30))
    }
}

/// Reads an object of the `fs` backend: the whole of it, or `len` bytes from `offset`
/// (fewer when it ends first). Not through opendal: its `fs` reader reads into buffers
/// that it keeps in a pool of sixteen, and each pooled buffer holds on to the whole
/// allocation of the last data read through it — up to sixteen packs' worth of memory
/// (tens of MiB in a restore) that nothing uses any more. The read runs on tokio's
/// blocking pool, as opendal's does, under the same one-minute bound as every call, so a
/// hung NAS mount turns into an error.
async fn fs_read(
    root: &Path,
    key: &ObjectKey,
    range: Option<(u64, u64)>,
) -> Result<Option<Bytes>, StorageError> {
    // Keys are relative paths without empty, `.` or `..` segments (`ObjectKey::parse`).
    let path = root.join(key.as_str());
    // A range's buffer is allocated here, by the caller's thread, which also frees it:
    // allocated on one of tokio's many blocking threads it would sit in that thread's
    // allocator arena, and every such arena would keep a few spans' worth of memory.
    let buffer = match range {
        Some((_, len)) => {
            // What the caller asked, up to a bound: a range "to the end" of a small
            // object must not allocate its length.
            vec![0u8; usize::try_from(len.min(FS_FIRST_BUFFER)).unwrap_or(0)]
        }
        None => Vec::new(),
    };
    let name = key.as_str();
    match blocking("reading", name, move || read_file(&path, range, buffer)).await? {
        Ok(data) => Ok(Some(Bytes::from(data))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StorageError::Unavailable(format!("reading {name}: {e}"))),
    }
}

/// Runs file-system work on tokio's blocking pool under [`CALL_TIMEOUT`]: the outer
/// error is the bound passed (a hung NAS mount) or the task lost, the inner one the file
/// system's own.
async fn blocking<T: Send + 'static>(
    doing: &str,
    name: &str,
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<std::io::Result<T>, StorageError> {
    match tokio::time::timeout(CALL_TIMEOUT, tokio::task::spawn_blocking(work)).await {
        Err(_) => Err(StorageError::Unavailable(format!(
            "{doing} {name}: no answer from the file system within {} s",
            CALL_TIMEOUT.as_secs()
        ))),
        Ok(Err(e)) => Err(StorageError::Other(format!("{doing} {name}: {e}"))),
        Ok(Ok(done)) => Ok(done),
    }
}

/// Writes an object of the `fs` backend: into a new temporary file under
/// [`ATOMIC_DIR`] (uncached where the kernel allows, [`write_uncached`]), synced, renamed
/// into place, and the directory synced, so the rename survives a power cut before
/// anything depends on it. Runs under the one-minute bound of every call ([`blocking`]).
async fn fs_write(root: &Path, key: &ObjectKey, bytes: Bytes) -> Result<(), StorageError> {
    let root = root.to_path_buf();
    let name = key.as_str();
    let owned = name.to_owned();
    blocking("writing", name, move || write_file(&root, &owned, &bytes))
        .await?
        .map_err(|e| StorageError::Unavailable(format!("writing {name}: {e}")))
}

/// What [`fs_write`] does on a blocking thread.
fn write_file(root: &Path, key: &str, data: &[u8]) -> std::io::Result<()> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);

    // Keys are relative paths without empty, `.` or `..` segments (`ObjectKey::parse`).
    let target = root.join(key);
    let dir = target.parent().unwrap_or(root);
    let base = key.rsplit('/').next().unwrap_or(key);
    // Unique to this process and write; `create_new` refuses a name another process
    // (the server beside a CLI command) happens to have taken.
    let (temp, file) = loop {
        let temp = root.join(ATOMIC_DIR).join(format!(
            "{base}.{}.{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
        {
            Ok(file) => break (temp, file),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(root.join(ATOMIC_DIR))?;
            }
            Err(e) => return Err(e),
        }
    };
    // The directory is made only when missing (the first object under a prefix), not
    // asked for on every write.
    let written = write_uncached(&file, data)
        .and_then(|()| file.sync_all())
        .and_then(|()| match std::fs::rename(&temp, &target) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir).and_then(|()| std::fs::rename(&temp, &target))
            }
            done => done,
        });
    drop(file);
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    std::fs::File::open(dir).and_then(|d| d.sync_all())
}

/// Writes all of `data` from the start of `file`, uncached (`RWF_DONTCACHE`, Linux
/// 6.14+) where the file system has it: the pages are freed once written back (the sync
/// that follows waits for that anyway), so a backup of gigabytes reuses a few pages of
/// memory instead of filling the page cache with packs nobody reads soon. On VMs whose
/// hypervisor takes freed memory back, taking fresh pages for every byte written is
/// slow (100-230 MB/s here, against 700-800 MB/s uncached). Elsewhere (tmpfs, NFS,
/// older kernels) it is a plain write.
fn write_uncached(file: &std::fs::File, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt as _;
    /// `RWF_DONTCACHE`: not yet among rustix's flags.
    const RWF_DONTCACHE: u32 = 0x80;
    let flags = rustix::io::ReadWriteFlags::from_bits_retain(RWF_DONTCACHE);
    let mut done = 0;
    while done < data.len() {
        let slice = [std::io::IoSlice::new(&data[done..])];
        match rustix::io::pwritev2(file, &slice, done as u64, flags) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(
                rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS,
            ) => {
                break;
            }
            Err(e) => return Err(e.into()),
        }
    }
    file.write_all_at(&data[done..], done as u64)
}

/// The bound on one call to storage: opendal's calls ([`OpendalStore::timeouts`]) and
/// the `fs` backend's own reads.
const CALL_TIMEOUT: Duration = Duration::from_mins(1);

/// The most bytes a range read of the `fs` backend allocates before it has read them.
const FS_FIRST_BUFFER: u64 = 64 * 1024 * 1024;

/// What [`fs_read`] does on a blocking thread: positional reads into `data`, grown while
/// full and short of the range, or the whole file (`std::fs::read` sizes its buffer
/// from the file).
fn read_file(
    path: &Path,
    range: Option<(u64, u64)>,
    mut data: Vec<u8>,
) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt as _;

    let Some((offset, len)) = range else {
        return std::fs::read(path);
    };
    let file = std::fs::File::open(path)?;
    let mut filled = 0;
    loop {
        if filled == data.len() {
            let wanted = len.saturating_sub(filled as u64);
            if wanted == 0 {
                break;
            }
            let more = usize::try_from(wanted.min(FS_FIRST_BUFFER)).unwrap_or(0);
            data.resize(filled + more, 0);
        }
        match file.read_at(&mut data[filled..], offset + filled as u64) {
            Ok(0) => break, // the object ends here
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    data.truncate(filled);
    Ok(data)
}

/// The object is shorter than the range asked for: a local file refuses the range; S3
/// answers with fewer bytes, which opendal's reader reports as too little data.
fn ends_early(e: &opendal::Error) -> bool {
    e.kind() == ErrorKind::RangeNotSatisfied
        || (e.kind() == ErrorKind::Unexpected && e.to_string().contains("too little data"))
}

/// The body of one ranged `GET`, handed on as it arrives.
struct BodyReader {
    stream: std::pin::Pin<Box<opendal::BufferStream>>,
    key: String,
    /// The first piece, read ahead to learn whether the object exists.
    first: Option<opendal::Buffer>,
    /// The body ended (or the object did, before the range).
    done: bool,
}

#[async_trait]
impl RangeReader for BodyReader {
    async fn next(&mut self) -> Result<Bytes, StorageError> {
        if let Some(first) = self.first.take()
            && !first.is_empty()
        {
            return Ok(first.to_bytes());
        }
        while !self.done {
            match self.stream.next().await {
                None => self.done = true,
                Some(Ok(buffer)) if buffer.is_empty() => {}
                Some(Ok(buffer)) => return Ok(buffer.to_bytes()),
                Some(Err(e)) if ends_early(&e) => self.done = true,
                Some(Err(e)) => {
                    self.done = true;
                    return Err(map_err("reading", &self.key, &e));
                }
            }
        }
        Ok(Bytes::new())
    }
}

/// A range with nothing in it.
struct Ended;

#[async_trait]
impl RangeReader for Ended {
    async fn next(&mut self) -> Result<Bytes, StorageError> {
        Ok(Bytes::new())
    }
}

fn map_err(context: &str, key: &str, err: &opendal::Error) -> StorageError {
    let message = format!("{context} {key}: {err}");
    match err.kind() {
        // What Coffer asked wrongly: a bug or a configuration to fix, not an outage.
        ErrorKind::Unsupported
        | ErrorKind::ConfigInvalid
        | ErrorKind::IsADirectory
        | ErrorKind::NotADirectory
        | ErrorKind::IsSameFile
        | ErrorKind::ConditionNotMatch
        | ErrorKind::AlreadyExists
        | ErrorKind::RangeNotSatisfied => StorageError::Other(message),
        // Everything else is the store not serving: refused, unreachable, full, without
        // a quorum (an S3 503 still failing after the retries), timed out.
        _ => StorageError::Unavailable(message),
    }
}

/// One clear sentence for a store that cannot serve, as the start-up check and the health
/// endpoint report it: what is wrong and what to look at. It names the bucket, never a
/// credential (a store's own message may quote the access key, so it is left out).
fn s3_check_error(location: &str, err: &opendal::Error) -> StorageError {
    let text = err.to_string();
    let message = match err.kind() {
        ErrorKind::PermissionDenied => format!(
            "{location}: access denied: check storage.credentials_file (or \
             COFFER_STORAGE__ACCESS_KEY_ID / COFFER_STORAGE__SECRET_ACCESS_KEY) and the key's \
             permissions on the bucket"
        ),
        ErrorKind::NotFound => {
            format!("{location}: the bucket does not exist (Coffer does not create buckets)")
        }
        _ if text.contains("NoSuchBucket") => {
            format!("{location}: the bucket does not exist (Coffer does not create buckets)")
        }
        _ if text.contains("InvalidAccessKeyId")
            || text.contains("SignatureDoesNotMatch")
            || text.contains("Forbidden") =>
        {
            format!(
                "{location}: the store refused the credentials: check storage.credentials_file \
                 (or COFFER_STORAGE__ACCESS_KEY_ID / COFFER_STORAGE__SECRET_ACCESS_KEY)"
            )
        }
        _ if err.is_temporary() || text.contains("error sending request") => format!(
            "{location}: the endpoint cannot be reached (check storage.endpoint and the network)"
        ),
        _ => format!(
            "{location}: the store answered with an error ({:?})",
            err.kind()
        ),
    };
    StorageError::Unavailable(message)
}

#[async_trait]
impl ObjectStore for OpendalStore {
    async fn put(&self, key: &ObjectKey, bytes: Bytes) -> Result<(), StorageError> {
        if let Some(root) = &self.fs_root {
            return fs_write(root, key, bytes).await;
        }
        self.op
            .write(key.as_str(), bytes)
            .await
            .map_err(|e| map_err("writing", key.as_str(), &e))?;
        Ok(())
    }

    async fn get(&self, key: &ObjectKey) -> Result<Option<Bytes>, StorageError> {
        if let Some(root) = &self.fs_root {
            return fs_read(root, key, None).await;
        }
        match self.op.read(key.as_str()).await {
            Ok(buffer) => Ok(Some(buffer.to_bytes())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(map_err("reading", key.as_str(), &e)),
        }
    }

    async fn get_range(
        &self,
        key: &ObjectKey,
        offset: u64,
        len: u64,
    ) -> Result<Option<Bytes>, StorageError> {
        if len == 0 {
            return Ok(Some(Bytes::new()));
        }
        if let Some(root) = &self.fs_root {
            return fs_read(root, key, Some((offset, len))).await;
        }
        match self
            .op
            .read_with(key.as_str())
            .range(offset..offset.saturating_add(len))
            .await
        {
            Ok(buffer) => Ok(Some(buffer.to_bytes())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            // The object is shorter than asked: return what it has from `offset`.
            Err(e) if ends_early(&e) => {
                let Some(size) = self.size_up_to(key.as_str(), u64::MAX).await? else {
                    return Ok(None);
                };
                if offset >= size {
                    return Ok(Some(Bytes::new()));
                }
                self.op
                    .read_with(key.as_str())
                    .range(offset..size)
                    .await
                    .map(|b| Some(b.to_bytes()))
                    .map_err(|e| map_err("reading", key.as_str(), &e))
            }
            Err(e) => Err(map_err("reading", key.as_str(), &e)),
        }
    }

    /// On S3 one `GET` for the whole range, its body handed on as it arrives; a local
    /// directory reads piece by piece (the port's default).
    async fn read_range<'a>(
        &'a self,
        key: &ObjectKey,
        offset: u64,
        len: u64,
    ) -> Result<Option<Box<dyn RangeReader + 'a>>, StorageError> {
        if self.fs_root.is_some() || len == 0 {
            return read_in_pieces(self, key, offset, len).await;
        }
        let name = key.as_str();
        let mut end = offset.saturating_add(len);
        // A range past the object's end: the memory service refuses it; S3 answers with
        // fewer bytes, which opendal reports at the end of the body (after handing them
        // out). Refused before any byte: ask again for what the object has.
        let mut refused = false;
        loop {
            if end == offset {
                return Ok(Some(Box::new(Ended)));
            }
            // The first bytes (or the store's refusal) arrive with the answer's head: read
            // them now, so that a missing object is `None` like everywhere else.
            let opened = async {
                let stream = self.op.reader(name).await?.into_stream(offset..end).await?;
                let mut body = BodyReader {
                    stream: Box::pin(stream),
                    key: name.to_owned(),
                    first: None,
                    done: false,
                };
                match body.stream.next().await {
                    Some(Ok(first)) => body.first = Some(first),
                    Some(Err(e)) => return Err(e),
                    None => body.done = true,
                }
                Ok(body)
            }
            .await;
            match opened {
                Ok(body) => return Ok(Some(Box::new(body))),
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
                Err(e) if ends_early(&e) && !refused => {
                    refused = true;
                    end = self
                        .size_up_to(name, end)
                        .await?
                        .unwrap_or(offset)
                        .max(offset);
                }
                Err(e) if ends_early(&e) => return Ok(Some(Box::new(Ended))),
                Err(e) => return Err(map_err("reading", name, &e)),
            }
        }
    }

    async fn exists(&self, key: &ObjectKey) -> Result<bool, StorageError> {
        match self.op.stat(key.as_str()).await {
            Ok(meta) => Ok(meta.mode() == EntryMode::FILE),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(map_err("checking", key.as_str(), &e)),
        }
    }

    async fn list_sized(&self, prefix: &str) -> Result<Vec<(ObjectKey, u64)>, StorageError> {
        if self.sized_listings {
            // One listing request per thousand objects instead of one stat per object.
            return Ok(self
                .entries(prefix)
                .await?
                .into_iter()
                .map(|(key, meta)| (key, meta.content_length()))
                .collect());
        }
        let keys = self.list(prefix).await?;
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            // Listings do not carry sizes on every backend (fs); a stat does.
            match self.op.stat(key.as_str()).await {
                Ok(meta) => out.push((key, meta.content_length())),
                Err(e) if e.kind() == ErrorKind::NotFound => {} // deleted meanwhile
                Err(e) => return Err(map_err("checking", key.as_str(), &e)),
            }
        }
        Ok(out)
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
        match self.op.delete(key.as_str()).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(map_err("deleting", key.as_str(), &e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectKey>, StorageError> {
        Ok(self
            .entries(prefix)
            .await?
            .into_iter()
            .map(|(key, _)| key)
            .collect())
    }

    async fn check(&self) -> Result<(), StorageError> {
        // opendal's check lists the root, which succeeds on an fs root that has vanished
        // (an unmounted NAS share); the root must also still be a directory.
        if let Some(root) = &self.fs_root {
            match tokio::fs::metadata(root).await {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => {
                    return Err(StorageError::Unavailable(format!(
                        "storage root {} is not a directory",
                        root.display()
                    )));
                }
                Err(e) => {
                    return Err(StorageError::Unavailable(format!(
                        "storage root {}: {e}",
                        root.display()
                    )));
                }
            }
        }
        self.op.check().await.map_err(|e| {
            if self.backend == "s3" {
                s3_check_error(&self.location, &e)
            } else {
                map_err("checking", &self.location, &e)
            }
        })
    }

    fn parallelism(&self) -> usize {
        self.parallelism
    }

    fn location(&self) -> String {
        self.location.clone()
    }
}

#[cfg(test)]
mod contract_tests;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
