//! A test runner (on libtest-mimic) for tests that need something the
//! machine may lack: /dev/kvm, a kernel image, QEMU, root.
//!
//! A test whose need is not met is reported as *ignored* with the reason
//! (and a `SKIPPED:` line on standard error), so the summary counts it as
//! skipped, never as passed. Setting `VNETLAB_REQUIRE` to `all`, or to a
//! comma-separated list of need names (`kvm,qemu,...`), turns a missing need
//! into a failure instead: CI sets it, so a CI run cannot skip silently.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

pub use libtest_mimic::Failed;
use libtest_mimic::{Arguments, Completion, Trial};

/// The environment variable naming the needs that must be met.
pub const REQUIRE_ENV: &str = "VNETLAB_REQUIRE";

/// Something a test needs from the machine.
#[derive(Clone)]
pub enum Need {
    /// /dev/kvm, readable and writable.
    Kvm,
    /// A program on the PATH, with the Debian package that provides it.
    Program {
        /// The program's name.
        name: &'static str,
        /// The Debian package to install.
        package: &'static str,
    },
    /// Anything else: a name (for `VNETLAB_REQUIRE`) and a check that says
    /// why it is not met.
    Custom {
        /// Name used in `VNETLAB_REQUIRE`.
        name: &'static str,
        /// Returns `Err(reason)` when not met.
        check: Arc<dyn Fn() -> Result<(), String> + Send + Sync>,
    },
}

impl fmt::Debug for Need {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Need {
    /// The need's name, as `VNETLAB_REQUIRE` lists it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Kvm => "kvm",
            Self::Program { name, .. } => name,
            Self::Custom { name, .. } => name,
        }
    }

    /// `Ok` when met, else the reason.
    pub fn check(&self) -> Result<(), String> {
        match self {
            Self::Kvm => kvm_usable(),
            Self::Program { name, package } => find_program(name)
                .map(|_| ())
                .ok_or_else(|| format!("`{name}` is not installed (Debian package {package})")),
            Self::Custom { check, .. } => check(),
        }
    }

    /// Whether `VNETLAB_REQUIRE` makes this need mandatory.
    pub fn is_required(&self) -> bool {
        required(std::env::var(REQUIRE_ENV).ok().as_deref(), self.name())
    }
}

fn required(setting: Option<&str>, name: &str) -> bool {
    setting.is_some_and(|s| {
        s.split(',')
            .map(str::trim)
            .any(|item| item == "all" || item == name)
    })
}

/// Whether /dev/kvm can be opened for reading and writing.
pub fn kvm_usable() -> Result<(), String> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map(|_| ())
        .map_err(|e| format!("/dev/kvm cannot be opened: {e}"))
}

/// The path of `name` on the PATH.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A set of tests, run by libtest-mimic with libtest's command line.
#[derive(Default)]
pub struct Suite {
    trials: Vec<Trial>,
}

impl Suite {
    /// An empty suite.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a test that runs only when every need is met.
    pub fn test<F>(&mut self, name: &str, needs: &[Need], body: F) -> &mut Self
    where
        F: FnOnce() -> Result<(), Failed> + Send + 'static,
    {
        let needs = needs.to_vec();
        let test_name = name.to_owned();
        self.trials.push(Trial::ignorable_test(name, move || {
            for need in &needs {
                if let Err(reason) = need.check() {
                    if need.is_required() {
                        return Err(format!(
                            "{REQUIRE_ENV} requires `{}`, but {reason}",
                            need.name()
                        )
                        .into());
                    }
                    eprintln!("SKIPPED: {test_name}: {reason}");
                    return Ok(Completion::ignored_with(reason));
                }
            }
            body().map(|()| Completion::Completed)
        }));
        self
    }

    /// Runs the tests selected on the command line and exits.
    pub fn run(self) -> ! {
        let args = Arguments::from_args();
        libtest_mimic::run(&args, self.trials).exit()
    }
}

/// Fails the test with `message` unless `condition` holds.
pub fn ensure(condition: bool, message: impl FnOnce() -> String) -> Result<(), Failed> {
    if condition {
        Ok(())
    } else {
        Err(message().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn require_setting() {
        assert!(required(Some("all"), "kvm"));
        assert!(required(Some("qemu, kvm"), "kvm"));
        assert!(!required(Some("qemu"), "kvm"));
        assert!(!required(None, "kvm"));
        assert!(!required(Some(""), "kvm"));
    }

    #[test]
    fn program_need() {
        assert!(Need::Program {
            name: "sh",
            package: "dash"
        }
        .check()
        .is_ok());
        let missing = Need::Program {
            name: "no-such-program-here",
            package: "nothing",
        };
        assert!(missing
            .check()
            .unwrap_err()
            .contains("Debian package nothing"));
    }
}
