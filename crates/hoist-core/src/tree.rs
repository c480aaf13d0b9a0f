//! The files of a batch: a streaming walk over the sources (files and directory trees) that
//! yields one [`Found`] at a time, each file with the object key it goes to, and the
//! `--include`/`--exclude` globs that pick files. It opens no file for reading and uploads
//! nothing; [`crate::batch`] does.
//!
//! Decisions:
//! - The walk streams: it holds one open directory per level of depth (a `read_dir` iterator),
//!   never the list of a tree, so 100,000 files cost no more memory than 10. Order within a
//!   directory is the file system's.
//! - Keys: a directory's files go under the prefix with their `/`-separated path relative to
//!   that directory (as `aws s3 cp --recursive DIR s3://B/P/` does); a file named as a source goes
//!   to prefix + its file name. Names that are not UTF-8 cannot be S3 keys and are reported.
//! - Symbolic links inside a tree are not followed unless asked ([`TreeOptions::follow_symlinks`]);
//!   they are reported as ignored. A source named by the caller is always followed. When
//!   following, a link to a directory that is already being walked (a loop) is reported and not
//!   entered; a dangling link is reported.
//! - FIFOs, sockets and devices are ignored with a report: reading a FIFO would block forever.
//! - Globs match files only (a directory is always entered) against the relative path, or against
//!   the file name when the pattern has no `/`. A file is picked when it matches an include (or
//!   there is none) and no exclude.

use std::collections::VecDeque;
use std::fs::{self, ReadDir};
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::PathBuf;

use crate::error::Error;

/// A regular file to upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Where it is.
    pub path: PathBuf,
    /// The object key it goes to (prefix included).
    pub key: String,
    /// Size when the walk saw it.
    pub size: u64,
    /// Modification time when the walk saw it, nanoseconds since the epoch.
    pub mtime_ns: i128,
}

/// One thing the walk found.
#[derive(Debug)]
pub enum Found {
    /// A file to upload.
    File(FileEntry),
    /// Something that is not uploaded, by design (a symbolic link not followed, a FIFO, a loop).
    Ignored {
        /// Where it is.
        path: PathBuf,
        /// Why it is not uploaded.
        reason: String,
    },
    /// Something that should have been uploaded and cannot be (an unreadable directory, a name
    /// that is not UTF-8).
    Failed {
        /// Where it is.
        path: PathBuf,
        /// What went wrong.
        error: Error,
    },
}

/// How to walk.
#[derive(Debug, Clone, Default)]
pub struct TreeOptions {
    /// Follow symbolic links inside trees.
    pub follow_symlinks: bool,
    /// Which files to pick.
    pub filter: Filter,
}

/// `--include` and `--exclude` globs.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    include: Vec<Glob>,
    exclude: Vec<Glob>,
}

impl Filter {
    /// A filter from include and exclude patterns. Errors name the bad pattern.
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self, Error> {
        let parse = |v: &[String]| v.iter().map(|p| Glob::new(p)).collect::<Result<Vec<_>, _>>();
        Ok(Self { include: parse(include)?, exclude: parse(exclude)? })
    }

    /// Whether the file at `relative` (`/`-separated) is picked.
    #[must_use]
    pub fn picks(&self, relative: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|g| g.matches(relative)))
            && !self.exclude.iter().any(|g| g.matches(relative))
    }
}

/// A shell-style glob: `*` (any run of characters but `/`), `**` (any run, `/` included), `?`
/// (one character but `/`), `[abc]`, `[a-z]`, `[!abc]`, and `\` to quote the next character.
#[derive(Debug, Clone)]
pub struct Glob {
    tokens: Vec<Token>,
    /// Without a `/` the pattern is matched against the file name only.
    on_path: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Char(char),
    Any,
    Star,
    DoubleStar,
    Class { negated: bool, ranges: Vec<(char, char)> },
}

