//! Scenario files: what a valid file becomes, that every invalid one is
//! refused with its file, line, column and reason, and that the shipped
//! scenarios say what the kernel facts say.

use std::path::{Path, PathBuf};
use std::time::Duration;

use harness::link::Operstate;
use harness::scenario::{
    load_paths, load_str, CarrierChanges, Driver, Kernel, LinkState, LoadError, Scenario, Step,
    Transport,
};
use harness::trace::TraceRequest;

const VALID: &str = r#"# a comment
[[scenario]]
name = "flap/x"
description = "d"
guest = { kernel = "debian-6.12", driver = "prefix" }
device = { transport = "pci", features = "+status,-mrg_rxbuf", mac = "52:54:00:00:00:07", mtu = 1400, backend = "tap:vt0" }
steps = ["boot", "link-up", { show = "up" }, { device-link = "down" }, { wait = "1500ms" }, "show", "reload-driver", "show"]

[[scenario.expect]]
show = "up"
operstate = "up"
flags = ["LOWER_UP"]
no-flags = ["NO-CARRIER"]
min-carrier-changes = 1
features = ["status", "VIRTIO_F_VERSION_1", "bit32"]
no-features = ["mrg_rxbuf"]
mtu = 1400

[[scenario.expect]]
carrier-changes = 2

[[scenario]]
name = "minimal"
guest = { kernel = "test" }
steps = ["boot", "show"]
[[scenario.expect]]
operstate = "UNKNOWN"
"#;

fn load(text: &str) -> Result<Vec<Scenario>, LoadError> {
    load_str(text, Path::new("s.toml"))
}

#[test]
fn a_valid_file_becomes_scenarios() {
    let s = load(VALID).unwrap();
    assert_eq!(s.len(), 2);
    let f = &s[0];
    assert_eq!(f.name, "flap/x");
    assert_eq!(f.description.as_deref(), Some("d"));
    assert_eq!((f.location.line, f.location.column), (2, 1));
    assert_eq!(f.guest.kernel, Kernel::Debian612);
    assert_eq!(f.guest.driver, Driver::Prefix);
    assert_eq!(f.device.transport, Transport::Pci);
    assert_eq!(
        f.device.features, "+status,-mrg_rxbuf",
        "passed through as written"
    );
    assert_eq!(f.device.mac.as_deref(), Some("52:54:00:00:00:07"));
    assert_eq!(f.device.mtu, Some(1400));
    assert_eq!(f.device.backend.as_deref(), Some("tap:vt0"));
    assert_eq!(
        f.steps,
        [
            Step::Boot,
            Step::LinkUp,
            Step::Show {
                label: Some("up".into())
            },
            Step::DeviceLink(LinkState::Down),
            Step::Wait(Duration::from_millis(1500)),
            Step::Show { label: None },
            Step::ReloadDriver,
            Step::Show { label: None },
        ]
    );
    assert_eq!(
        f.shows(),
        [(2, "up".into()), (5, "show 2".into()), (7, "show 3".into())]
    );
    let [first, last] = &f.expectations[..] else {
        panic!("two expectations")
    };
    assert_eq!((first.show, first.label.as_str()), (0, "up"));
    assert_eq!(first.operstate, Some(Operstate::Up));
    assert_eq!(first.carrier_changes, Some(CarrierChanges::AtLeast(1)));
    let bits: Vec<u32> = first.features.iter().map(|f| f.bit).collect();
    assert_eq!(bits, [16, 32, 32]);
    assert_eq!(first.no_features[0].bit, 15);
    assert_eq!(first.mtu, Some(1400));
    assert_eq!(first.location.line, 9);
    // no `show`: the last show step
    assert_eq!((last.show, last.label.as_str()), (2, "show 3"));
    assert_eq!(last.carrier_changes, Some(CarrierChanges::Exactly(2)));

    let m = &s[1];
    assert_eq!(m.guest.driver, Driver::Stock, "the default driver");
    assert_eq!(m.device.transport, Transport::Pci, "the default transport");
    assert_eq!(m.device.features, "");
    assert_eq!(
        (m.device.mac.clone(), m.device.mtu, m.device.backend.clone()),
        (None, None, None)
    );
}

