//! A test runner (on libtest-mimic) for tests that need something the
//! machine may lack: /dev/kvm, a kernel image, QEMU, root.
//!
//! A test whose need is not met is reported as *ignored* with the reason
//! (and a `SKIPPED:` line on standard error), so the summary counts it as
//! skipped, never as passed. Setting `VNETLAB_REQUIRE` to `all`, or to a
//! comma-separated list of need names (`kvm,qemu,...`), turns a missing need
//! into a failure instead: CI sets it, so a CI run cannot skip silently.
//!
//! A test that is too slow to run by default (it builds a kernel, say) has
//! an opt-in need ([`Need::OptIn`]): it is reported as ignored with the
//! reason unless `VNETLAB_REQUIRE` names that need (or says `all`), or
//! libtest's `--ignored` / `--include-ignored` asks for ignored tests.

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
    /// The test is off by default because of what it costs: it runs only
    /// when `VNETLAB_REQUIRE` names the need (or says `all`), or with
    /// `--ignored` / `--include-ignored`.
    OptIn {
        /// Name used in `VNETLAB_REQUIRE`.
        name: &'static str,
        /// Why it is off by default, e.g. "builds Linux (about 6 minutes)".
        cost: &'static str,
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
            Self::OptIn { name, .. } => name,
        }
    }

    /// `Ok` when met, else the reason.
    pub fn check(&self) -> Result<(), String> {
        self.check_under(require_setting().as_deref())
    }

    /// `check` with `setting` as the value of `VNETLAB_REQUIRE`, which
    /// decides whether an opt-in need is met.
    fn check_under(&self, setting: Option<&str>) -> Result<(), String> {
        match self {
            Self::Kvm => kvm_usable(),
            Self::Program { name, package } => find_program(name)
                .map(|_| ())
                .ok_or_else(|| format!("`{name}` is not installed (Debian package {package})")),
            Self::Custom { check, .. } => check(),
            Self::OptIn { name, cost } => {
                if required(setting, name) {
                    Ok(())
                } else {
                    Err(opt_in_reason(name, cost))
                }
            }
        }
    }

    fn is_opt_in(&self) -> bool {
        matches!(self, Self::OptIn { .. })
    }

    /// Whether `VNETLAB_REQUIRE` makes this need mandatory.
    pub fn is_required(&self) -> bool {
        required(require_setting().as_deref(), self.name())
    }
}

fn require_setting() -> Option<String> {
    std::env::var(REQUIRE_ENV).ok()
}

fn required(setting: Option<&str>, name: &str) -> bool {
    setting.is_some_and(|s| {
        s.split(',')
            .map(str::trim)
            .any(|item| item == "all" || item == name)
    })
}

fn opt_in_reason(name: &str, cost: &str) -> String {
    format!(
        "off by default: {cost}; run it with {REQUIRE_ENV}={name} (or all), or with `-- --ignored`"
    )
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

type Body = Box<dyn FnOnce() -> Result<(), Failed> + Send>;

struct Test {
    name: String,
    needs: Vec<Need>,
    body: Body,
}

/// A set of tests, run by libtest-mimic with libtest's command line.
#[derive(Default)]
pub struct Suite {
    tests: Vec<Test>,
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
        let mut needs = needs.to_vec();
        // Opt-ins first: a test nobody asked for is skipped as such, and
        // its other needs are neither checked nor required.
        needs.sort_by_key(|need| !need.is_opt_in());
        self.tests.push(Test {
            name: name.to_owned(),
            needs,
            body: Box::new(body),
        });
        self
    }

    /// Runs the tests selected on the command line and exits.
    pub fn run(self) -> ! {
        let args = Arguments::from_args();
        // `--ignored` and `--include-ignored` opt in to every opt-in test.
        let asked_for_ignored = args.ignored || args.include_ignored;
        let trials = self
            .tests
            .into_iter()
            .map(|test| test.trial(asked_for_ignored))
            .collect();
        libtest_mimic::run(&args, trials).exit()
    }
}

impl Test {
    fn trial(self, asked_for_ignored: bool) -> Trial {
        let Self { name, needs, body } = self;
        let opt_in = needs.iter().any(Need::is_opt_in);
        let test_name = name.clone();
        Trial::ignorable_test(name, move || {
            match verdict(&needs, require_setting().as_deref(), asked_for_ignored) {
                Verdict::Run => body().map(|()| Completion::Completed),
                Verdict::Skip(reason) => {
                    eprintln!("SKIPPED: {test_name}: {reason}");
                    Ok(Completion::ignored_with(reason))
                }
                Verdict::Fail(why) => Err(why.into()),
            }
        })
        // Marked ignored only when ignored tests were asked for, so that
        // `--ignored` selects it; otherwise it is skipped (with the reason)
        // at run time unless `VNETLAB_REQUIRE` opts in.
        .with_ignored_flag(opt_in && asked_for_ignored)
    }
}

