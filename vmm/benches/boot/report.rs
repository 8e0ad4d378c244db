//! The figures of a bench run: per-VMM statistics (median, min, max over
//! the successful runs), the side-by-side table, the ratios against QEMU,
//! and issue 6's goals marked met or not met.

/// What a measured program is, for choosing the reference and labelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Our `vmm`.
    Ours,
    /// QEMU's microvm.
    Qemu {
        /// Under KVM (else TCG, software emulation).
        kvm: bool,
        /// With the minimal machine options (else QEMU's defaults).
        minimal: bool,
    },
    /// A program that does nothing: the cost of spawning and reaping a
    /// process from this harness.
    Floor,
}

/// One successful run's figures.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Milliseconds from the spawn to the first serial byte.
    pub first_byte_ms: Option<f64>,
    /// Milliseconds from the spawn to the process's end.
    pub wall_ms: f64,
    /// Milliseconds of user plus system CPU time.
    pub cpu_ms: f64,
    /// Peak RSS in MiB.
    pub rss_mib: f64,
}

/// All runs of one program.
#[derive(Debug)]
pub struct Series {
    /// Row label.
    pub label: String,
    /// What it is.
    pub role: Role,
    /// The successful runs.
    pub samples: Vec<Sample>,
    /// Why the other runs failed.
    pub failures: Vec<String>,
}

impl Series {
    /// An empty series.
    pub fn new(label: impl Into<String>, role: Role) -> Self {
        Self {
            label: label.into(),
            role,
            samples: Vec::new(),
            failures: Vec::new(),
        }
    }

    fn attempts(&self) -> usize {
        self.samples.len() + self.failures.len()
    }

    fn first_byte(&self) -> Option<Stats> {
        Stats::of(self.samples.iter().filter_map(|s| s.first_byte_ms))
    }

    fn wall(&self) -> Option<Stats> {
        Stats::of(self.samples.iter().map(|s| s.wall_ms))
    }

    fn cpu(&self) -> Option<Stats> {
        Stats::of(self.samples.iter().map(|s| s.cpu_ms))
    }

    fn rss(&self) -> Option<Stats> {
        Stats::of(self.samples.iter().map(|s| s.rss_mib))
    }
}

/// Median, minimum and maximum of some values.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    /// The median (the mean of the two middle values for an even count).
    pub median: f64,
    /// The smallest value.
    pub min: f64,
    /// The largest value.
    pub max: f64,
}

impl Stats {
    /// The statistics of `values`, `None` if there are none.
    pub fn of(values: impl Iterator<Item = f64>) -> Option<Self> {
        let mut v: Vec<f64> = values.collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Self {
            median,
            min: v[0],
            max: v[n - 1],
        })
    }
}

const CELL_WIDTH: usize = 22;
const RATIO_PREFIX: &str = "ratio vmm / ";

fn cell(stats: Option<Stats>) -> String {
    match stats {
        Some(s) => format!("{:.1} [{:.1}..{:.1}]", s.median, s.min, s.max),
        None => "-".to_owned(),
    }
}

fn ratio_cell(ours: Option<Stats>, theirs: Option<Stats>) -> String {
    match (ours, theirs) {
        (Some(o), Some(t)) if t.median > 0.0 => format!("{:.2}x", o.median / t.median),
        _ => "-".to_owned(),
    }
}

/// The QEMU series the goals are judged against: the minimal KVM
/// configuration if it ran, else the default KVM one, else a TCG one
/// (flagged as not like for like).
fn reference(series: &[Series]) -> Option<&Series> {
    let ran = |kvm: bool, minimal: bool| {
        series
            .iter()
            .find(|s| s.role == Role::Qemu { kvm, minimal } && !s.samples.is_empty())
    };
    ran(true, true)
        .or_else(|| ran(true, false))
        .or_else(|| ran(false, true))
        .or_else(|| ran(false, false))
}

