//! What the `harness` binary's end-to-end tests share: the command with a
//! clean environment, the shipped scenarios and a readable dump of a run.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The built `harness` binary, run from the crate's directory with no
/// engine or fault injection inherited from the caller's environment.
pub fn harness() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_harness"));
    c.env_remove("VNETLAB_ENGINE")
        .env_remove("VNETLAB_FAKE_FAULTS")
        .env("RUST_LOG", "error")
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

/// The repository's `scenarios/` directory.
pub fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}

/// Exit status, stdout and stderr of a run, for assertion messages.
pub fn out(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
