//! What a source backs up: exclude patterns in gitignore syntax and the switches users of
//! restic and Borg expect (caches, one file system, a size limit).
//!
//! The decision is made here, from facts the walker gathers (an entry's path below the
//! source, its kind, size and device, whether a directory holds a cache tag), so that a
//! backup and the preview of a source's rules skip exactly the same entries. Patterns are
//! matched by the `ignore` crate's gitignore matcher (the one ripgrep uses); nothing here
//! reads the file system.

use ignore::gitignore::{Gitignore, GitignoreBuilder};

/// The file that marks a directory as a cache (<https://bford.info/cachedir/>).
pub const CACHEDIR_TAG: &str = "CACHEDIR.TAG";
/// What a cache tag starts with; a file of that name without it marks nothing.
pub const CACHEDIR_SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";
/// Most patterns a source takes.
pub const MAX_PATTERNS: usize = 1000;
/// Longest pattern, in bytes.
pub const MAX_PATTERN_LEN: usize = 4096;

/// Whether the start of a `CACHEDIR.TAG` file is a cache tag's.
#[must_use]
pub fn is_cache_tag(head: &[u8]) -> bool {
    head.starts_with(CACHEDIR_SIGNATURE)
}

/// What a source leaves out. The default leaves out nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceFilter {
    /// Gitignore patterns, matched against paths relative to the source directory: a
    /// pattern with a slash at its start or in its middle is anchored there, one without
    /// matches at any depth; `dir/` matches directories only; `**` spans directories;
    /// `!pattern` takes back what an earlier pattern left out (but nothing inside a
    /// directory left out: it is never entered).
    pub exclude: Vec<String>,
    /// Leaves out directories holding a `CACHEDIR.TAG` with the standard signature.
    pub exclude_caches: bool,
    /// Stays on the source's file system: directories (and files) of other mounts are
    /// left out.
    pub one_file_system: bool,
    /// Leaves out regular files larger than this many bytes.
    pub exclude_larger_than: Option<u64>,
}

/// A pattern that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("exclude pattern `{pattern}`: {reason}")]
pub struct PatternError {
    pub pattern: String,
    pub reason: String,
}

/// Why an entry is left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// An exclude pattern matches it.
    Pattern,
    /// A directory holding a cache tag.
    Cache,
    /// On another file system than the source.
    OtherFileSystem,
    /// A file larger than the limit.
    TooLarge,
}

impl Skip {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pattern => "pattern",
            Self::Cache => "cache",
            Self::OtherFileSystem => "other_file_system",
            Self::TooLarge => "too_large",
        }
    }
}

/// What the walker knows of an entry when it decides.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// Its path below the source directory, `/`-separated, without a leading `/`.
    pub path: &'a str,
    pub is_dir: bool,
    /// Regular files only: their size.
    pub file_size: Option<u64>,
    /// The device it lies on.
    pub dev: u64,
}

/// What a source's filter would leave out of its directory as it is now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExcludePreview {
    /// Entries left out (a directory counts once: what it holds is not looked at).
    pub skipped: u64,
    /// The first of them in walk order, with why.
    pub sample: Vec<(String, Skip)>,
    /// Entries looked at.
    pub examined: u64,
    /// Whether the whole directory was looked at (`false`: the walk stopped at its
    /// limit, and `skipped` is a lower bound).
    pub complete: bool,
}

/// A [`SourceFilter`] ready to decide.
#[derive(Debug, Clone)]
pub struct Excludes {
    matcher: Option<Gitignore>,
    exclude_caches: bool,
    one_file_system: bool,
    larger_than: Option<u64>,
}

