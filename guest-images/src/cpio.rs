//! A writer for the `newc` cpio format the kernel unpacks as initramfs:
//! directories, regular files, symlinks and device nodes, owned by root,
//! with a fixed modification time so the same inputs give the same bytes.

use std::collections::BTreeMap;
use std::io::{self, Write};

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A directory.
    Dir,
    /// A regular file with its content.
    File(Vec<u8>),
    /// A symbolic link to the target.
    Symlink(String),
    /// A character device (major, minor).
    CharDev(u32, u32),
}

/// One archive entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Permission bits (e.g. 0o755).
    pub mode: u32,
    /// What it is.
    pub kind: EntryKind,
}

/// An archive being assembled: entries by path (without a leading `/`).
/// Parent directories are added automatically; entries are written sorted,
/// so parents come before children.
#[derive(Debug, Clone, Default)]
pub struct Archive {
    entries: BTreeMap<String, Entry>,
    mtime: u32,
}

fn normalize(path: &str) -> String {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join("/")
}

impl Archive {
    /// An empty archive whose entries carry modification time `mtime`.
    pub fn new(mtime: u32) -> Self {
        Self {
            entries: BTreeMap::new(),
            mtime,
        }
    }

    fn add_parents(&mut self, path: &str) {
        let mut parent = String::new();
        let comps: Vec<&str> = path.split('/').collect();
        for comp in &comps[..comps.len().saturating_sub(1)] {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(comp);
            self.entries.entry(parent.clone()).or_insert(Entry {
                mode: 0o755,
                kind: EntryKind::Dir,
            });
        }
    }

    /// Adds (or replaces) an entry.
    pub fn add(&mut self, path: &str, mode: u32, kind: EntryKind) {
        let path = normalize(path);
        if path.is_empty() {
            return;
        }
        self.add_parents(&path);
        self.entries.insert(path, Entry { mode, kind });
    }

    /// Adds a directory.
    pub fn dir(&mut self, path: &str) {
        self.add(path, 0o755, EntryKind::Dir);
    }

    /// Adds a regular file.
    pub fn file(&mut self, path: &str, mode: u32, data: Vec<u8>) {
        self.add(path, mode, EntryKind::File(data));
    }

    /// Adds a symlink.
    pub fn symlink(&mut self, path: &str, target: &str) {
        self.add(path, 0o777, EntryKind::Symlink(target.to_string()));
    }

    /// An entry by path.
    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.entries.get(&normalize(path))
    }

    /// Paths in the archive, sorted.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Writes the archive with its `TRAILER!!!`.
    pub fn write_to(&self, out: &mut impl Write) -> io::Result<()> {
        for (ino, (path, entry)) in (1u32..).zip(self.entries.iter()) {
            let (type_bits, data, rdev): (u32, &[u8], (u32, u32)) = match &entry.kind {
                EntryKind::Dir => (0o040000, &[], (0, 0)),
                EntryKind::File(d) => (0o100000, d, (0, 0)),
                EntryKind::Symlink(t) => (0o120000, t.as_bytes(), (0, 0)),
                EntryKind::CharDev(maj, min) => (0o020000, &[], (*maj, *min)),
            };
            let nlink = if matches!(entry.kind, EntryKind::Dir) {
                2
            } else {
                1
            };
            write_header(
                out,
                ino,
                type_bits | (entry.mode & 0o7777),
                nlink,
                self.mtime,
                data.len(),
                rdev,
                path,
            )?;
            out.write_all(data)?;
            pad(out, data.len())?;
        }
        write_header(out, 0, 0, 1, 0, 0, (0, 0), "TRAILER!!!")
    }

    /// The archive as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        // Writing to a Vec cannot fail.
        let _ = self.write_to(&mut v);
        v
    }
}

