//! `sd-cache.json`: written last into a cache entry, it says the entry is complete and what it
//! holds. An entry without a valid marker is not an entry.

use crate::fs_util::{PathError, at_file};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The marker's file name.
pub const MARKER: &str = "sd-cache.json";

/// The marker's layout version.
const FORMAT: u32 = 1;

/// What a complete cache entry holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheMarker {
    /// The marker's layout version.
    pub format: u32,
    /// The `sd-cli` version that converted the model.
    pub sd_cli_version: String,
    /// The entry's key (its folder name).
    pub key: String,
    /// The model's canonical path.
    pub model: String,
    /// The conversion options, as hashed into the key.
    pub options: String,
    /// The packages, relative to the entry.
    pub packages: Vec<String>,
    /// The other files (tokenizer, configs), relative to the entry.
    pub files: Vec<String>,
    /// When the conversion finished, in seconds since the Unix epoch.
    pub created_unix_s: u64,
}

impl CacheMarker {
    /// A marker for this crate's version.
    pub fn new(key: String, model: String, options: String) -> Self {
        CacheMarker {
            format: FORMAT,
            sd_cli_version: env!("CARGO_PKG_VERSION").into(),
            key,
            model,
            options,
            packages: Vec::new(),
            files: Vec::new(),
            created_unix_s: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        }
    }

    /// Writes the marker into `entry`.
    pub fn write(&self, entry: &Path) -> Result<(), PathError> {
        let path = entry.join(MARKER);
        let json = serde_json::to_string_pretty(self).expect("a marker serializes");
        sd_mil::files::write_atomic(&path, (json + "\n").as_bytes())
            .map_err(at_file("writing", &path))
    }

    /// The marker of the complete entry `entry` with key `key`: `None` when the marker is
    /// missing, unreadable, of another key or layout, or names a package that is not there.
    pub fn read_complete(entry: &Path, key: &str) -> Option<Self> {
        let text = std::fs::read_to_string(entry.join(MARKER)).ok()?;
        let m: CacheMarker = serde_json::from_str(&text).ok()?;
        let complete = m.format == FORMAT
            && m.key == key
            && m.packages.iter().all(|p| entry.join(p).is_dir())
            && m.files.iter().all(|f| entry.join(f).is_file());
        complete.then_some(m)
    }
}