impl SourceFilter {
    /// Whether it leaves out nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// Checks every pattern and builds the matcher.
    ///
    /// # Errors
    /// The first pattern that is empty, too long, holds a line break or control
    /// character, or is not a valid glob; too many patterns.
    pub fn compile(&self) -> Result<Excludes, PatternError> {
        if self.exclude.len() > MAX_PATTERNS {
            return Err(PatternError {
                pattern: self.exclude[MAX_PATTERNS].clone(),
                reason: format!("a source takes at most {MAX_PATTERNS} patterns"),
            });
        }
        let matcher = if self.exclude.is_empty() {
            None
        } else {
            let mut builder = GitignoreBuilder::new("");
            for pattern in &self.exclude {
                let bad = |reason: &str| PatternError {
                    pattern: pattern.clone(),
                    reason: reason.to_owned(),
                };
                if pattern.trim().is_empty() {
                    return Err(bad("a pattern cannot be blank"));
                }
                if pattern.len() > MAX_PATTERN_LEN {
                    return Err(bad(&format!(
                        "a pattern has at most {MAX_PATTERN_LEN} bytes"
                    )));
                }
                if pattern.chars().any(char::is_control) {
                    return Err(bad(
                        "a pattern cannot hold a line break or control character",
                    ));
                }
                if pattern.starts_with('#') {
                    return Err(bad(
                        "a pattern starting with `#` is a comment in gitignore syntax; write `\\#` for a name starting with `#`",
                    ));
                }
                builder
                    .add_line(None, pattern)
                    .map_err(|e| bad(&glob_error(&e)))?;
            }
            // Globs are parsed when the matcher is built: on failure, find the culprit.
            Some(builder.build().map_err(|e| {
                self.exclude
                    .iter()
                    .find_map(|pattern| {
                        let mut one = GitignoreBuilder::new("");
                        one.add_line(None, pattern).ok()?;
                        one.build().err().map(|e| PatternError {
                            pattern: pattern.clone(),
                            reason: glob_error(&e),
                        })
                    })
                    .unwrap_or_else(|| PatternError {
                        pattern: self.exclude.join(", "),
                        reason: glob_error(&e),
                    })
            })?)
        };
        Ok(Excludes {
            matcher,
            exclude_caches: self.exclude_caches,
            one_file_system: self.one_file_system,
            larger_than: self.exclude_larger_than,
        })
    }
}

/// The glob's own complaint, without the crate's wrapping of it.
fn glob_error(e: &ignore::Error) -> String {
    match e {
        ignore::Error::Glob { err, .. } => err.clone(),
        other => other.to_string(),
    }
}

impl Excludes {
    /// Leaves out nothing.
    #[must_use]
    pub const fn none() -> Self {
        Self {
            matcher: None,
            exclude_caches: false,
            one_file_system: false,
            larger_than: None,
        }
    }

    /// Whether a directory's cache tag must be looked at.
    #[must_use]
    pub const fn checks_cache_tags(&self) -> bool {
        self.exclude_caches
    }