impl Glob {
    /// Parses `pattern`; an unclosed `[` or a trailing `\` is an error.
    pub fn new(pattern: &str) -> Result<Self, Error> {
        let bad = |why: &str| Error::Config(format!("the glob {pattern:?} {why}"));
        let mut tokens = Vec::new();
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            tokens.push(match c {
                '*' if chars.peek() == Some(&'*') => {
                    chars.next();
                    Token::DoubleStar
                }
                '*' => Token::Star,
                '?' => Token::Any,
                '\\' => Token::Char(chars.next().ok_or_else(|| bad("ends with a lone '\\'"))?),
                '[' => {
                    let negated = chars.next_if(|c| *c == '!' || *c == '^').is_some();
                    let mut ranges = Vec::new();
                    let mut first = true;
                    loop {
                        let c = chars.next().ok_or_else(|| bad("has a '[' without its ']'"))?;
                        if c == ']' && !first {
                            break;
                        }
                        first = false;
                        if chars.peek() == Some(&'-') {
                            chars.next();
                            match chars.next() {
                                Some(']') => {
                                    ranges.push((c, c));
                                    ranges.push(('-', '-'));
                                    break;
                                }
                                Some(hi) => ranges.push((c, hi)),
                                None => return Err(bad("has a '[' without its ']'")),
                            }
                        } else {
                            ranges.push((c, c));
                        }
                    }
                    Token::Class { negated, ranges }
                }
                c => Token::Char(c),
            });
        }
        Ok(Self { tokens, on_path: pattern.contains('/') })
    }

    /// Whether `relative` (a `/`-separated path) matches.
    #[must_use]
    pub fn matches(&self, relative: &str) -> bool {
        let subject = if self.on_path { relative } else { relative.rsplit('/').next().unwrap_or(relative) };
        let s: Vec<char> = subject.chars().collect();
        matches_at(&self.tokens, &s)
    }
}

fn matches_at(p: &[Token], s: &[char]) -> bool {
    let Some((first, rest)) = p.split_first() else { return s.is_empty() };
    match first {
        // `**/` also matches no directory at all (`a/**/b` matches `a/b`).
        Token::DoubleStar => {
            if rest.first() == Some(&Token::Char('/')) && matches_at(&rest[1..], s) {
                return true;
            }
            (0..=s.len()).any(|i| matches_at(rest, &s[i..]))
        }
        Token::Star => {
            let limit = s.iter().position(|c| *c == '/').unwrap_or(s.len());
            (0..=limit).any(|i| matches_at(rest, &s[i..]))
        }
        Token::Any => s.first().is_some_and(|c| *c != '/') && matches_at(rest, &s[1..]),
        Token::Char(c) => s.first() == Some(c) && matches_at(rest, &s[1..]),
        Token::Class { negated, ranges } => {
            s.first().is_some_and(|c| *c != '/' && ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(c)) != *negated)
                && matches_at(rest, &s[1..])
        }
    }
}

/// One directory being read.
struct Frame {
    entries: ReadDir,
    /// Key prefix of its entries, relative to the source directory (`""` or `"a/b/"`).
    relative: String,
    /// `(dev, ino)`, to find links back to it.
    id: (u64, u64),
    /// Its path, for reports.
    dir: PathBuf,
}

/// The streaming walk over a batch's sources; an iterator of [`Found`].
pub struct Walk {
    sources: VecDeque<PathBuf>,
    prefix: String,
    options: TreeOptions,
    stack: Vec<Frame>,
}

impl std::fmt::Debug for Walk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Walk")
            .field("sources", &self.sources)
            .field("prefix", &self.prefix)
            .field("depth", &self.stack.len())
            .finish_non_exhaustive()
    }
}

/// Walks `sources` (files and directories), giving each file the key `prefix` + its relative
/// path. `prefix` is used as given: pass `""` or a string ending in `/` for folder-like keys.
#[must_use]
pub fn walk(sources: &[PathBuf], prefix: &str, options: TreeOptions) -> Walk {
    Walk { sources: sources.iter().cloned().collect(), prefix: prefix.to_owned(), options, stack: Vec::new() }
}

fn mtime_ns(meta: &fs::Metadata) -> i128 {
    i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec())
}

fn io_failed(path: PathBuf, e: std::io::Error) -> Found {
    Found::Failed { error: Error::Source { path: path.display().to_string(), source: e }, path }
}