/// Prints the table, the ratios and the goals.
pub fn print(series: &[Series]) {
    let w = series
        .iter()
        .map(|s| match s.role {
            Role::Qemu { .. } => RATIO_PREFIX.len() + s.label.len(),
            _ => s.label.len(),
        })
        .max()
        .unwrap_or(0);
    println!();
    println!(
        "{:<w$} {:>CELL_WIDTH$} {:>CELL_WIDTH$} {:>CELL_WIDTH$} {:>CELL_WIDTH$} {:>7}",
        "median [min..max]",
        "first byte (ms)",
        "exit (ms)",
        "CPU user+sys (ms)",
        "peak RSS (MiB)",
        "ok/runs"
    );
    for s in series {
        println!(
            "{:<w$} {:>CELL_WIDTH$} {:>CELL_WIDTH$} {:>CELL_WIDTH$} {:>CELL_WIDTH$} {:>7}",
            s.label,
            cell(s.first_byte()),
            cell(s.wall()),
            cell(s.cpu()),
            cell(s.rss()),
            format!("{}/{}", s.samples.len(), s.attempts()),
        );
    }

    println!();
    println!(
        "first byte: spawn to the first guest serial byte on the child's stdout; \
         exit: spawn to the end of the process (pidfd);"
    );
    println!(
        "CPU, peak RSS: ru_utime + ru_stime and ru_maxrss from wait4 (ru_maxrss \
         includes what the fork copied of this harness: see the floor row)"
    );

    let ours = series
        .iter()
        .find(|s| s.role == Role::Ours && !s.samples.is_empty());
    if let Some(ours) = ours {
        println!();
        for q in series
            .iter()
            .filter(|s| matches!(s.role, Role::Qemu { .. }) && !s.samples.is_empty())
        {
            println!(
                "{:<w$} {:>CELL_WIDTH$} {:>CELL_WIDTH$} {:>CELL_WIDTH$} {:>CELL_WIDTH$}",
                format!("{RATIO_PREFIX}{}", q.label),
                ratio_cell(ours.first_byte(), q.first_byte()),
                ratio_cell(ours.wall(), q.wall()),
                ratio_cell(ours.cpu(), q.cpu()),
                ratio_cell(ours.rss(), q.rss()),
            );
        }
    }

    for s in series.iter().filter(|s| !s.failures.is_empty()) {
        println!();
        println!(
            "{}: {} of {} runs failed (left out of the figures):",
            s.label,
            s.failures.len(),
            s.attempts()
        );
        for f in s.failures.iter().take(5) {
            println!("  - {f}");
        }
        if s.failures.len() > 5 {
            println!("  - ... and {} more", s.failures.len() - 5);
        }
    }

    print_goals(ours, reference(series));
}

/// A goal relative to QEMU: our median at most `limit` times QEMU's.
struct RelativeGoal {
    what: &'static str,
    figure: fn(&Series) -> Option<Stats>,
    limit: f64,
    unit: &'static str,
}

/// Issue 6's goals relative to QEMU.
const RELATIVE_GOALS: [RelativeGoal; 3] = [
    RelativeGoal {
        what: "whole-process wall time <= 0.6x QEMU's",
        figure: Series::wall,
        limit: 0.6,
        unit: "ms",
    },
    RelativeGoal {
        what: "CPU time (user+sys) <= 1/8 of QEMU's",
        figure: Series::cpu,
        limit: 1.0 / 8.0,
        unit: "ms",
    },
    RelativeGoal {
        what: "peak RSS <= 1/3 of QEMU's",
        figure: Series::rss,
        limit: 1.0 / 3.0,
        unit: "MiB",
    },
];

/// Issue 6's absolute goal: the first guest byte this soon after the start.
const FIRST_BYTE_GOAL_MS: f64 = 10.0;

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "NOT MET"
    }
}

fn print_goals(ours: Option<&Series>, qemu: Option<&Series>) {
    println!();
    let Some(ours) = ours else {
        println!("Goals (issue 6): NOT JUDGED: our vmm has no successful run (see above).");
        return;
    };
    match qemu {
        None => println!(
            "Goals (issue 6), medians: the goals relative to QEMU are NOT JUDGED: \
             QEMU has no successful run (see above)."
        ),
        Some(q) => {
            let caveat = match q.role {
                Role::Qemu { kvm: true, .. } => "",
                _ => " -- NOT like for like: QEMU under software emulation, vmm under KVM",
            };
            println!("Goals (issue 6), medians, vmm against {}{caveat}:", q.label);
            for g in &RELATIVE_GOALS {
                match ((g.figure)(ours), (g.figure)(q)) {
                    (Some(o), Some(t)) if t.median > 0.0 => {
                        let r = o.median / t.median;
                        println!(
                            "  {:<8} {:<42} vmm {:.1} {unit} / QEMU {:.1} {unit} = {r:.3}x (goal <= {:.3}x)",
                            verdict(r <= g.limit),
                            g.what,
                            o.median,
                            t.median,
                            g.limit,
                            unit = g.unit,
                        );
                    }
                    _ => println!("  {:<8} {:<42} no figures", "NOT JUDGED", g.what),
                }
            }
        }
    }
    let what = format!("first guest byte <= {FIRST_BYTE_GOAL_MS} ms after start");
    match ours.first_byte() {
        Some(f) => println!(
            "  {:<8} {what:<42} vmm {:.1} ms (max {:.1} ms)",
            verdict(f.median <= FIRST_BYTE_GOAL_MS),
            f.median,
            f.max
        ),
        None => println!("  {:<8} {what:<42} no serial byte seen", verdict(false)),
    }
}
