//! Paths, as more than one area compares them. Not an area: it knows none.

/// Whether one directory is the other or lies inside it (whole path components:
/// `/a/bc` is not inside `/a/b`).
pub(crate) fn overlaps(a: &str, b: &str) -> bool {
    std::path::Path::new(a).starts_with(b) || std::path::Path::new(b).starts_with(a)
}

/// A path inside a snapshot as the engine takes it: no leading or trailing `/`.
pub(crate) fn snapshot_path(path: Option<&str>) -> Option<String> {
    path.map(|p| p.trim_matches('/'))
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
}

/// The one of Coffer's own directories (data, repository, restore roots) or files (keys,
/// catalog, configuration) that `dir` contains or lies in, if any: backing up the
/// repository into itself would grow it with every run, and a key in a snapshot could be
/// downloaded by anybody who may restore.
pub(crate) fn own_directory<'a>(dir: &str, protected: &'a [String]) -> Option<&'a str> {
    protected
        .iter()
        .find(|p| overlaps(dir, p))
        .map(String::as_str)
}

/// Why `dir` may not be backed up, when it overlaps one of Coffer's own directories.
/// The message goes to clients, so it names neither `dir` resolved (symlinks followed)
/// nor `own`: which of the server's paths it met goes to the log.
pub(crate) fn own_directory_message(dir: &str, own: &str) -> String {
    tracing::info!(
        source = dir,
        own,
        "source refused: it overlaps Coffer's own files"
    );
    "the path contains or lies in one of Coffer's own directories or files (data, \
     repository, restore roots, keys, catalog, configuration)"
        .to_owned()
}

/// `message` with every mention of `path` (a server path a client should not learn)
/// replaced by `shown`; the original goes to the log when it changed.
pub(crate) fn hide_path(message: String, path: &str, shown: &str) -> String {
    if path.is_empty() || !message.contains(path) {
        return message;
    }
    tracing::info!(%message, "server path hidden from a client's message");
    message.replace(path, shown)
}