#[test]
fn a_single_scenario_file() {
    let s = load(
        "name = \"one\"\nguest = { kernel = \"debian-6.1\" }\nsteps = [\"boot\", \"link-up\", \"show\"]\n\
         [[expect]]\noperstate = \"UP\"\n",
    )
    .unwrap();
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].name, "one");
    assert_eq!((s[0].location.line, s[0].location.column), (1, 1));
}

/// Loads `text`, expects an error at `line`, whose message contains `reason`.
#[track_caller]
fn refused(text: &str, line: usize, reason: &str) {
    let e = load(text).expect_err("the file must be refused");
    let msg = e.to_string();
    let prefix = format!("s.toml:{line}:");
    assert!(msg.starts_with(&prefix), "wanted {prefix}..., got: {msg}");
    assert!(msg.contains(reason), "wanted `{reason}` in: {msg}");
}

/// VALID with `from` replaced by `to` (which must occur).
fn valid_with(from: &str, to: &str) -> String {
    assert!(VALID.contains(from), "{from}");
    VALID.replacen(from, to, 1)
}

#[test]
fn a_trace_is_the_default_set_or_a_list() {
    let s = load(&valid_with(
        "description = \"d\"",
        "description = \"d\"\ntrace = true",
    ))
    .unwrap();
    assert_eq!(s[0].trace, Some(TraceRequest::link_state()));
    assert_eq!(s[1].trace, None, "no key, no trace");
    let s = load(&valid_with(
        "description = \"d\"",
        "description = \"d\"\ntrace = [\"netif_carrier_on\", \"foo.isra.0\", \"netif_carrier_on\"]",
    ))
    .unwrap();
    assert_eq!(
        s[0].trace.as_ref().unwrap().functions,
        ["netif_carrier_on", "foo.isra.0"]
    );
    let s = load(&valid_with(
        "description = \"d\"",
        "description = \"d\"\ntrace = false",
    ))
    .unwrap();
    assert_eq!(s[0].trace, None);
}

#[test]
fn bad_traces_are_errors() {
    let with = |value: &str| {
        valid_with(
            "description = \"d\"",
            &format!("description = \"d\"\ntrace = {value}"),
        )
    };
    refused(
        &with("\"yes\""),
        5,
        "trace is true (the default link-state set), false, or a list",
    );
    refused(&with("[1, 2]"), 5, "trace lists function names, as strings");
    refused(&with("[]"), 5, "trace: the trace names no function");
    refused(
        &with("[\"ip link\"]"),
        5,
        "trace: `ip link` is not a kernel function name",
    );
    let many: Vec<String> = (0..33).map(|i| format!("\"f{i}\"")).collect();
    refused(
        &with(&format!("[{}]", many.join(", "))),
        5,
        "at most 32 can be traced at once",
    );
}

#[test]
fn unknown_keys_are_errors_wherever_they_are() {
    refused(
        &valid_with("description = \"d\"", "descripton = \"d\""),
        4,
        "unknown field `descripton`",
    );
    refused(
        &valid_with("driver = \"prefix\" }", "driver = \"prefix\", memory = 1 }"),
        5,
        "unknown field `memory`",
    );
    refused(
        &valid_with(
            "backend = \"tap:vt0\" }",
            "backend = \"tap:vt0\", queues = 2 }",
        ),
        6,
        "unknown field `queues`",
    );
    refused(
        &valid_with("mtu = 1400\n", "mtu = 1400\ncarrier = true\n"),
        18,
        "unknown field `carrier`",
    );
    refused(
        &format!("version = 2\n{VALID}"),
        1,
        "unknown field `version`, expected `scenario`",
    );
    // appended at the end, the key belongs to the last [[scenario.expect]]
    refused(
        &format!("{VALID}version = 2\n"),
        28,
        "unknown field `version`",
    );
}

