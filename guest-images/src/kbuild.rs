//! Building Linux from Debian's `linux-source-*` package, shared by the
//! images test kernel and the kernel-only profile: the host tools a build
//! needs (named by Debian package when missing), unpacking the source
//! tarball, `make` with a fixed build identity so that the same inputs give
//! the same kernel, and checking that a config fragment was honoured.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::apt::{self, PackageRef};
use crate::exec::{self, Tool, DPKG_DEB, MAKE, PATCH, TAR, XZ};
use crate::kernel::fetch_deb;
use crate::step::BuildContext;
use crate::{Error, Result};

const GCC: Tool = Tool {
    program: "gcc",
    package: "gcc",
};
const FLEX: Tool = Tool {
    program: "flex",
    package: "flex",
};
const BISON: Tool = Tool {
    program: "bison",
    package: "bison",
};
const BC: Tool = Tool {
    program: "bc",
    package: "bc",
};
const PERL: Tool = Tool {
    program: "perl",
    package: "perl",
};
/// objtool (always built for x86-64 6.1) needs libelf's headers.
const LIBELF_HEADER: &str = "/usr/include/gelf.h";

/// Fixed build identity (`uname -v`, the banner), so that the same inputs
/// give the same kernel on any machine.
const BUILD_ENV: [(&str, &str); 4] = [
    ("KBUILD_BUILD_USER", "vnetlab"),
    ("KBUILD_BUILD_HOST", "guest-images"),
    ("KBUILD_BUILD_TIMESTAMP", "Thu Jan  1 00:00:00 UTC 1970"),
    ("KBUILD_BUILD_VERSION", "1"),
];

/// Host facts that belong in a kernel build's cache key.
#[derive(Debug, Clone)]
pub struct Tools {
    /// `gcc --version`, first line.
    pub compiler: String,
}

/// Checks every host tool a kernel build needs (x86-64, make, gcc, flex,
/// bison, bc, perl, tar, xz, patch, dpkg-deb, libelf headers); the error
/// names the Debian package of a missing one.
pub fn check_tools() -> Result<Tools> {
    if std::env::consts::ARCH != "x86_64" {
        return Err(Error::Input(format!(
            "the lab's kernels are built for x86-64 on an x86-64 host; this host is {}",
            std::env::consts::ARCH
        )));
    }
    for tool in [MAKE, GCC, FLEX, BISON, BC, PERL, TAR, XZ, PATCH, DPKG_DEB] {
        exec::find_tool(tool)?;
    }
    if !Path::new(LIBELF_HEADER).exists() {
        return Err(exec::ExecError::MissingTool {
            program: "libelf headers (gelf.h, for objtool)",
            package: "libelf-dev",
        }
        .into());
    }
    let out = exec::run(GCC, ["--version"], None, "gcc --version")?;
    let compiler = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    Ok(Tools { compiler })
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Downloads `source` (a `linux-source-*` package), unpacks its tarball and
/// moves the kernel tree to `dest` (which must not exist yet). `scratch` is
/// for the unpacked package.
pub fn unpack_source(
    ctx: &BuildContext,
    source: &PackageRef,
    dest: &Path,
    scratch: &Path,
) -> Result<()> {
    let deb = fetch_deb(ctx, source)?;
    let unpacked = scratch.join("deb");
    apt::extract(&deb, &unpacked)?;
    let tarball = find_tarball(&unpacked.join("usr/src"))?;
    let staging = scratch.join("extract");
    std::fs::create_dir_all(&staging).map_err(io(&staging))?;
    let args: [&std::ffi::OsStr; 5] = [
        "-xJf".as_ref(),
        tarball.as_os_str(),
        "-C".as_ref(),
        staging.as_os_str(),
        "--no-same-owner".as_ref(),
    ];
    exec::run(TAR, args, None, &format!("unpacking {}", tarball.display()))?;
    let top = single_dir(&staging)?;
    if !top.join("Makefile").exists() {
        return Err(Error::Input(format!(
            "{source}'s tarball holds no kernel tree (no Makefile in {})",
            top.display()
        )));
    }
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    std::fs::rename(&top, dest).map_err(io(dest))?;
    std::fs::remove_dir_all(&staging).map_err(io(&staging))?;
    std::fs::remove_dir_all(&unpacked).map_err(io(&unpacked))?;
    Ok(())
}

fn find_tarball(dir: &Path) -> Result<PathBuf> {
    let entries = std::fs::read_dir(dir).map_err(io(dir))?;
    for entry in entries {
        let path = entry.map_err(io(dir))?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with("linux-source-") && name.ends_with(".tar.xz") {
            return Ok(path);
        }
    }
    Err(Error::Input(format!(
        "the linux-source package has no {}/linux-source-*.tar.xz",
        dir.display()
    )))
}

fn single_dir(dir: &Path) -> Result<PathBuf> {
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        if path.is_dir() {
            dirs.push(path);
        }
    }
    match dirs.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(Error::Input(format!(
            "the kernel source tarball did not unpack to one directory in {}",
            dir.display()
        ))),
    }
}

