//! Reading a configuration from disk: one YAML file, or a directory of them merged.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::decode;
use super::diagnostic::{Diagnostic, Diagnostics};
use super::model::Config;
use super::policy::LoadPolicy;
use super::yaml::{self, Location};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The I/O error is part of the message, not a `source`, so that error chains (`{:#}`)
    /// print it once.
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}: no *.yaml or *.yml files in this directory", .0.display())]
    NoFiles(PathBuf),
    #[error("{}: not a regular file ({kind}); the config is read from files or a directory of them", path.display())]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error("{}: the configuration is larger than {MAX_CONFIG_BYTES} bytes (all its files together), the most flotilla reads", path.display())]
    TooLarge { path: PathBuf },
    #[error("{0}")]
    Invalid(#[from] Diagnostics),
}

impl LoadError {
    /// The individual problems, one per line, as `validate` prints them. Control characters
    /// (an ANSI escape in a name) are escaped, so a hostile file cannot rewrite the terminal
    /// or forge log lines.
    pub fn lines(&self) -> Vec<String> {
        let lines = match self {
            LoadError::Invalid(d) => d.0.iter().map(ToString::to_string).collect(),
            other => vec![other.to_string()],
        };
        lines.iter().map(|l| escape_controls(l)).collect()
    }
}

/// `text` with every control character written as a Rust escape (`\u{1b}`, `\n`).
pub fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The most flotilla reads for one configuration, all its files together: far above any real
/// config (100,000 clusters are about 5 MB), far below what would hurt the host.
pub const MAX_CONFIG_BYTES: u64 = 64 * 1024 * 1024;

/// A configuration and the files it was read from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub files: Vec<PathBuf>,
}

/// Loads `path`: a YAML file, or a directory whose `*.yaml`/`*.yml` files are merged. Hidden
/// entries are skipped, which is what makes a Kubernetes ConfigMap mount (`..data` and
/// timestamped directories beside symlinks) read as just its files.
pub fn load(path: &Path) -> Result<Loaded, LoadError> {
    load_with(path, &LoadPolicy::default())
}

/// [`load`], with what the config may name on the host (`--secrets-dir`, `--access-log-dir`).
pub fn load_with(path: &Path, policy: &LoadPolicy) -> Result<Loaded, LoadError> {
    let files = files_of(path)?;
    let mut sources = Vec::with_capacity(files.len());
    let mut budget = MAX_CONFIG_BYTES;
    for file in &files {
        let bytes = read_capped(file, &mut budget)?;
        let text = String::from_utf8(bytes)
            .map_err(|e| LoadError::Invalid(Diagnostics(vec![not_utf8(file, &e)])))?;
        sources.push((file.clone(), text));
    }
    let config = parse_sources_with(&sources, policy)?;
    Ok(Loaded { config, files })
}

/// The files `load` reads for `path`, in the order it reads them.
pub fn files_of(path: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let io = |error| LoadError::Io {
        path: path.to_path_buf(),
        error,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || !(name.ends_with(".yaml") || name.ends_with(".yml")) {
            continue;
        }
        let file = entry.path();
        // Follows symlinks: ConfigMap files are links into `..data` (swapped atomically, so
        // they never dangle). A file named like config that cannot be read as config (a
        // dangling link, a FIFO, a device, a directory) is an error naming it: skipping it
        // would silently drop its listeners and clusters from every Envoy. A reload that
        // fails this way is retried (`watch::retry`) and serve keeps the last good config.
        let meta = std::fs::metadata(&file).map_err(|error| LoadError::Io {
            path: file.clone(),
            error,
        })?;
        let kind = kind_of(&meta.file_type());
        if kind != "regular file" {
            return Err(LoadError::NotRegular { path: file, kind });
        }
        files.push(file);
    }
    files.sort();
    if files.is_empty() {
        return Err(LoadError::NoFiles(path.to_path_buf()));
    }
    Ok(files)
}

