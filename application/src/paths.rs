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
pub(crate) fn own_directory_message(dir: &str, own: &str) -> String {
    format!(
        "{dir} contains or lies in {own}, one of Coffer's own directories or files (data, repository, restore roots, keys, catalog, configuration)"
    )
}
