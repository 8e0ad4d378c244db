//! Progress of a build: an indicatif bar with a spinner per running step on a
//! terminal, plain `log` lines otherwise.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Where progress goes.
#[derive(Debug, Clone)]
pub struct Progress {
    mode: Mode,
}

#[derive(Debug, Clone)]
enum Mode {
    /// `log::info!` lines (shown when the logger lets info through).
    Log,
    /// Bars on stderr.
    Bar {
        multi: MultiProgress,
        main: ProgressBar,
    },
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The step ran.
    Built,
    /// A verified cached result was used.
    Cached,
    /// The step failed.
    Failed,
}

impl Progress {
    /// Bars when stderr is a terminal, log lines otherwise.
    pub fn auto() -> Self {
        if std::io::stderr().is_terminal() {
            Self::bars()
        } else {
            Self::log()
        }
    }

    /// Plain lines through the `log` crate.
    pub fn log() -> Self {
        Self { mode: Mode::Log }
    }

    /// Progress bars on stderr.
    pub fn bars() -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let main = multi.add(ProgressBar::new(0));
        main.set_style(
            ProgressStyle::with_template("{prefix:>8} [{bar:30}] {pos}/{len} steps, {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        main.set_prefix("images");
        Self {
            mode: Mode::Bar { multi, main },
        }
    }

    /// True when drawing bars (the caller should keep other stderr output short).
    pub fn is_bars(&self) -> bool {
        matches!(self.mode, Mode::Bar { .. })
    }

    /// Announces a step; finish it with [`Step::finish`].
    pub fn start(&self, label: impl Into<String>) -> Step {
        let label = label.into();
        let bar = match &self.mode {
            Mode::Log => {
                log::info!("{label} ...");
                None
            }
            Mode::Bar { multi, main } => {
                main.inc_length(1);
                let spinner = multi.add(ProgressBar::new_spinner());
                spinner.set_style(
                    ProgressStyle::with_template("  {spinner} {msg} ({elapsed})")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                spinner.set_message(label.clone());
                spinner.enable_steady_tick(Duration::from_millis(120));
                Some(spinner)
            }
        };
        Step {
            label,
            started: Instant::now(),
            bar,
            progress: self.clone(),
            done: false,
        }
    }

    /// Prints a line above the bars (or logs it).
    pub fn note(&self, line: &str) {
        match &self.mode {
            Mode::Log => log::info!("{line}"),
            Mode::Bar { multi, .. } => {
                let _ = multi.println(line);
            }
        }
    }

    /// Removes the bars (call when the build is over).
    pub fn finish(&self) {
        if let Mode::Bar { main, .. } = &self.mode {
            main.finish_and_clear();
        }
    }
}

/// A running step.
#[derive(Debug)]
pub struct Step {
    label: String,
    started: Instant,
    bar: Option<ProgressBar>,
    progress: Progress,
    done: bool,
}

impl Step {
    /// Ends the step and reports how.
    pub fn finish(mut self, outcome: Outcome) -> Duration {
        self.done = true;
        self.end(outcome)
    }

    fn end(&mut self, outcome: Outcome) -> Duration {
        let elapsed = self.started.elapsed();
        let line = match outcome {
            Outcome::Built => format!("built {} in {:.1} s", self.label, elapsed.as_secs_f64()),
            Outcome::Cached => format!("cached {}", self.label),
            Outcome::Failed => {
                format!("FAILED {} after {:.1} s", self.label, elapsed.as_secs_f64())
            }
        };
        match (&self.progress.mode, self.bar.take()) {
            (Mode::Bar { multi, main }, Some(bar)) => {
                bar.finish_and_clear();
                multi.remove(&bar);
                main.inc(1);
                if outcome != Outcome::Cached {
                    let _ = multi.println(format!("  {line}"));
                }
            }
            _ => log::info!("{line}"),
        }
        elapsed
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        if !self.done {
            self.end(Outcome::Failed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_mode_steps_finish() {
        let p = Progress::log();
        assert!(!p.is_bars());
        let s = p.start("a step");
        assert!(s.finish(Outcome::Built) < Duration::from_secs(5));
        drop(p.start("dropped step"));
        p.finish();
    }

    #[test]
    fn bar_mode_works_without_a_terminal() {
        let p = Progress::bars();
        p.start("x").finish(Outcome::Cached);
        p.note("hello");
        p.finish();
    }
}