    /// Whether anything can be left out.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.matcher.is_none()
            && !self.exclude_caches
            && !self.one_file_system
            && self.larger_than.is_none()
    }

    /// Whether there are patterns at all ([`Excludes::by_pattern`] is then always false).
    #[must_use]
    pub const fn has_patterns(&self) -> bool {
        self.matcher.is_some()
    }

    /// Whether a pattern leaves the entry out (the last pattern matching it decides).
    #[must_use]
    pub fn by_pattern(&self, path: &str, is_dir: bool) -> bool {
        self.matcher
            .as_ref()
            .is_some_and(|m| m.matched(path, is_dir).is_ignore())
    }

    /// Why `entry`, below a source on device `root_dev`, is left out, if it is.
    /// `has_cache_tag` is asked only for a directory the patterns keep, and only when
    /// caches are left out.
    #[must_use]
    pub fn decide(
        &self,
        entry: Entry<'_>,
        root_dev: u64,
        has_cache_tag: impl FnOnce() -> bool,
    ) -> Option<Skip> {
        if self.by_pattern(entry.path, entry.is_dir) {
            return Some(Skip::Pattern);
        }
        if self.one_file_system && entry.dev != root_dev {
            return Some(Skip::OtherFileSystem);
        }
        if let (Some(limit), Some(size)) = (self.larger_than, entry.file_size)
            && size > limit
        {
            return Some(Skip::TooLarge);
        }
        if entry.is_dir && self.exclude_caches && has_cache_tag() {
            return Some(Skip::Cache);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(patterns: &[&str]) -> Excludes {
        SourceFilter {
            exclude: patterns.iter().map(|p| (*p).to_owned()).collect(),
            ..SourceFilter::default()
        }
        .compile()
        .unwrap()
    }

    #[test]
    fn gitignore_semantics() {
        // (patterns, path, is_dir, left out)
        let table: &[(&[&str], &str, bool, bool)] = &[
            // No slash: any depth, files and directories.
            (&["*.log"], "a.log", false, true),
            (&["*.log"], "x/y/a.log", false, true),
            (&["*.log"], "a.txt", false, false),
            (&["node_modules"], "web/node_modules", true, true),
            // A leading slash anchors at the source directory.
            (&["/build"], "build", true, true),
            (&["/build"], "src/build", true, false),
            // A slash in the middle anchors too.
            (&["docs/*.pdf"], "docs/a.pdf", false, true),
            (&["docs/*.pdf"], "x/docs/a.pdf", false, false),
            // `*` stops at a slash.
            (&["docs/*.pdf"], "docs/sub/a.pdf", false, false),
            // A trailing slash: directories only.
            (&["tmp/"], "tmp", true, true),
            (&["tmp/"], "tmp", false, false),
            (&["tmp/"], "a/tmp", true, true),
            // `**` spans directories.
            (&["**/cache/*.bin"], "a/b/cache/x.bin", false, true),
            (&["docs/**/*.pdf"], "docs/a/b/c.pdf", false, true),
            (&["docs/**/*.pdf"], "docs/c.pdf", false, true),
            (&["a/**"], "a/b", false, true),
            // `!` takes back; the last match decides.
            (&["*.log", "!keep.log"], "keep.log", false, false),
            (&["*.log", "!keep.log"], "other.log", false, true),
            (&["!keep.log", "*.log"], "keep.log", false, true),
            // An escaped `#` and `!` are names.
            (&["\\#notes"], "#notes", false, true),
            (&["\\!x"], "!x", false, true),
        ];
        for (patterns, path, is_dir, out) in table {
            assert_eq!(
                rules(patterns).by_pattern(path, *is_dir),
                *out,
                "{patterns:?} on {path} (dir: {is_dir})"
            );
        }
    }

    #[test]
    fn bad_patterns_are_refused_with_the_pattern_named() {
        for bad in [
            "",
            "  ",
            "a\nb",
            "# comment",
            "[z-a]",
            "{a,b",
            "a}",
            "trailing\\",
        ] {
            let e = SourceFilter {
                exclude: vec!["ok".into(), bad.to_owned()],
                ..SourceFilter::default()
            }
            .compile()
            .unwrap_err();
            assert_eq!(e.pattern, bad, "{e}");
        }
        let too_many = SourceFilter {
            exclude: vec!["x".into(); MAX_PATTERNS + 1],
            ..SourceFilter::default()
        };
        assert!(too_many.compile().is_err());
        assert!(SourceFilter::default().compile().unwrap().is_empty());
    }

    #[test]
    fn the_switches_decide_from_the_facts_given() {
        let filter = SourceFilter {
            exclude: vec!["*.tmp".into()],
            exclude_caches: true,
            one_file_system: true,
            exclude_larger_than: Some(100),
        }
        .compile()
        .unwrap();
        let file = |path, size, dev| Entry {
            path,
            is_dir: false,
            file_size: Some(size),
            dev,
        };
        let dir = |path, dev| Entry {
            path,
            is_dir: true,
            file_size: None,
            dev,
        };
        let never = || panic!("the tag is looked at only for directories kept so far");
        assert_eq!(filter.decide(file("a", 100, 1), 1, never), None);
        assert_eq!(
            filter.decide(file("a", 101, 1), 1, never),
            Some(Skip::TooLarge)
        );
        assert_eq!(
            filter.decide(file("a", 1, 2), 1, never),
            Some(Skip::OtherFileSystem)
        );
        assert_eq!(
            filter.decide(dir("mnt", 2), 1, never),
            Some(Skip::OtherFileSystem)
        );
        assert_eq!(
            filter.decide(file("x.tmp", 1, 1), 1, never),
            Some(Skip::Pattern)
        );
        assert_eq!(filter.decide(dir("c", 1), 1, || true), Some(Skip::Cache));
        assert_eq!(filter.decide(dir("c", 1), 1, || false), None);
        // Without the switches, the same facts leave nothing out.
        let none = SourceFilter::default().compile().unwrap();
        assert_eq!(none.decide(file("a", u64::MAX, 2), 1, never), None);
        assert_eq!(none.decide(dir("c", 2), 1, never), None);
    }

    #[test]
    fn a_cache_tag_is_known_by_its_signature() {
        assert!(is_cache_tag(
            b"Signature: 8a477f597d28d172789f06886806bc55\n# This file is a cache directory tag."
        ));
        assert!(!is_cache_tag(b"Signature: 0000"));
        assert!(!is_cache_tag(b""));
    }
}
