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

/// Hub downloads on stderr: a byte bar per file on a terminal, else one line per file.
#[derive(Default)]
pub struct DownloadProgress {
    bar: Option<ProgressBar>,
}

impl DownloadProgress {
    /// Shows one event of `sd_cli::hub::fetch` for `repo`.
    pub fn show(&mut self, repo: &str, e: &sd_cli::hub::HubEvent) {
        use sd_cli::hub::HubEvent;
        match *e {
            HubEvent::Resolved {
                commit,
                files,
                bytes,
            } => {
                let todo = if bytes == 0 {
                    "all in the cache".to_string()
                } else {
                    format!("{} to download", indicatif::HumanBytes(bytes))
                };
                eprintln!(
                    "{repo} @ {}: {files} files, {todo}",
                    &commit[..12.min(commit.len())]
                );
            }
            HubEvent::CacheOnly { reason } => eprintln!("{repo}: {reason}"),
            HubEvent::Note(n) => eprintln!("{n}"),
            HubEvent::FileStart {
                path,
                size,
                resumed_from,
            } => {
                let bar = ProgressBar::new(size);
                bar.set_style(
                    ProgressStyle::with_template(
                        "{msg} {bar:24.cyan/blue} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
                    )
                    .expect("the template is valid")
                    .progress_chars("=> "),
                );
                bar.set_message(path.to_string());
                bar.set_position(resumed_from);
                if bar.is_hidden() {
                    let resumed = if resumed_from > 0 {
                        format!(", resuming at {}", indicatif::HumanBytes(resumed_from))
                    } else {
                        String::new()
                    };
                    eprintln!(
                        "downloading {path} ({}{resumed})",
                        indicatif::HumanBytes(size)
                    );
                }
                self.bar = Some(bar);
            }
            HubEvent::FileProgress { done, .. } => {
                if let Some(b) = &self.bar {
                    b.set_position(done);
                }
            }
            HubEvent::Retry {
                path,
                attempt,
                cause,
            } => {
                let line = format!("{path}: {cause}; retry {attempt}");
                match &self.bar {
                    Some(b) if !b.is_hidden() => b.println(line),
                    _ => eprintln!("{line}"),
                }
            }
            HubEvent::FileDone { .. } => {
                if let Some(b) = self.bar.take() {
                    b.finish_and_clear();
                }
            }
        }
    }
}
