//! One progress bar per converted model: its stages (build, compress, chunk, write) with the
//! elapsed time. On a terminal the bar redraws in place; otherwise (logs, CI, pipes) each stage
//! is one plain line on stderr.

use indicatif::{ProgressBar, ProgressStyle};
use std::time::Duration;

/// The progress of one model through its conversion stages.
pub struct ModelProgress {
    bar: ProgressBar,
    label: String,
}

impl ModelProgress {
    /// A bar for `label` (e.g. `[2/4] unet`) going through `stages` stages.
    pub fn new(label: String, stages: u64) -> Self {
        let bar = ProgressBar::new(stages);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} {bar:20.cyan/blue} {pos}/{len} [{elapsed}] {msg}",
            )
            .expect("the template is valid")
            .progress_chars("=> "),
        );
        bar.set_prefix(label.clone());
        bar.enable_steady_tick(Duration::from_millis(200));
        ModelProgress { bar, label }
    }

    /// Enters the next stage, described by `msg`.
    pub fn stage(&self, msg: impl Into<String>) {
        let msg = msg.into();
        if self.bar.is_hidden() {
            eprintln!("{}: {msg}", self.label);
        }
        self.bar.set_message(msg);
    }

    /// Marks a stage done, with a note of what it did.
    pub fn done(&self, note: impl Into<String>) {
        let note = note.into();
        self.bar.inc(1);
        if self.bar.is_hidden() {
            eprintln!("{}:   {note}", self.label);
        } else {
            self.bar.println(format!("{}:   {note}", self.label));
        }
    }

    /// Ends the bar with a final line.
    pub fn finish(self, msg: impl Into<String>) {
        let msg = msg.into();
        self.bar.finish_and_clear();
        eprintln!("{}: {msg}", self.label);
    }
}
