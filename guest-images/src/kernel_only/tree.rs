//! The persistent kernel tree of the kernel-only profile: one extracted
//! `linux-source-6.1` per source version under `<cache>/trees/`, with the
//! profile's files synchronised into it (only changed files are rewritten,
//! so kbuild rebuilds incrementally) and an out-of-tree build directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{patches, Variant, CONFIG_FRAGMENT, FRAGMENT_TREE_PATH, PROBE_FILES};
use crate::apt::PackageRef;
use crate::cache;
use crate::exec::{self, PATCH};
use crate::kbuild::{self, io};
use crate::step::{BuildContext, StepOutput};
use crate::{bzimage, Error, Result};

/// Bumped when the tree layout or extraction changes: old trees are redone.
const TREE_RECIPE: u32 = 1;

/// What the tree holds beyond the pristine source.
#[derive(Debug, Default, Serialize, Deserialize)]
struct TreeState {
    source: Option<PackageRef>,
    recipe: u32,
    /// Files this profile replaced or created, by path in the tree; `true`
    /// when the pristine tree did not have the file.
    managed: BTreeMap<String, bool>,
}

/// A kernel tree: `src/` (the source), `pristine/` (original copies of the
/// files this profile changed), `build/` (kbuild's `O=`), `state.json`.
struct Tree {
    root: PathBuf,
    state: TreeState,
}

impl Tree {
    fn src(&self) -> PathBuf {
        self.root.join("src")
    }

    fn build_dir(&self) -> PathBuf {
        self.root.join("build")
    }

    fn state_path(&self) -> PathBuf {
        self.root.join("state.json")
    }

    fn save(&self) -> Result<()> {
        let text = serde_json::to_vec_pretty(&self.state)
            .map_err(|e| Error::Input(format!("tree state: {e}")))?;
        Ok(cache::write_atomic(&self.state_path(), &text)?)
    }

    /// The original content of `rel` (`None`: the pristine tree lacks it).
    fn pristine(&self, rel: &str) -> Result<Option<Vec<u8>>> {
        let path = match self.state.managed.get(rel) {
            Some(true) => return Ok(None),
            Some(false) => self.root.join("pristine").join(rel),
            None => self.src().join(rel),
        };
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Io { path, source }),
        }
    }

    /// Makes the tree's profile files equal `desired`, restoring files that
    /// are no longer wanted; a file is written only when its bytes change.
    /// Returns the paths written.
    fn sync(&mut self, desired: &BTreeMap<String, Vec<u8>>) -> Result<Vec<String>> {
        let mut written = Vec::new();
        for rel in desired.keys() {
            if self.state.managed.contains_key(rel) {
                continue;
            }
            let original = self.src().join(rel);
            let created = !original.exists();
            if !created {
                let copy = self.root.join("pristine").join(rel);
                if let Some(dir) = copy.parent() {
                    std::fs::create_dir_all(dir).map_err(io(dir))?;
                }
                std::fs::copy(&original, &copy).map_err(io(&copy))?;
            }
            self.state.managed.insert(rel.clone(), created);
            self.save()?;
        }
        let stale: Vec<String> = self
            .state
            .managed
            .keys()
            .filter(|k| !desired.contains_key(*k))
            .cloned()
            .collect();
        for rel in stale {
            let target = self.src().join(&rel);
            match self.pristine(&rel)? {
                None => {
                    if target.exists() {
                        std::fs::remove_file(&target).map_err(io(&target))?;
                    }
                }
                Some(bytes) => {
                    write_if_changed(&target, &bytes)?;
                }
            }
            written.push(rel.clone());
            self.state.managed.remove(&rel);
            self.save()?;
            let copy = self.root.join("pristine").join(&rel);
            let _ = std::fs::remove_file(copy);
        }
        for (rel, bytes) in desired {
            if write_if_changed(&self.src().join(rel), bytes)? {
                written.push(rel.clone());
            }
        }
        Ok(written)
    }
}

fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<bool> {
    if std::fs::read(path).ok().as_deref() == Some(bytes) {
        return Ok(false);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    std::fs::write(path, bytes).map_err(io(path))?;
    Ok(true)
}

/// The files a unified diff changes (its `+++ b/PATH` lines, `-p1`).
pub(super) fn patched_files(patch: &str) -> Result<Vec<String>> {
    let files: Vec<String> = patch
        .lines()
        .filter_map(|l| l.strip_prefix("+++ "))
        .map(|rest| rest.split('\t').next().unwrap_or(rest).trim())
        .map(|p| p.split_once('/').map(|(_, r)| r).unwrap_or(p).to_string())
        .collect();
    if files.is_empty() || files.iter().any(|f| f.is_empty() || f.contains("..")) {
        return Err(Error::Input(
            "a kernel-only patch names no file or an unsafe path".into(),
        ));
    }
    Ok(files)
}

fn tree_root(ctx: &BuildContext, source: &PackageRef) -> PathBuf {
    let safe: String = source
        .version
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || ".+-~".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    ctx.cache
        .root()
        .join("trees")
        .join(format!("kernel-only-{}-{safe}", source.name))
}

/// Opens the tree of `source`, extracting it first when it is missing or
/// was made by another recipe. Returns the tree and whether it is new.
fn open_tree(ctx: &BuildContext, source: &PackageRef, scratch: &Path) -> Result<(Tree, bool)> {
    let root = tree_root(ctx, source);
    let state_path = root.join("state.json");
    let state: Option<TreeState> = std::fs::read(&state_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    if let Some(state) = state {
        if state.source.as_ref() == Some(source)
            && state.recipe == TREE_RECIPE
            && root.join("src/Makefile").exists()
        {
            return Ok((Tree { root, state }, false));
        }
    }
    if root.exists() {
        log::info!("removing the outdated kernel tree {}", root.display());
        std::fs::remove_dir_all(&root).map_err(io(&root))?;
    }
    ctx.progress.note(&format!(
        "extracting {source} into {} (once per source version)",
        root.display()
    ));
    kbuild::unpack_source(ctx, source, &root.join("src"), scratch)?;
    let tree = Tree {
        root,
        state: TreeState {
            source: Some(source.clone()),
            recipe: TREE_RECIPE,
            managed: BTreeMap::new(),
        },
    };
    tree.save()?;
    Ok((tree, true))
}

/// The content every profile file should have for `variant`: the patched
/// files (patches applied to the pristine ones), the probe and the fragment.
fn desired_files(
    tree: &Tree,
    variant: Variant,
    scratch: &Path,
) -> Result<BTreeMap<String, Vec<u8>>> {
    let work = scratch.join("patched");
    let mut desired = BTreeMap::new();
    let mut touched: Vec<String> = Vec::new();
    for (name, text) in patches(variant) {
        for rel in patched_files(text)? {
            if touched.contains(&rel) {
                continue;
            }
            if let Some(bytes) = tree.pristine(&rel)? {
                write_if_changed(&work.join(&rel), &bytes)?;
            }
            touched.push(rel);
        }
        let patch_file = scratch.join(name);
        std::fs::write(&patch_file, text).map_err(io(&patch_file))?;
        let args: Vec<&std::ffi::OsStr> = vec![
            "-p1".as_ref(),
            "--batch".as_ref(),
            "--forward".as_ref(),
            "--fuzz=0".as_ref(),
            "--no-backup-if-mismatch".as_ref(),
            "-d".as_ref(),
            work.as_os_str(),
            "-i".as_ref(),
            patch_file.as_os_str(),
        ];
        std::fs::create_dir_all(&work).map_err(io(&work))?;
        exec::run(
            PATCH,
            args,
            None,
            &format!("applying {name} to the kernel source"),
        )?;
    }
    for rel in touched {
        let path = work.join(&rel);
        desired.insert(rel, std::fs::read(&path).map_err(io(&path))?);
    }
    for (path, text) in PROBE_FILES {
        desired.insert(path.to_string(), text.as_bytes().to_vec());
    }
    desired.insert(
        FRAGMENT_TREE_PATH.to_string(),
        CONFIG_FRAGMENT.as_bytes().to_vec(),
    );
    Ok(desired)
}

/// The step body: brings the tree to `variant`, configures, builds
/// `vmlinux` and hands back vmlinux, System.map and .config.
pub(super) fn build_kernel(
    ctx: &BuildContext,
    variant: Variant,
    source: &PackageRef,
    scratch: &Path,
) -> Result<StepOutput> {
    let _lock = ctx.cache.lock(&format!(
        "kernel-only-tree-{}",
        cache::sha256_hex(source.to_string().as_bytes())
    ))?;
    let (mut tree, fresh) = open_tree(ctx, source, scratch)?;
    let desired = desired_files(&tree, variant, scratch)?;
    let written = tree.sync(&desired)?;
    log::info!(
        "kernel-only {variant}: tree {} ({}), files changed: {}",
        tree.root.display(),
        if fresh { "new" } else { "reused" },
        if written.is_empty() {
            "none".to_string()
        } else {
            written.join(", ")
        }
    );
    std::fs::create_dir_all(tree.build_dir()).map_err(io(&tree.build_dir()))?;

    let config_name = FRAGMENT_TREE_PATH.trim_start_matches("kernel/configs/");
    kbuild::configure(
        &tree.src(),
        Some(&tree.build_dir()),
        config_name,
        CONFIG_FRAGMENT,
        "the kernel-only kernel",
    )?;
    let config_path = tree.build_dir().join(".config");

    let jobs = kbuild::jobs_arg();
    if fresh {
        ctx.progress.note(&format!(
            "building the kernel-only kernel from scratch with make {jobs} (about 5-6 minutes on 2 cores); later builds are incremental"
        ));
    }
    let out = kbuild::make(
        &tree.src(),
        Some(&tree.build_dir()),
        &[&jobs, "vmlinux"],
        &format!("building the kernel-only {variant} kernel (make vmlinux)"),
    )?;
    let compiled = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.trim_start().starts_with("CC "))
        .count() as u64;

    let release_path = tree.build_dir().join("include/config/kernel.release");
    let version = std::fs::read_to_string(&release_path)
        .map_err(io(&release_path))?
        .trim()
        .to_string();
    let vmlinux = scratch.join("vmlinux");
    let built = tree.build_dir().join("vmlinux");
    std::fs::copy(&built, &vmlinux).map_err(io(&built))?;
    let elf = std::fs::read(&vmlinux).map_err(io(&vmlinux))?;
    bzimage::check_kernel_elf(&elf).map_err(|source| Error::BzImage {
        image: built.display().to_string(),
        source,
    })?;
    let map = scratch.join("System.map");
    let built_map = tree.build_dir().join("System.map");
    std::fs::copy(&built_map, &map).map_err(io(&built_map))?;
    let cfg = scratch.join("config");
    std::fs::copy(&config_path, &cfg).map_err(io(&config_path))?;
    let tag = format!("{version}-kernel-only-{variant}");
    Ok(StepOutput::default()
        .file("vmlinux", vmlinux, format!("vmlinux-{tag}"))
        .file("system_map", map, format!("System.map-{tag}"))
        .file("config", cfg, format!("config-{tag}"))
        .meta(json!({
            "version": version,
            "compiled_objects": compiled,
            "fresh_tree": fresh,
        })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patched_files_reads_plus_lines() {
        let p = "hdr\n--- a/x/y.c\t2020\n+++ b/x/y.c\t2020\n@@ -1 +1 @@\n";
        assert_eq!(patched_files(p).unwrap(), ["x/y.c"]);
        assert!(patched_files("no diff here").is_err());
        assert!(patched_files("+++ b/../etc/passwd\n").is_err());
    }

    #[test]
    fn sync_writes_changes_and_restores_originals() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        std::fs::create_dir_all(root.join("src/d")).unwrap();
        std::fs::write(root.join("src/d/orig.c"), b"orig").unwrap();
        std::fs::write(root.join("src/Makefile"), b"m").unwrap();
        let mut tree = Tree {
            root: root.clone(),
            state: TreeState::default(),
        };
        let mut want = BTreeMap::new();
        want.insert("d/orig.c".to_string(), b"patched".to_vec());
        want.insert("d/new.c".to_string(), b"new".to_vec());
        assert_eq!(tree.sync(&want).unwrap(), ["d/new.c", "d/orig.c"]);
        assert_eq!(
            std::fs::read(root.join("src/d/orig.c")).unwrap(),
            b"patched"
        );
        assert_eq!(tree.pristine("d/orig.c").unwrap().unwrap(), b"orig");
        assert_eq!(tree.pristine("d/new.c").unwrap(), None);
        assert!(tree.sync(&want).unwrap().is_empty(), "nothing changed");

        want.clear();
        assert_eq!(tree.sync(&want).unwrap(), ["d/new.c", "d/orig.c"]);
        assert_eq!(std::fs::read(root.join("src/d/orig.c")).unwrap(), b"orig");
        assert!(!root.join("src/d/new.c").exists());
        assert!(tree.state.managed.is_empty());
        let saved: TreeState =
            serde_json::from_slice(&std::fs::read(root.join("state.json")).unwrap()).unwrap();
        assert!(saved.managed.is_empty());
    }
}