#[test]
fn unknown_values_are_errors() {
    refused(
        &valid_with("debian-6.12", "debian-6.2"),
        5,
        "unknown variant `debian-6.2`, expected one of `debian-6.1`, `debian-6.12`, `test`",
    );
    refused(
        &valid_with("driver = \"prefix\"", "driver = \"old\""),
        5,
        "unknown variant `old`",
    );
    refused(
        &valid_with("transport = \"pci\"", "transport = \"usb\""),
        6,
        "unknown variant `usb`",
    );
    refused(
        &valid_with("-mrg_rxbuf", "-mrg_rx"),
        6,
        "features: unknown feature `mrg_rx`",
    );
    refused(
        &valid_with("+status,-mrg_rxbuf", "guest_tso4,version_1"),
        6,
        "guest_tso4 requires guest_csum",
    );
    refused(
        &valid_with("52:54:00:00:00:07", "52:54:00:00:07"),
        6,
        "is not six hex pairs",
    );
    refused(
        &valid_with("mtu = 1400,", "mtu = 70000,"),
        6,
        "mtu 70000 is outside 68..=65535",
    );
    refused(
        &valid_with("mtu = 1400\n", "mtu = 0\n"),
        17,
        "expected mtu 0 is outside 68..=65535",
    );
    refused(
        &valid_with("tap:vt0", "vhost"),
        6,
        "backend `vhost` is not none, memory, loopback, tap or tap:NAME",
    );
    refused(
        &valid_with("operstate = \"up\"", "operstate = \"RUNNING\""),
        11,
        "`RUNNING` is not an operstate",
    );
    refused(
        &valid_with("flags = [\"LOWER_UP\"]", "flags = [\"LOWER-UP\"]"),
        12,
        "`LOWER-UP` is not a flag ip link prints",
    );
    refused(
        &valid_with(
            "no-features = [\"mrg_rxbuf\"]",
            "no-features = [\"mrgrxbuf\"]",
        ),
        16,
        "unknown feature `mrgrxbuf`",
    );
    refused(
        &valid_with("carrier-changes = 2", "carrier-changes = -1"),
        20,
        "a count cannot be negative",
    );
    refused(
        &valid_with("name = \"flap/x\"", "name = \"flap x\""),
        3,
        "scenario name `flap x` must be",
    );
    refused(
        &valid_with("kernel = \"test\" }", "kernel = \"test\", driver = 1 }"),
        24,
        "wanted string or table",
    );
}

#[test]
fn unknown_and_misplaced_steps_are_errors() {
    refused(
        &valid_with("\"reload-driver\"", "\"reload\""),
        7,
        "unknown step `reload`",
    );
    refused(
        &valid_with("{ wait = \"1500ms\" }", "{ wait = \"1500\" }"),
        7,
        "has no unit",
    );
    refused(
        &valid_with("{ device-link = \"down\" }", "{ device-link = \"off\" }"),
        7,
        "device-link is \"up\" or \"down\"",
    );
    refused(
        &valid_with("\"reload-driver\"", "\"boot\""),
        7,
        "\"boot\" is the first step and comes only once",
    );
    refused(
        &valid_with("steps = [\"boot\", \"show\"]", "steps = [\"show\"]"),
        25,
        "the first step must be \"boot\"",
    );
    refused(
        &valid_with("steps = [\"boot\", \"show\"]", "steps = []"),
        25,
        "steps is empty",
    );
    refused(
        &valid_with("\"reload-driver\", \"show\"", "{ show = \"up\" }"),
        7,
        "two show steps are labelled `up`",
    );
}

