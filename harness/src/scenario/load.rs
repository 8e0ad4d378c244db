//! Reading scenario files and directories, with errors that name the file,
//! line and column.

use std::fmt;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::raw::{RawMulti, RawScenario};
use super::{Location, Scenario};

/// An error in one scenario file, or between files.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file or directory cannot be read.
    #[error("{} cannot be read", path.display())]
    Read {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid scenario file.
    #[error("{location}: {reason}")]
    Invalid {
        /// Where.
        location: Location,
        /// Why, as a sentence.
        reason: String,
    },
    /// Two scenarios have the same name.
    #[error("{second}: scenario `{name}` is already defined at {first}")]
    Duplicate {
        /// The name.
        name: String,
        /// The first definition.
        first: Location,
        /// The second definition.
        second: Location,
    },
    /// The file defines no scenario.
    #[error("{}: the file defines no scenario", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// A directory holds no scenario file.
    #[error("{}: the directory holds no *.toml scenario file", path.display())]
    EmptyDirectory {
        /// The directory.
        path: PathBuf,
    },
}

/// Every error found while loading several files.
#[derive(Debug, thiserror::Error)]
pub struct LoadErrors(pub Vec<LoadError>);

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                write!(f, ": {s}")?;
                source = s.source();
            }
        }
        Ok(())
    }
}

/// The 1-based line and column of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Parses the scenarios in `text`, read from `path` (used in errors).
pub fn load_str(text: &str, path: &Path) -> Result<Vec<Scenario>, LoadError> {
    let locate = |offset: usize| {
        let (line, column) = line_column(text, offset);
        Location {
            file: path.to_path_buf(),
            line,
            column,
        }
    };
    let invalid = |offset: usize, reason: String| LoadError::Invalid {
        location: locate(offset),
        reason,
    };
    let from_toml = |e: toml::de::Error| {
        let offset = e.span().map_or(0, |s| s.start);
        invalid(offset, e.message().trim_end().to_string())
    };
    let table: toml::Table = toml::from_str(text).map_err(from_toml)?;
    if table.is_empty() {
        return Err(LoadError::Empty {
            path: path.to_path_buf(),
        });
    }
    let raws: Vec<Spanned<RawScenario>> = if table.contains_key("scenario") {
        toml::from_str::<RawMulti>(text)
            .map_err(from_toml)?
            .scenario
    } else {
        let raw: RawScenario = toml::from_str(text).map_err(from_toml)?;
        vec![Spanned::new(0..text.len(), raw)]
    };
    if raws.is_empty() {
        return Err(LoadError::Empty {
            path: path.to_path_buf(),
        });
    }
    let mut scenarios: Vec<Scenario> = Vec::new();
    for raw in raws {
        let span = raw.span();
        let s = raw
            .into_inner()
            .into_scenario(span, &locate)
            .map_err(|(span, reason)| invalid(span.start, reason))?;
        if let Some(first) = scenarios.iter().find(|x| x.name == s.name) {
            return Err(LoadError::Duplicate {
                name: s.name.clone(),
                first: first.location.clone(),
                second: s.location,
            });
        }
        scenarios.push(s);
    }
    Ok(scenarios)
}

/// Reads the scenarios of one file.
pub fn load_file(path: &Path) -> Result<Vec<Scenario>, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    load_str(&text, path)
}

/// The `*.toml` files under `dir`, recursively, sorted.
fn toml_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), LoadError> {
    let read = |source| LoadError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(read)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(read)?;
    entries.sort();
    for p in entries {
        if p.is_dir() {
            toml_files(&p, out)?;
        } else if p.extension().is_some_and(|e| e == "toml") {
            out.push(p);
        }
    }
    Ok(())
}

/// Reads every scenario in `paths` (files, or directories searched for
/// `*.toml`), checks that names are unique, and returns them sorted by name.
/// Reports every file's first error, not just the first file's.
pub fn load_paths(paths: &[PathBuf]) -> Result<Vec<Scenario>, LoadErrors> {
    let mut errors = Vec::new();
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let before = files.len();
            match toml_files(p, &mut files) {
                Ok(()) if files.len() == before => {
                    errors.push(LoadError::EmptyDirectory { path: p.clone() })
                }
                Ok(()) => {}
                Err(e) => errors.push(e),
            }
        } else {
            files.push(p.clone());
        }
    }
    // A file named twice (`a.toml a.toml`, or a file and its directory)
    // is read once: its scenarios are not duplicates of themselves.
    let mut seen = std::collections::HashSet::new();
    files.retain(|f| seen.insert(std::fs::canonicalize(f).unwrap_or_else(|_| f.clone())));
    let mut all: Vec<Scenario> = Vec::new();
    for f in &files {
        match load_file(f) {
            Ok(scenarios) => {
                for s in scenarios {
                    if let Some(first) = all.iter().find(|x| x.name == s.name) {
                        errors.push(LoadError::Duplicate {
                            name: s.name.clone(),
                            first: first.location.clone(),
                            second: s.location.clone(),
                        });
                    } else {
                        all.push(s);
                    }
                }
            }
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(LoadErrors(errors));
    }
    all.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column() {
        let t = "ab\ncdé\nf";
        assert_eq!(line_column(t, 0), (1, 1));
        assert_eq!(line_column(t, 3), (2, 1));
        assert_eq!(line_column(t, 7), (2, 4));
        assert_eq!(line_column(t, 8), (3, 1));
        assert_eq!(line_column(t, 6), (2, 3)); // inside é: no panic
        assert_eq!(line_column(t, 999), (3, 2));
    }
}