/// `-jN` for this host's parallelism.
pub fn jobs_arg() -> String {
    let jobs = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    format!("-j{jobs}")
}

/// Runs kbuild's `make ARCH=x86_64 ARGS` in the tree `src`, building into
/// `out` (`O=`) when given, with the fixed build identity and without the
/// make/cargo job-server variables of whatever started us.
pub fn make(src: &Path, out: Option<&Path>, args: &[&str], what: &str) -> Result<Output> {
    let program = exec::find_tool(MAKE)?;
    let mut cmd = Command::new(program);
    cmd.current_dir(src);
    if let Some(out) = out {
        cmd.arg(format!("O={}", out.display()));
    }
    cmd.arg("ARCH=x86_64")
        .args(args)
        .envs(BUILD_ENV)
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .env_remove("MAKELEVEL")
        .env_remove("CARGO_MAKEFLAGS")
        .stdin(Stdio::null());
    Ok(exec::run_command(cmd, what)?)
}

/// `CONFIG_X=v` and `# CONFIG_X is not set` (value `n`) lines of a fragment
/// or `.config`.
pub fn parse_fragment(text: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if let Some(name) = line
            .strip_prefix("# ")
            .and_then(|l| l.strip_suffix(" is not set"))
        {
            if name.starts_with("CONFIG_") {
                out.insert(name.to_string(), "n".to_string());
            }
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) = line
            .split_once('=')
            .filter(|(n, _)| n.starts_with("CONFIG_"))
            .ok_or_else(|| Error::Input(format!("`{line}` is not a Kconfig line")))?;
        out.insert(name.to_string(), value.to_string());
    }
    Ok(out)
}

/// Fragment lines the final configuration did not honour, as
/// `CONFIG_X=wanted (got v)`.
pub fn unmet_config(fragment: &str, config: &str) -> Result<Vec<String>> {
    let wanted = parse_fragment(fragment)?;
    let have = parse_fragment(config)?;
    Ok(wanted
        .iter()
        .filter_map(|(name, value)| {
            let got = have.get(name).map(String::as_str).unwrap_or("n");
            (got != value).then(|| format!("{name}={value} (got {got})"))
        })
        .collect())
}

/// Configures the tree (`make tinyconfig NAME`, where `NAME` is a fragment
/// under `kernel/configs/` holding `fragment`) and checks that every line of
/// the fragment took. Returns the resulting `.config` text.
pub fn configure(
    src: &Path,
    out: Option<&Path>,
    fragment_name: &str,
    fragment: &str,
    what: &str,
) -> Result<String> {
    let fragment_path = src.join("kernel/configs").join(fragment_name);
    if std::fs::read(&fragment_path).ok().as_deref() != Some(fragment.as_bytes()) {
        std::fs::write(&fragment_path, fragment).map_err(io(&fragment_path))?;
    }
    make(
        src,
        out,
        &["tinyconfig", fragment_name],
        &format!("configuring {what} (make tinyconfig {fragment_name})"),
    )?;
    let config_path = out.unwrap_or(src).join(".config");
    let config = std::fs::read_to_string(&config_path).map_err(io(&config_path))?;
    let unmet = unmet_config(fragment, &config)?;
    if !unmet.is_empty() {
        return Err(Error::Input(format!(
            "the configuration of {what} did not take these lines of {fragment_name}: {}",
            unmet.join(", ")
        )));
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unmet_fragment_lines_are_named() {
        let fragment = "# c\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=3\n";
        let config = "CONFIG_A=y\nCONFIG_B=y\n# CONFIG_C is not set\n";
        assert_eq!(
            unmet_config(fragment, config).unwrap(),
            ["CONFIG_B=n (got y)", "CONFIG_C=3 (got n)"]
        );
        assert!(unmet_config(fragment, "CONFIG_A=y\nCONFIG_C=3\n")
            .unwrap()
            .is_empty());
        assert!(parse_fragment("garbage line").is_err());
    }

    #[test]
    fn single_dir_wants_exactly_one() {
        let dir = tempfile::tempdir().unwrap();
        assert!(single_dir(dir.path()).is_err());
        std::fs::create_dir(dir.path().join("linux-source-6.1")).unwrap();
        assert_eq!(
            single_dir(dir.path()).unwrap(),
            dir.path().join("linux-source-6.1")
        );
        std::fs::create_dir(dir.path().join("other")).unwrap();
        assert!(single_dir(dir.path()).is_err());
    }

    #[test]
    fn find_tarball_names_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let err = find_tarball(dir.path()).unwrap_err().to_string();
        assert!(err.contains("linux-source-*.tar.xz"), "{err}");
        std::fs::write(dir.path().join("linux-source-6.1.tar.xz"), b"").unwrap();
        assert!(find_tarball(dir.path()).is_ok());
    }
}
