//! Kernel symbols from a `System.map`, to name the function behind a guest
//! instruction pointer (an emulation failure, a triple fault, a profile
//! sample).

use std::path::{Path, PathBuf};

/// Errors from reading a System.map.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read the symbol map {}", .0.display())]
    Read(PathBuf, #[source] std::io::Error),
    /// No line looked like `ADDRESS TYPE NAME`.
    #[error("{} has no symbols (expected lines like `ffffffff81000000 T _text`)", .0.display())]
    Empty(PathBuf),
}

/// Text symbols sorted by address.
#[derive(Debug, Clone, Default)]
pub struct SymbolMap {
    symbols: Vec<(u64, String)>,
}

impl SymbolMap {
    /// Parses System.map text: `ADDRESS TYPE NAME` per line; only code
    /// symbols (types t/T/w/W) are kept.
    pub fn parse(text: &str) -> Self {
        let mut symbols: Vec<(u64, String)> = text
            .lines()
            .filter_map(|line| {
                let mut w = line.split_whitespace();
                let addr = u64::from_str_radix(w.next()?, 16).ok()?;
                let kind = w.next()?;
                let name = w.next()?;
                matches!(kind, "t" | "T" | "w" | "W").then(|| (addr, name.to_owned()))
            })
            .collect();
        symbols.sort();
        Self { symbols }
    }

    /// Reads and parses a System.map file.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Read(path.to_owned(), e))?;
        let map = Self::parse(&text);
        if map.symbols.is_empty() {
            return Err(Error::Empty(path.to_owned()));
        }
        Ok(map)
    }

    /// The symbol containing `addr` and the offset into it.
    pub fn lookup(&self, addr: u64) -> Option<(&str, u64)> {
        let i = self.symbols.partition_point(|(a, _)| *a <= addr);
        let (start, name) = self.symbols.get(i.checked_sub(1)?)?;
        Some((name.as_str(), addr - start))
    }

    /// `name+0xoff` for `addr`, or the bare address.
    pub fn describe(&self, addr: u64) -> String {
        match self.lookup(addr) {
            Some((name, off)) => format!("{name}+{off:#x}"),
            None => format!("{addr:#x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAP: &str = "\
ffffffff81000000 T _text
ffffffff81000000 T startup_64
ffffffff81001000 t helper
ffffffff82000000 D some_data
ffffffff81317830 T __slab_free
garbage line
";

    #[test]
    fn looks_up_functions() {
        let m = SymbolMap::parse(MAP);
        assert_eq!(m.lookup(0xffffffff81317850), Some(("__slab_free", 0x20)));
        assert_eq!(m.lookup(0xffffffff81001000), Some(("helper", 0)));
        assert_eq!(m.describe(0xffffffff81000010), "startup_64+0x10");
        assert_eq!(m.lookup(0x1000), None);
        assert_eq!(m.describe(0x1000), "0x1000");
    }

    #[test]
    fn empty_maps_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("System.map");
        std::fs::write(&p, "ffffffffff600000 D vsyscall\n").unwrap();
        assert!(matches!(SymbolMap::load(&p), Err(Error::Empty(_))));
        assert!(matches!(
            SymbolMap::load(&dir.path().join("none")),
            Err(Error::Read(..))
        ));
    }
}
