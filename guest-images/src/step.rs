//! Cached build steps: a step's inputs hash to a key; when a record for the
//! key exists and every output still matches its SHA-256 the step is skipped,
//! otherwise it runs in a scratch directory and its outputs are stored.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::cache::{sha256_hex, Cache, ObjectRef, StepRecord};
use crate::progress::{Outcome, Progress};
use crate::Result;

/// What a step's body hands back: files to store (role, path, object name)
/// and facts worth recording.
#[derive(Debug, Default)]
pub(crate) struct StepOutput {
    pub files: Vec<(String, PathBuf, String)>,
    pub meta: serde_json::Value,
}

impl StepOutput {
    pub fn file(
        mut self,
        role: impl Into<String>,
        path: impl Into<PathBuf>,
        name: impl Into<String>,
    ) -> Self {
        self.files.push((role.into(), path.into(), name.into()));
        self
    }

    pub fn meta(mut self, meta: serde_json::Value) -> Self {
        self.meta = meta;
        self
    }
}

/// The cache and the progress reporter a build uses.
#[derive(Debug, Clone)]
pub struct BuildContext {
    /// Where artifacts live.
    pub cache: Cache,
    /// Where progress goes.
    pub progress: Progress,
}

impl BuildContext {
    /// A context with progress as log lines.
    pub fn new(cache: Cache) -> Self {
        Self {
            cache,
            progress: Progress::log(),
        }
    }

    /// Replaces the progress reporter.
    pub fn with_progress(mut self, progress: Progress) -> Self {
        self.progress = progress;
        self
    }

    /// Runs `body` unless a verified record for (`step`, `inputs`) exists.
    pub(crate) fn step(
        &self,
        step: &str,
        label: &str,
        inputs: serde_json::Value,
        body: impl FnOnce(&Path) -> Result<StepOutput>,
    ) -> Result<StepRecord> {
        let key = sha256_hex(format!("{step}\n{inputs}").as_bytes());
        let _lock = self.cache.lock(&format!("{step}-{key}"))?;
        let progress = self.progress.start(label);
        if let Some(record) = self.cache.load_record(step, &key)? {
            let bad: Vec<&ObjectRef> = record
                .outputs
                .values()
                .filter(|o| !self.cache.verify(o))
                .collect();
            if bad.is_empty() {
                progress.finish(Outcome::Cached);
                return Ok(record);
            }
            for obj in bad {
                log::warn!(
                    "cached {} of step {label} is missing or no longer matches sha256 {}; rebuilding",
                    obj.name,
                    obj.sha256
                );
                self.cache.remove(obj);
            }
        }
        let started = Instant::now();
        let scratch = self.cache.scratch(step)?;
        let output = body(scratch.path())?;
        let mut outputs = std::collections::BTreeMap::new();
        for (role, path, name) in output.files {
            outputs.insert(role, self.cache.store_file(&path, &name)?);
        }
        let record = StepRecord {
            step: step.to_string(),
            key,
            inputs,
            outputs,
            meta: output.meta,
            elapsed_ms: started.elapsed().as_millis() as u64,
        };
        self.cache.save_record(&record)?;
        progress.finish(Outcome::Built);
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn steps_are_cached_and_rebuilt_when_corrupted() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = BuildContext::new(Cache::open(dir.path()).unwrap());
        let runs = Cell::new(0);
        let body = |scratch: &Path| {
            runs.set(runs.get() + 1);
            let p = scratch.join("out");
            std::fs::write(&p, b"artifact").unwrap();
            Ok(StepOutput::default().file("main", p, "out.bin"))
        };
        let inputs = serde_json::json!({"v": 1});
        let r1 = ctx.step("t", "test", inputs.clone(), body).unwrap();
        let r2 = ctx.step("t", "test", inputs.clone(), body).unwrap();
        assert_eq!(runs.get(), 1, "second call is served from the cache");
        assert_eq!(r1.outputs, r2.outputs);

        let path = ctx.cache.object_path(&r1.outputs["main"]);
        std::fs::write(&path, b"artefact").unwrap();
        let r3 = ctx.step("t", "test", inputs.clone(), body).unwrap();
        assert_eq!(runs.get(), 2, "a corrupted output is rebuilt");
        assert_eq!(std::fs::read(&path).unwrap(), b"artifact");
        assert_eq!(r3.outputs, r1.outputs);

        ctx.step("t", "test", serde_json::json!({"v": 2}), body)
            .unwrap();
        assert_eq!(runs.get(), 3, "other inputs, other key");
    }
}
