//! Where the Hub is and how to talk to it: endpoint, cache folder, token, offline mode —
//! from the environment variables `huggingface_hub` reads, or set by hand.

use std::path::PathBuf;
use std::time::Duration;

/// The Hub's own address, when `HF_ENDPOINT` is not set.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// How to reach the Hub and where its files are cached. [`HubConfig::from_env`] reads the
/// same variables as Python's `huggingface_hub`, so both share one cache and one login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubConfig {
    /// Base URL (`HF_ENDPOINT`, default [`DEFAULT_ENDPOINT`]), without a trailing `/`.
    pub endpoint: String,
    /// The Hub cache folder (`HF_HUB_CACHE`, else `$HF_HOME/hub`, else
    /// `~/.cache/huggingface/hub`) holding `models--owner--name/{blobs,snapshots,refs}`.
    pub cache_dir: PathBuf,
    /// Access token for private and gated repositories (`HF_TOKEN`, else the file
    /// `HF_TOKEN_PATH`, else `$HF_HOME/token`, as `huggingface-cli login` writes it).
    pub token: Option<String>,
    /// Cache only, no network (`HF_HUB_OFFLINE=1`).
    pub offline: bool,
    /// Attempts per file after the first when a transfer breaks (each resumes where it stopped).
    pub retries: u32,
    /// Wait before the first retry; doubled for each next one (at most 8 s).
    pub retry_delay: Duration,
    /// Longest silence on a connection before it counts as broken.
    pub read_timeout: Duration,
}

/// Why the environment gives no usable configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// No cache folder can be derived.
    #[error("no Hugging Face cache folder: set HF_HOME or HF_HUB_CACHE (HOME is not set either)")]
    NoCache,
    /// The token file exists but cannot be read.
    #[error("reading the Hugging Face token file {}", path.display())]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl HubConfig {
    /// A configuration for `endpoint` caching in `cache_dir`, online, without a token.
    pub fn new(endpoint: impl Into<String>, cache_dir: impl Into<PathBuf>) -> Self {
        HubConfig {
            endpoint: endpoint.into().trim_end_matches('/').to_string(),
            cache_dir: cache_dir.into(),
            token: None,
            offline: false,
            retries: 5,
            retry_delay: Duration::from_millis(500),
            read_timeout: Duration::from_secs(60),
        }
    }

    /// The configuration the environment gives (see the field docs for each variable).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// [`HubConfig::from_env`] over any variable lookup (for tests and embedding).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let home = var("HOME").map(PathBuf::from);
        let hf_home = var("HF_HOME")
            .map(PathBuf::from)
            .or_else(|| var("XDG_CACHE_HOME").map(|x| PathBuf::from(x).join("huggingface")))
            .or_else(|| home.as_ref().map(|h| h.join(".cache/huggingface")));
        let cache_dir = var("HF_HUB_CACHE")
            .or_else(|| var("HUGGINGFACE_HUB_CACHE"))
            .map(PathBuf::from)
            .or_else(|| hf_home.as_ref().map(|h| h.join("hub")))
            .ok_or(ConfigError::NoCache)?;
        let endpoint = var("HF_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        let mut config = HubConfig::new(endpoint, cache_dir);
        config.offline = ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"]
            .iter()
            .any(|k| var(k).is_some_and(|v| is_true(&v)));
        config.token = match var("HF_TOKEN").or_else(|| var("HUGGING_FACE_HUB_TOKEN")) {
            Some(t) => Some(t.trim().to_string()),
            None => {
                let file = var("HF_TOKEN_PATH")
                    .map(PathBuf::from)
                    .or_else(|| hf_home.map(|h| h.join("token")));
                match file {
                    Some(f) => read_token(f)?,
                    None => None,
                }
            }
        };
        config.token = config.token.filter(|t| !t.is_empty());
        Ok(config)
    }
}

/// `huggingface_hub`'s truth values: 1, ON, YES, TRUE (any case).
fn is_true(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_uppercase().as_str(),
        "1" | "ON" | "YES" | "TRUE"
    )
}

/// The token in `path`, trimmed; `None` when there is no such file.
fn read_token(path: PathBuf) -> Result<Option<String>, ConfigError> {
    const MAX_TOKEN_FILE: u64 = 64 * 1024;
    match std::fs::metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(ConfigError::TokenFile { path, source }),
        Ok(_) => {}
    }
    match sd_runtime::pipeline::image::read_input_file(&path, MAX_TOKEN_FILE) {
        Ok(t) => Ok(Some(String::from_utf8_lossy(&t).trim().to_string())),
        Err(e) => Err(ConfigError::TokenFile {
            path,
            source: std::io::Error::other(e),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn the_environment_is_read_as_huggingface_hub_reads_it() {
        let c = HubConfig::from_vars(vars(&[("HOME", "/home/u")])).unwrap();
        assert_eq!(c.cache_dir, PathBuf::from("/home/u/.cache/huggingface/hub"));
        assert_eq!(c.endpoint, DEFAULT_ENDPOINT);
        assert!(!c.offline);
        let c = HubConfig::from_vars(vars(&[
            ("HOME", "/home/u"),
            ("HF_HOME", "/data/hf"),
            ("HF_ENDPOINT", "http://127.0.0.1:9/"),
            ("HF_HUB_OFFLINE", "yes"),
            ("HF_TOKEN", " hf_abc \n"),
        ]))
        .unwrap();
        assert_eq!(c.cache_dir, PathBuf::from("/data/hf/hub"));
        assert_eq!(c.endpoint, "http://127.0.0.1:9");
        assert!(c.offline);
        assert_eq!(c.token.as_deref(), Some("hf_abc"));
        let c = HubConfig::from_vars(vars(&[
            ("HF_HOME", "/data/hf"),
            ("HF_HUB_CACHE", "/fast/hub"),
            ("HF_HUB_OFFLINE", "0"),
        ]))
        .unwrap();
        assert_eq!(c.cache_dir, PathBuf::from("/fast/hub"));
        assert!(!c.offline);
        assert!(HubConfig::from_vars(vars(&[])).is_err());
    }

    #[test]
    fn the_token_file_is_read_when_no_variable_names_one() {
        let dir = std::env::temp_dir().join(format!("sd-hub-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("token"), "hf_from_file\n").unwrap();
        let home = dir.to_string_lossy().into_owned();
        let c = HubConfig::from_vars(vars(&[("HF_HOME", &home)])).unwrap();
        assert_eq!(c.token.as_deref(), Some("hf_from_file"));
        let c = HubConfig::from_vars(vars(&[("HF_HOME", &home), ("HF_TOKEN", "hf_env")])).unwrap();
        assert_eq!(c.token.as_deref(), Some("hf_env"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
