//! Model names on the command line: a local path as it is, else a Hugging Face Hub id
//! fetched into the Hub cache (with `--revision` and `--variant`), progress on stderr.

use crate::progress::DownloadProgress;
use anyhow::{Result, bail};
use sd_cli::hub::{Fetched, HubConfig, HubRequest, fetch, looks_like_hub_id};
use std::path::Path;

/// A model name made local.
pub enum Local {
    /// An existing file or folder.
    Path(std::path::PathBuf),
    /// A Hub model, now in the cache.
    Hub(Fetched),
}

impl Local {
    /// What to load or convert.
    pub fn path(&self) -> &Path {
        match self {
            Local::Path(p) => p,
            Local::Hub(f) => &f.path,
        }
    }
}

/// `name` as a local path when one exists, else as a Hub id fetched (`revision`, `variant`:
/// see [`HubRequest`]).
pub fn localize(name: &str, revision: Option<&str>, variant: Option<&str>) -> Result<Local> {
    let path = Path::new(name);
    if path.exists() {
        if revision.is_some() {
            bail!("--revision is for Hub ids; {name} is a local path");
        }
        return Ok(Local::Path(path.to_path_buf()));
    }
    if !looks_like_hub_id(name) {
        bail!("{name}: no such file or folder");
    }
    let config = HubConfig::from_env()?;
    let request = HubRequest {
        repo: name.to_string(),
        revision: revision.map(str::to_string),
        variant: variant.map(str::to_string),
    };
    let mut progress = DownloadProgress::default();
    let fetched = fetch(&config, &request, &mut |e| progress.show(name, e))?;
    Ok(Local::Hub(fetched))
}