/// What becomes of a test.
#[derive(Debug, PartialEq)]
enum Verdict {
    /// Every need is met.
    Run,
    /// A need is missing (the reason), and none that is missing is required.
    Skip(String),
    /// A required need is missing.
    Fail(String),
}

/// The verdict on a test with `needs` (opt-ins first), `setting` being the
/// value of `VNETLAB_REQUIRE` and `asked_for_ignored` whether libtest's
/// `--ignored` or `--include-ignored` was given.
fn verdict(needs: &[Need], setting: Option<&str>, asked_for_ignored: bool) -> Verdict {
    let mut skip = None;
    for need in needs {
        if need.is_opt_in() && asked_for_ignored {
            continue;
        }
        let is_required = required(setting, need.name());
        // Once the test is to be skipped, only the needs that must be met
        // are still checked: a required need that is missing fails the test
        // whatever else is missing.
        if skip.is_some() && !is_required {
            continue;
        }
        if let Err(reason) = need.check_under(setting) {
            if is_required {
                return Verdict::Fail(format!(
                    "{REQUIRE_ENV} requires `{}`, but {reason}",
                    need.name()
                ));
            }
            skip.get_or_insert(reason);
            if need.is_opt_in() {
                // Nobody asked for the test: nothing else matters.
                break;
            }
        }
    }
    skip.map_or(Verdict::Run, Verdict::Skip)
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

    fn custom(name: &'static str, met: bool) -> Need {
        Need::Custom {
            name,
            check: Arc::new(move || {
                if met {
                    Ok(())
                } else {
                    Err(format!("no {name}"))
                }
            }),
        }
    }

    const SLOW: Need = Need::OptIn {
        name: "slow",
        cost: "takes long",
    };

    #[test]
    fn verdicts() {
        let skip = |why: &str| Verdict::Skip(why.to_owned());
        let fail = |what: &str, why: &str| {
            Verdict::Fail(format!("VNETLAB_REQUIRE requires `{what}`, but {why}"))
        };
        let (a, b, no_a, no_b) = (
            custom("a", true),
            custom("b", true),
            custom("a", false),
            custom("b", false),
        );
        assert_eq!(verdict(&[a.clone(), b.clone()], None, false), Verdict::Run);
        assert_eq!(
            verdict(&[no_a.clone(), b.clone()], None, false),
            skip("no a")
        );
        assert_eq!(
            verdict(&[no_a.clone(), b.clone()], Some("b"), false),
            skip("no a")
        );
        assert_eq!(
            verdict(&[no_a.clone(), b.clone()], Some("a"), false),
            fail("a", "no a")
        );
        assert_eq!(
            verdict(&[no_a.clone(), no_b.clone()], Some("all"), false),
            fail("a", "no a")
        );
        // A required need fails the test even after another one is missing.
        assert_eq!(
            verdict(&[no_a.clone(), no_b.clone()], Some("b"), false),
            fail("b", "no b")
        );

        // An opt-in test is skipped unless asked for, whatever is required.
        let slow_reason = opt_in_reason("slow", "takes long");
        assert_eq!(verdict(&[SLOW, a.clone()], None, false), skip(&slow_reason));
        assert_eq!(
            verdict(&[SLOW, no_a.clone()], Some("a"), false),
            skip(&slow_reason)
        );
        // Asked for by VNETLAB_REQUIRE or by --ignored, it runs.
        assert_eq!(
            verdict(&[SLOW, a.clone()], Some("slow"), false),
            Verdict::Run
        );
        assert_eq!(
            verdict(&[SLOW, a.clone()], Some("all"), false),
            Verdict::Run
        );
        assert_eq!(verdict(&[SLOW, a.clone()], None, true), Verdict::Run);
        // Then its other needs count as usual.
        assert_eq!(verdict(&[SLOW, no_a.clone()], None, true), skip("no a"));
        assert_eq!(
            verdict(&[SLOW, no_a.clone()], Some("slow"), false),
            skip("no a")
        );
        assert_eq!(
            verdict(&[SLOW, no_a], Some("all"), false),
            fail("a", "no a")
        );
    }

    #[test]
    fn opt_in_need_says_how_to_opt_in() {
        let reason = opt_in_reason("no-such-opt-in", "slow");
        assert!(reason.contains("slow"), "{reason}");
        assert!(
            reason.contains("VNETLAB_REQUIRE=no-such-opt-in"),
            "{reason}"
        );
        assert!(reason.contains("--ignored"), "{reason}");
    }
}