#[test]
fn expectations_must_refer_to_a_show_step() {
    let e = valid_with("show = \"up\"\noperstate", "show = \"upp\"\noperstate");
    refused(&e, 10, "this expectation refers to no show step: no show step is labelled `upp` (labelled ones: up)");
    refused(
        &valid_with(
            "steps = [\"boot\", \"show\"]",
            "steps = [\"boot\", \"link-up\"]",
        ),
        26,
        "this expectation refers to no show step: the steps have none",
    );
    refused(
        &valid_with(
            "[[scenario.expect]]\ncarrier-changes = 2",
            "[[scenario.expect]]\nshow = \"up\"\ncarrier-changes = 2",
        ),
        19,
        "show step `up` already has an [[expect]] table",
    );
    refused(
        &valid_with("[[scenario.expect]]\noperstate = \"UNKNOWN\"\n", ""),
        22,
        "scenario `minimal` expects nothing",
    );
    refused(
        &valid_with("operstate = \"UNKNOWN\"", "show = \"show 1\""),
        27,
        "no show step is labelled `show 1`",
    );
    refused(
        &valid_with(
            "[[scenario.expect]]\ncarrier-changes = 2\n",
            "[[scenario.expect]]\n",
        ),
        19,
        "this expectation checks nothing",
    );
    refused(
        &valid_with(
            "min-carrier-changes = 1",
            "min-carrier-changes = 1\ncarrier-changes = 1",
        ),
        14,
        "not both",
    );
    refused(
        &valid_with("no-flags = [\"NO-CARRIER\"]", "no-flags = [\"LOWER_UP\"]"),
        13,
        "flag LOWER_UP is both required and forbidden",
    );
    refused(
        &valid_with("no-features = [\"mrg_rxbuf\"]", "no-features = [\"bit16\"]"),
        16,
        "is both required and forbidden",
    );
    refused(
        &valid_with(
            "[[scenario.expect]]\noperstate = \"UNKNOWN\"",
            "[scenario.expect]\noperstate = \"UNKNOWN\"",
        ),
        26,
        "write [[expect]]",
    );
}

#[test]
fn transports_the_kernel_cannot_use_are_errors() {
    refused(
        &valid_with("transport = \"pci\"", "transport = \"mmio\""),
        6,
        "kernel debian-6.12 cannot find a virtio-mmio device",
    );
    let ok = valid_with(
        "guest = { kernel = \"test\" }\nsteps",
        "guest = { kernel = \"test\" }\ndevice = { transport = \"mmio\" }\nsteps",
    );
    assert_eq!(load(&ok).unwrap()[1].device.transport, Transport::Mmio);
}

#[test]
fn broken_toml_and_empty_files() {
    refused("[[scenario]]\nname = \"x\nguest = {}\n", 2, "");
    refused(
        &valid_with("name = \"minimal\"", "name = \"flap/x\""),
        22,
        "scenario `flap/x` is already defined at s.toml:2:1",
    );
    assert!(matches!(load("# nothing\n"), Err(LoadError::Empty { .. })));
    assert!(matches!(
        load("scenario = []\n"),
        Err(LoadError::Empty { .. })
    ));
}

#[test]
fn several_files_report_every_error_and_duplicates_across_files() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    };
    write("a.toml", VALID);
    write("sub/b.toml", &VALID.replace("flap/x", "other"));
    write("sub/c.toml", "name = \"broken\"\n");
    write("notes.txt", "not a scenario");
    let errors = load_paths(&[dir.path().to_path_buf()]).unwrap_err();
    let text = errors.to_string();
    assert_eq!(errors.0.len(), 2, "{text}");
    assert!(
        text.contains("sub/b.toml:22:1: scenario `minimal` is already defined at"),
        "{text}"
    );
    assert!(text.contains("a.toml:22:1"), "{text}");
    assert!(
        text.contains("sub/c.toml:1:1: missing field `guest`"),
        "{text}"
    );

    std::fs::remove_file(dir.path().join("sub/c.toml")).unwrap();
    std::fs::write(
        dir.path().join("sub/b.toml"),
        VALID.replace("flap/x", "other").replace("minimal", "zz"),
    )
    .unwrap();
    let all = load_paths(&[dir.path().to_path_buf()]).unwrap();
    let names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["flap/x", "minimal", "other", "zz"],
        "sorted by name"
    );
    // A file named again, or with its directory, is read once.
    let a = dir.path().join("a.toml");
    let again = load_paths(&[a.clone(), dir.path().to_path_buf(), a]).unwrap();
    assert_eq!(again.len(), 4);

    let missing = load_paths(&[dir.path().join("nope.toml")]).unwrap_err();
    assert!(missing.to_string().starts_with(&format!(
        "{} cannot be read: ",
        dir.path().join("nope.toml").display()
    )));
    let empty = tempfile::tempdir().unwrap();
    assert!(load_paths(&[empty.path().to_path_buf()])
        .unwrap_err()
        .to_string()
        .contains("holds no *.toml scenario file"));
}