impl Walk {
    /// Starts a source named by the caller (followed if it is a link).
    fn start_source(&mut self, path: PathBuf) -> Option<Found> {
        let meta = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) => return Some(io_failed(path, e)),
        };
        if meta.is_dir() {
            match fs::read_dir(&path) {
                Ok(entries) => {
                    self.stack.push(Frame {
                        entries,
                        relative: String::new(),
                        id: (meta.dev(), meta.ino()),
                        dir: path,
                    });
                    None
                }
                Err(e) => Some(io_failed(path, e)),
            }
        } else if meta.is_file() {
            let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
                return Some(not_utf8(path));
            };
            self.pick(path, &name, &meta)
        } else {
            Some(special(path, meta.file_type()))
        }
    }

    /// A regular file at `relative`, if the filter picks it.
    fn pick(&self, path: PathBuf, relative: &str, meta: &fs::Metadata) -> Option<Found> {
        self.options.filter.picks(relative).then(|| {
            Found::File(FileEntry {
                path,
                key: format!("{}{relative}", self.prefix),
                size: meta.len(),
                mtime_ns: mtime_ns(meta),
            })
        })
    }

    /// One entry of the directory on top of the stack.
    fn visit(&mut self, entry: &fs::DirEntry) -> Option<Found> {
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else { return Some(not_utf8(path)) };
        let relative = format!("{}{name}", self.stack.last().map_or("", |f| f.relative.as_str()));
        let file_type = match entry.file_type() {
            Ok(t) => t,
            Err(e) => return Some(io_failed(path, e)),
        };
        let meta = if file_type.is_symlink() {
            if !self.options.follow_symlinks {
                return Some(Found::Ignored {
                    path,
                    reason: "symbolic link, not followed (pass --follow-symlinks)".into(),
                });
            }
            match fs::metadata(&path) {
                Ok(m) => m,
                Err(e) => {
                    return Some(Found::Ignored { path, reason: format!("symbolic link to nothing readable ({e})") });
                }
            }
        } else {
            match entry.metadata() {
                Ok(m) => m,
                Err(e) => return Some(io_failed(path, e)),
            }
        };
        if meta.is_dir() {
            let id = (meta.dev(), meta.ino());
            if self.stack.iter().any(|f| f.id == id) {
                return Some(Found::Ignored {
                    path,
                    reason: "symbolic link loop: it leads back to a directory being uploaded".into(),
                });
            }
            match fs::read_dir(&path) {
                Ok(entries) => {
                    self.stack.push(Frame { entries, relative: format!("{relative}/"), id, dir: path });
                    None
                }
                Err(e) => Some(io_failed(path, e)),
            }
        } else if meta.is_file() {
            self.pick(path, &relative, &meta)
        } else {
            Some(special(path, meta.file_type()))
        }
    }
}

fn not_utf8(path: PathBuf) -> Found {
    Found::Failed {
        error: Error::Source {
            path: path.display().to_string(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the name is not UTF-8, so it cannot be an S3 key",
            ),
        },
        path,
    }
}

fn special(path: PathBuf, t: fs::FileType) -> Found {
    let what = if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    };
    Found::Ignored { path, reason: format!("{what}, not a regular file") }
}

impl Iterator for Walk {
    type Item = Found;

