//! Host tools: finding them (and naming the Debian package that provides a
//! missing one) and running them with their output kept for error reports.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// How many lines of a failed command's output an error carries.
pub const LOG_TAIL_LINES: usize = 25;

/// A host program this crate runs, with the Debian package that provides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tool {
    /// The program name looked up in `PATH`.
    pub program: &'static str,
    /// The Debian package that installs it.
    pub package: &'static str,
}

/// `apt-get`, for `apt-get download`.
pub const APT_GET: Tool = Tool {
    program: "apt-get",
    package: "apt",
};
/// `apt-cache`, to find package versions.
pub const APT_CACHE: Tool = Tool {
    program: "apt-cache",
    package: "apt",
};
/// `dpkg-deb`, to unpack `.deb` files.
pub const DPKG_DEB: Tool = Tool {
    program: "dpkg-deb",
    package: "dpkg",
};
/// `dpkg`, to compare Debian versions.
pub const DPKG: Tool = Tool {
    program: "dpkg",
    package: "dpkg",
};
/// `tar`, to take single files out of the kernel source tarball.
pub const TAR: Tool = Tool {
    program: "tar",
    package: "tar",
};
/// `xz`, which `tar -J` runs to decompress the kernel source tarball.
pub const XZ: Tool = Tool {
    program: "xz",
    package: "xz-utils",
};
/// `make`, for the out-of-tree module build.
pub const MAKE: Tool = Tool {
    program: "make",
    package: "make",
};
/// `gcc-12`, the compiler Debian's bookworm kernels were built with.
pub const GCC_12: Tool = Tool {
    program: "gcc-12",
    package: "gcc-12",
};
/// `patch`, to apply the driver patches.
pub const PATCH: Tool = Tool {
    program: "patch",
    package: "patch",
};
/// `strip`, to drop debug info from the built module as Debian does.
pub const STRIP: Tool = Tool {
    program: "strip",
    package: "binutils",
};
/// QEMU with TCG, the reference virtio-net implementation.
pub const QEMU: Tool = Tool {
    program: "qemu-system-x86_64",
    package: "qemu-system-x86",
};

/// Errors from finding or running host tools.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The program is not in `PATH`.
    #[error("The host tool `{program}` is missing: install the Debian package `{package}` (apt-get install {package}).")]
    MissingTool {
        /// Program name.
        program: &'static str,
        /// Debian package providing it.
        package: &'static str,
    },
    /// The program could not be started.
    #[error("`{program}` could not be started.")]
    Spawn {
        /// Program name.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The program ran and failed.
    #[error("{what} failed ({status}); last lines of its output:\n{log_tail}")]
    Failed {
        /// What was being done, e.g. "make modules for 6.1.0-50-cloud-amd64".
        what: String,
        /// Exit status as text.
        status: String,
        /// The last lines of stdout and stderr.
        log_tail: String,
    },
}

/// Result alias for this module.
pub type Result<T> = std::result::Result<T, ExecError>;

/// Finds `tool` in `PATH`.
pub fn find_tool(tool: Tool) -> Result<PathBuf> {
    find_in_path(tool.program).ok_or(ExecError::MissingTool {
        program: tool.program,
        package: tool.package,
    })
}

/// Finds a program in `PATH` (absolute paths are checked as they are).
pub fn find_in_path(program: &str) -> Option<PathBuf> {
    let candidate = Path::new(program);
    if candidate.is_absolute() {
        return is_executable(candidate).then(|| candidate.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Runs `tool` with `args` in `cwd`, capturing its output. A non-zero exit is
/// an [`ExecError::Failed`] naming `what` with the tail of the output.
pub fn run<I, S>(tool: Tool, args: I, cwd: Option<&Path>, what: &str) -> Result<Output>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let program = find_tool(tool)?;
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null());
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    run_command(cmd, what)
}

/// Runs a prepared command, capturing its output; see [`run`].
pub fn run_command(mut cmd: Command, what: &str) -> Result<Output> {
    log::debug!("running {cmd:?}");
    let output = cmd.output().map_err(|source| ExecError::Spawn {
        program: cmd.get_program().to_string_lossy().into_owned(),
        source,
    })?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(ExecError::Failed {
            what: what.to_string(),
            status: output.status.to_string(),
            log_tail: output_tail(&output, LOG_TAIL_LINES),
        })
    }
}

/// The last `lines` lines of a command's stdout followed by its stderr.
pub fn output_tail(output: &Output, lines: usize) -> String {
    let mut all = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.stderr.is_empty() {
        if !all.is_empty() && !all.ends_with('\n') {
            all.push('\n');
        }
        all.push_str(&String::from_utf8_lossy(&output.stderr));
    }
    tail(&all, lines)
}

/// The last `lines` lines of `text`, each indented by two spaces.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    let mut out = String::new();
    for line in &all[start..] {
        let _ = writeln!(out, "  {line}");
    }
    if out.is_empty() {
        out.push_str("  (no output)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tool_names_its_package() {
        let tool = Tool {
            program: "surely-not-a-real-program-xyz",
            package: "pkg-xyz",
        };
        let err = find_tool(tool).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("surely-not-a-real-program-xyz"), "{msg}");
        assert!(msg.contains("apt-get install pkg-xyz"), "{msg}");
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let text = (1..=30).map(|i| format!("line {i}\n")).collect::<String>();
        let t = tail(&text, 3);
        assert_eq!(t, "  line 28\n  line 29\n  line 30\n");
        assert_eq!(tail("", 3), "  (no output)\n");
    }

    #[test]
    fn failed_command_carries_its_output() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo hello; echo oops >&2; exit 3"]);
        let err = run_command(cmd, "the test step").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("the test step failed"), "{msg}");
        assert!(msg.contains("hello") && msg.contains("oops"), "{msg}");
    }
}