fn shipped() -> Vec<Scenario> {
    let dir: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    load_paths(&[dir]).unwrap_or_else(|e| panic!("the shipped scenarios must load:\n{e}"))
}

/// The expectations of the shipped operstate matrix follow from the kernel
/// facts (environment.md): UNKNOWN and no carrier transition only for the
/// pre-fix driver without STATUS; UP after two transitions otherwise.
#[test]
fn the_shipped_matrix_follows_the_kernel_facts() {
    let all = shipped();
    let matrix: Vec<&Scenario> = all
        .iter()
        .filter(|s| s.name.starts_with("operstate/"))
        .collect();
    let cell = |kernel: Kernel, driver: Driver, status: bool| {
        matrix
            .iter()
            .find(|s| {
                s.guest.kernel == kernel
                    && s.guest.driver == driver
                    && s.device.features == if status { "+status" } else { "-status" }
            })
            .unwrap_or_else(|| panic!("no matrix cell {kernel:?} {driver:?} status={status}"))
    };
    for (kernel, driver) in [
        (Kernel::Debian61, Driver::Stock),
        (Kernel::Debian612, Driver::Stock),
        (Kernel::Debian61, Driver::Prefix),
        (Kernel::Test, Driver::Stock),
        (Kernel::Test, Driver::Prefix),
    ] {
        for status in [true, false] {
            let s = cell(kernel, driver, status);
            let bug = driver == Driver::Prefix && !status;
            let e = s.expectations.last().unwrap();
            assert_eq!(s.steps.first(), Some(&Step::Boot));
            assert!(s.steps.contains(&Step::LinkUp), "{}", s.name);
            assert_eq!(
                e.operstate,
                Some(if bug {
                    Operstate::Unknown
                } else {
                    Operstate::Up
                }),
                "{}",
                s.name
            );
            assert_eq!(
                e.carrier_changes,
                Some(CarrierChanges::Exactly(if bug { 0 } else { 2 })),
                "{}",
                s.name
            );
            assert!(e.flags.contains(&"LOWER_UP".to_string()), "{}", s.name);
            let want_transport = if kernel == Kernel::Test {
                Transport::Mmio
            } else {
                Transport::Pci
            };
            assert_eq!(s.device.transport, want_transport, "{}", s.name);
        }
    }
    assert_eq!(matrix.len(), 10);
}

#[test]
fn the_shipped_sequences_exist() {
    let all = shipped();
    let get = |n: &str| {
        all.iter()
            .find(|s| s.name == n)
            .unwrap_or_else(|| panic!("{n} is shipped"))
    };

    let reload = get("reload/6.1-prefix/no-status");
    assert!(reload.steps.contains(&Step::ReloadDriver));
    assert!(reload
        .expectations
        .iter()
        .all(|e| e.operstate == Some(Operstate::Unknown)));

    let flap = get("flap/6.1-stock/status");
    let states: Vec<_> = flap
        .expectations
        .iter()
        .map(|e| (e.label.as_str(), e.operstate))
        .collect();
    assert_eq!(
        states,
        [
            ("up", Some(Operstate::Up)),
            ("down", Some(Operstate::Down)),
            ("up-again", Some(Operstate::Up))
        ]
    );
    assert!(flap.expectations[1]
        .flags
        .contains(&"NO-CARRIER".to_string()));
    assert!(flap.steps.contains(&Step::DeviceLink(LinkState::Down)));

    let feat = get("features/6.1-stock/no-mrg-rxbuf");
    assert_eq!(feat.device.features, "-mrg_rxbuf");
    assert_eq!(feat.expectations[0].no_features[0].name, "mrg_rxbuf");
}

/// Every prefix of a valid file loads or is refused with a location: never
/// a panic.
#[test]
fn truncated_files_never_panic() {
    for (cut, _) in VALID.char_indices() {
        if let Err(e) = load(&VALID[..cut]) {
            let msg = e.to_string();
            assert!(msg.starts_with("s.toml"), "{msg}");
        }
    }
}