    fn next(&mut self) -> Option<Found> {
        loop {
            if let Some(top) = self.stack.last_mut() {
                match top.entries.next() {
                    None => {
                        self.stack.pop();
                    }
                    Some(Err(e)) => {
                        let dir = top.dir.clone();
                        return Some(io_failed(dir, e));
                    }
                    Some(Ok(entry)) => {
                        if let Some(found) = self.visit(&entry) {
                            return Some(found);
                        }
                    }
                }
            } else {
                let source = self.sources.pop_front()?;
                if let Some(found) = self.start_source(source) {
                    return Some(found);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(p: &str) -> Glob {
        Glob::new(p).unwrap()
    }

    #[test]
    fn globs() {
        assert!(g("*.jpg").matches("a/b/c.jpg"));
        assert!(!g("*.jpg").matches("a/b/c.jpeg"));
        assert!(g("a/*.jpg").matches("a/c.jpg"));
        assert!(!g("a/*.jpg").matches("a/b/c.jpg"));
        assert!(g("a/**/*.jpg").matches("a/b/c/d.jpg"));
        assert!(g("a/**/*.jpg").matches("a/d.jpg"));
        assert!(g("**/tmp/**").matches("x/tmp/y/z"));
        assert!(g("file?.txt").matches("file1.txt"));
        assert!(!g("file?.txt").matches("file10.txt"));
        assert!(g("[a-c]x").matches("bx"));
        assert!(!g("[!a-c]x").matches("bx"));
        assert!(g("[]]").matches("]"));
        assert!(g("a\\*").matches("a*"));
        assert!(!g("a\\*").matches("ab"));
        assert!(g("ü *").matches("dir/ü space"));
        for bad in ["[abc", "x\\"] {
            assert!(Glob::new(bad).unwrap_err().to_string().contains(bad.trim_end_matches('\\')), "{bad}");
        }
    }

    #[test]
    fn filter_includes_then_excludes() {
        let f = Filter::new(&["*.jpg".into(), "*.png".into()], &["thumbs/**".into()]).unwrap();
        assert!(f.picks("a.jpg"));
        assert!(f.picks("x/a.png"));
        assert!(!f.picks("a.gif"));
        assert!(!f.picks("thumbs/a.jpg"));
        assert!(Filter::default().picks("anything/at/all"));
    }

    fn collect(sources: &[PathBuf], prefix: &str, follow: bool) -> (Vec<String>, Vec<String>, usize) {
        let mut files = Vec::new();
        let mut ignored = Vec::new();
        let mut failed = 0;
        for f in walk(sources, prefix, TreeOptions { follow_symlinks: follow, filter: Filter::default() }) {
            match f {
                Found::File(e) => files.push(e.key),
                Found::Ignored { reason, .. } => ignored.push(reason),
                Found::Failed { .. } => failed += 1,
            }
        }
        files.sort();
        (files, ignored, failed)
    }

    #[test]
    fn walks_nested_trees_and_loose_files_into_keys() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        fs::create_dir_all(root.join("a/b/c")).unwrap();
        fs::create_dir_all(root.join("empty")).unwrap();
        fs::write(root.join("top.txt"), b"x").unwrap();
        fs::write(root.join("a/b/c/deep file ü.bin"), b"").unwrap();
        let loose = d.path().join("loose.txt");
        fs::write(&loose, b"l").unwrap();
        let (files, ignored, failed) = collect(&[root, loose], "p/", false);
        assert_eq!(files, vec!["p/a/b/c/deep file ü.bin", "p/loose.txt", "p/top.txt"]);
        assert!(ignored.is_empty() && failed == 0);
    }

    #[test]
    fn links_are_ignored_unless_followed_and_loops_are_cut() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        fs::create_dir_all(root.join("sub")).unwrap();
        fs::write(root.join("sub/f"), b"x").unwrap();
        std::os::unix::fs::symlink(&root, root.join("sub/loop")).unwrap();
        std::os::unix::fs::symlink(root.join("sub/f"), root.join("link-to-f")).unwrap();
        std::os::unix::fs::symlink(d.path().join("nowhere"), root.join("dangling")).unwrap();
        let (files, ignored, _) = collect(std::slice::from_ref(&root), "", false);
        assert_eq!(files, vec!["sub/f"]);
        assert_eq!(ignored.len(), 3, "{ignored:?}");
        assert!(ignored.iter().all(|r| r.contains("not followed")), "{ignored:?}");
        let (files, ignored, _) = collect(&[root], "", true);
        assert_eq!(files, vec!["link-to-f", "sub/f"]);
        assert!(ignored.iter().any(|r| r.contains("loop")), "{ignored:?}");
        assert!(ignored.iter().any(|r| r.contains("nothing readable")), "{ignored:?}");
    }

    #[test]
    fn fifos_are_ignored_and_missing_sources_fail() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let (files, ignored, failed) = collect(&[d.path().to_path_buf(), d.path().join("missing")], "", false);
        assert!(files.is_empty());
        assert!(ignored[0].contains("FIFO"), "{ignored:?}");
        assert_eq!(failed, 1);
    }
}
