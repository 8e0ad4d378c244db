//! What kind of KVM this host has: hardware-backed, or the instruction
//! emulator some sandboxes provide (the `kvm_pvm` module), on which a stock
//! kernel stops early and no guest user space runs.

use std::path::Path;

/// The KVM this host offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvmKind {
    /// No usable /dev/kvm.
    Absent(String),
    /// KVM backed by the CPU's virtualization extensions.
    Hardware,
    /// KVM through an instruction emulator; the string says how it was
    /// recognised.
    Emulated(String),
}

impl KvmKind {
    /// Looks at /dev/kvm, the loaded KVM modules and the CPU flags.
    pub fn detect() -> Self {
        Self::detect_in(Path::new("/"))
    }

    /// `detect` against another root (for tests).
    pub fn detect_in(root: &Path) -> Self {
        if let Err(e) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(root.join("dev/kvm"))
        {
            return Self::Absent(format!("/dev/kvm cannot be opened: {e}"));
        }
        if root.join("sys/module/kvm_pvm").exists() {
            return Self::Emulated("the kvm_pvm module is loaded".into());
        }
        let cpuinfo = std::fs::read_to_string(root.join("proc/cpuinfo")).unwrap_or_default();
        let has_flag = |flag: &str| {
            cpuinfo
                .lines()
                .filter(|l| l.starts_with("flags"))
                .any(|l| l.split_whitespace().any(|w| w == flag))
        };
        if has_flag("vmx") || has_flag("svm") {
            Self::Hardware
        } else {
            Self::Emulated("the CPU flags have neither vmx nor svm".into())
        }
    }
}

impl std::fmt::Display for KvmKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Absent(why) => write!(f, "no KVM ({why})"),
            Self::Hardware => write!(f, "hardware-backed KVM"),
            Self::Emulated(why) => write!(f, "emulated KVM ({why})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_root(kvm: bool, pvm: bool, flags: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        std::fs::create_dir_all(r.join("dev")).unwrap();
        std::fs::create_dir_all(r.join("proc")).unwrap();
        if kvm {
            std::fs::write(r.join("dev/kvm"), "").unwrap();
        }
        if pvm {
            std::fs::create_dir_all(r.join("sys/module/kvm_pvm")).unwrap();
        }
        std::fs::write(r.join("proc/cpuinfo"), format!("flags\t\t: {flags}\n")).unwrap();
        dir
    }

    #[test]
    fn recognises_each_kind() {
        let d = fake_root(false, false, "fpu vmx");
        assert!(matches!(KvmKind::detect_in(d.path()), KvmKind::Absent(_)));
        let d = fake_root(true, true, "fpu vmx");
        assert!(
            matches!(KvmKind::detect_in(d.path()), KvmKind::Emulated(w) if w.contains("kvm_pvm"))
        );
        let d = fake_root(true, false, "fpu sse2 svm");
        assert_eq!(KvmKind::detect_in(d.path()), KvmKind::Hardware);
        let d = fake_root(true, false, "fpu sse2");
        assert!(
            matches!(KvmKind::detect_in(d.path()), KvmKind::Emulated(w) if w.contains("neither"))
        );
    }
}