/// Reads a regular file of at most `budget` bytes and takes what it read from the budget.
/// Anything else is refused before it is read: a FIFO would block the reader forever and a
/// device like `/dev/zero` never ends.
pub(crate) fn read_capped(file: &Path, budget: &mut u64) -> Result<Vec<u8>, LoadError> {
    let io = |error| LoadError::Io {
        path: file.to_path_buf(),
        error,
    };
    let mut f = open_regular(file)?;
    let mut bytes = Vec::new();
    (&mut f)
        .take(*budget + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    let read = bytes.len() as u64;
    if read > *budget {
        return Err(LoadError::TooLarge {
            path: file.to_path_buf(),
        });
    }
    *budget -= read;
    Ok(bytes)
}

/// Opens `file` for reading if it is a regular file (after symlinks), without blocking on a
/// FIFO: other files flotilla reads (the history file, `--revision-file`) take the same care.
pub(crate) fn open_regular(file: &Path) -> Result<std::fs::File, LoadError> {
    let io = |error| LoadError::Io {
        path: file.to_path_buf(),
        error,
    };
    let regular = |meta: &std::fs::Metadata| {
        let kind = kind_of(&meta.file_type());
        match kind {
            "regular file" => Ok(()),
            _ => Err(LoadError::NotRegular {
                path: file.to_path_buf(),
                kind,
            }),
        }
    };
    regular(&std::fs::metadata(file).map_err(io)?)?;
    // Non-blocking, should the file have been swapped for a FIFO since it was looked at.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(file)
        .map_err(io)?;
    regular(&f.metadata().map_err(io)?)?;
    Ok(f)
}

fn kind_of(t: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_file() {
        "regular file"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a file"
    }
}

/// Where the first byte that is not UTF-8 is, as line:col (col counts characters).
fn not_utf8(file: &Path, e: &std::string::FromUtf8Error) -> Diagnostic {
    let bytes = e.as_bytes();
    let valid = e.utf8_error().valid_up_to();
    let before = std::str::from_utf8(&bytes[..valid]).unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .unwrap_or_default()
        .chars()
        .count()
        + 1;
    Diagnostic {
        loc: Location::new(Arc::new(file.to_path_buf()), line, col),
        field: String::new(),
        message: format!(
            "invalid UTF-8 (byte 0x{:02x}): YAML files must be UTF-8",
            bytes[valid]
        ),
    }
}

/// Parses and validates in-memory sources, each named by the path shown in diagnostics.
pub fn parse_sources(sources: &[(PathBuf, String)]) -> Result<Config, Diagnostics> {
    parse_sources_with(sources, &LoadPolicy::default())
}

/// [`parse_sources`] under `policy`.
pub fn parse_sources_with(
    sources: &[(PathBuf, String)],
    policy: &LoadPolicy,
) -> Result<Config, Diagnostics> {
    let mut parsed = Vec::with_capacity(sources.len());
    let mut syntax = Vec::new();
    for (path, text) in sources {
        let file = Arc::new(path.clone());
        match yaml::parse(text, file.clone()) {
            Ok(root) => parsed.push((Location::new(file, 1, 1), root)),
            Err(e) => syntax.push(Diagnostic {
                loc: e.loc,
                field: String::new(),
                message: format!("invalid YAML: {}", e.message),
            }),
        }
    }
    // Decoding the readable files alone would report references into the unreadable ones as
    // unknown; the syntax errors are what the operator needs to fix first.
    if !syntax.is_empty() {
        syntax.sort();
        return Err(Diagnostics(syntax));
    }
    decode::decode(&parsed, Arc::new(policy.clone()))
}

/// Parses one in-memory YAML document (tests, the embedded quickstart).
pub fn parse_str(name: &str, text: &str) -> Result<Config, Diagnostics> {
    parse_sources(&[(PathBuf::from(name), text.to_string())])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_lines(path: &Path) -> Vec<String> {
        load(path).expect_err("refused").lines()
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("flotilla.yaml");
        crate::util::mkfifo(&fifo);
        let lines = load_lines(&fifo);
        assert!(lines[0].ends_with("flotilla.yaml: not a regular file (a FIFO); the config is read from files or a directory of them"), "{lines:?}");
    }

    /// A directory of one good file and `bad.yaml`, made by `make`.
    fn dir_with(make: impl FnOnce(&Path)) -> (tempfile::TempDir, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("good.yaml"),
            "version: 1\nclusters:\n  api: { endpoints: [127.0.0.1:1] }\n",
        )
        .unwrap();
        make(&dir.path().join("bad.yaml"));
        let lines = load_lines(dir.path());
        (dir, lines)
    }

    #[test]
    fn an_unreadable_file_in_a_directory_is_an_error_naming_it() {
        let (_d, lines) =
            dir_with(|bad| std::os::unix::fs::symlink("/nonexistent/gone.yaml", bad).unwrap());
        assert!(lines[0].contains("bad.yaml: No such file"), "{lines:?}");
        let (_d, lines) = dir_with(|bad| {
            crate::util::mkfifo(bad);
        });
        assert!(
            lines[0].contains("bad.yaml: not a regular file (a FIFO)"),
            "{lines:?}"
        );
        let (_d, lines) = dir_with(|bad| std::os::unix::fs::symlink("/dev/zero", bad).unwrap());
        assert!(
            lines[0].contains("bad.yaml: not a regular file (a character device)"),
            "{lines:?}"
        );
        let (_d, lines) = dir_with(|bad| std::fs::create_dir(bad).unwrap());
        assert!(
            lines[0].contains("bad.yaml: not a regular file (a directory)"),
            "{lines:?}"
        );
    }

    #[test]
    fn a_device_is_refused_without_reading_it() {
        let lines = load_lines(Path::new("/dev/zero"));
        assert_eq!(
            lines,
            vec![
                "/dev/zero: not a regular file (a character device); the config is read from files or a directory of them"
            ]
        );
    }

    #[test]
    fn the_size_of_a_configuration_is_capped() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("big.yaml");
        let f = std::fs::File::create(&file).unwrap();
        f.set_len(MAX_CONFIG_BYTES + 1).unwrap();
        let lines = load_lines(&file);
        assert!(lines[0].contains("larger than 67108864 bytes"), "{lines:?}");
        let mut budget = 10;
        assert!(
            read_capped(&file, &mut budget).is_err(),
            "read stops at the cap"
        );
    }

    #[test]
    fn invalid_utf8_is_reported_with_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.yaml");
        std::fs::write(&file, b"version: 1\nclusters:\n  w\xc3\xa9b\xff: {}\n").unwrap();
        let lines = load_lines(&file);
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0].ends_with("bad.yaml:3:6: invalid UTF-8 (byte 0xff): YAML files must be UTF-8"),
            "{lines:?}"
        );
    }

    #[test]
    fn control_characters_in_errors_are_escaped() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ansi.yaml");
        std::fs::write(&file, "version: 1\nclusters:\n  \"\\e[31mred\\e[0m\": {}\n").unwrap();
        let lines = load_lines(&file);
        assert!(!lines.iter().any(|l| l.contains('\u{1b}')), "{lines:?}");
        assert!(
            lines[0].contains("`\\u{1b}[31mred\\u{1b}[0m` is not a valid name"),
            "{lines:?}"
        );
    }

    #[test]
    fn an_io_error_is_printed_once_in_an_error_chain() {
        let e = load(Path::new("/nonexistent/flotilla.yaml")).unwrap_err();
        let chain = format!("{:#}", anyhow::Error::from(e));
        assert_eq!(chain.matches("No such file").count(), 1, "{chain}");
    }
}