#[allow(clippy::too_many_arguments)]
fn write_header(
    out: &mut impl Write,
    ino: u32,
    mode: u32,
    nlink: u32,
    mtime: u32,
    filesize: usize,
    rdev: (u32, u32),
    name: &str,
) -> io::Result<()> {
    let namesize = name.len() + 1;
    let header = format!(
        "070701{ino:08X}{mode:08X}{uid:08X}{gid:08X}{nlink:08X}{mtime:08X}{filesize:08X}{dmaj:08X}{dmin:08X}{rmaj:08X}{rmin:08X}{namesize:08X}{check:08X}",
        uid = 0,
        gid = 0,
        filesize = filesize as u32,
        dmaj = 0,
        dmin = 0,
        rmaj = rdev.0,
        rmin = rdev.1,
        check = 0,
    );
    out.write_all(header.as_bytes())?;
    out.write_all(name.as_bytes())?;
    out.write_all(&[0])?;
    pad(out, 110 + namesize)
}

fn pad(out: &mut impl Write, len: usize) -> io::Result<()> {
    let padding = (4 - len % 4) % 4;
    out.write_all(&[0u8; 3][..padding])
}

/// Parses a newc archive back into (path, mode, data) triples; used by tests
/// and by `guest-images` to list an initramfs. Stops at the trailer.
pub fn list(mut data: &[u8]) -> Result<Vec<(String, u32, Vec<u8>)>, String> {
    let mut out = Vec::new();
    let mut offset = 0usize;
    loop {
        if data.len() < 110 {
            return Err(format!("truncated header at {offset}"));
        }
        if &data[..6] != b"070701" {
            return Err(format!("bad magic at {offset}"));
        }
        let field = |i: usize| -> Result<usize, String> {
            let s = std::str::from_utf8(&data[6 + i * 8..14 + i * 8]).map_err(|e| e.to_string())?;
            usize::from_str_radix(s, 16).map_err(|e| e.to_string())
        };
        let mode = field(1)? as u32;
        let filesize = field(6)?;
        let namesize = field(11)?;
        let name_end = 110 + namesize;
        let data_start = name_end.div_ceil(4) * 4;
        let data_end = data_start + filesize;
        let next = data_end.div_ceil(4) * 4;
        if data.len() < data_end || namesize == 0 {
            return Err(format!("truncated entry at {offset}"));
        }
        let name = String::from_utf8_lossy(&data[110..name_end - 1]).into_owned();
        if name == "TRAILER!!!" {
            return Ok(out);
        }
        out.push((name, mode, data[data_start..data_end].to_vec()));
        offset += next.min(data.len());
        data = &data[next.min(data.len())..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_round_trips_with_parents() {
        let mut a = Archive::new(0);
        a.file("/bin/busybox", 0o755, b"ELF...".to_vec());
        a.symlink("bin/sh", "busybox");
        a.add("dev/console", 0o600, EntryKind::CharDev(5, 1));
        a.file("init", 0o755, b"#!/bin/sh\n".to_vec());
        let bytes = a.to_bytes();
        assert_eq!(bytes.len() % 4, 0);
        let entries = list(&bytes).unwrap();
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            ["bin", "bin/busybox", "bin/sh", "dev", "dev/console", "init"]
        );
        assert_eq!(entries[1].2, b"ELF...");
        assert_eq!(entries[1].1, 0o100755);
        assert_eq!(entries[2].2, b"busybox");
        assert_eq!(entries[2].1 & 0o170000, 0o120000);
        assert_eq!(entries[4].1 & 0o170000, 0o020000);
        assert_eq!(entries[0].1, 0o040755);
    }

    #[test]
    fn same_inputs_same_bytes() {
        let build = || {
            let mut a = Archive::new(0);
            a.file("b", 0o644, vec![1, 2, 3]);
            a.file("a", 0o644, vec![4]);
            a.to_bytes()
        };
        assert_eq!(build(), build());
    }

    #[test]
    fn garbage_is_rejected() {
        assert!(list(b"nonsense").is_err());
        assert!(list(&[b'0'; 200]).is_err());
    }
}
