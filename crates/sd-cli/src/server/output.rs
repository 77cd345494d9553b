//! The server's output folder: the only place it writes. Each image is written beside its
//! final name and renamed into place; a name already taken is never replaced.

use sd_runtime::pipeline::image::write_file_atomic;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// An output folder failure, with the path.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The folder cannot be created or written.
    #[error("the output folder {}: {detail}", path.display())]
    Folder {
        /// The folder.
        path: PathBuf,
        /// What failed.
        detail: String,
    },
    /// An image could not be written.
    #[error("writing {}: {detail}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What failed.
        detail: String,
    },
}

/// Where saved images go: `<folder>/<job number, 5 digits>-<Apple's file name>`.
#[derive(Debug)]
pub struct OutputFolder {
    dir: PathBuf,
    lock: Mutex<()>,
}

impl OutputFolder {
    /// Creates the folder when needed and proves it can be written.
    pub fn open(dir: &Path) -> Result<Self, OutputError> {
        crate::fs_util::prepare_output_folder(dir).map_err(|e| OutputError::Folder {
            path: dir.to_path_buf(),
            detail: e.to_string(),
        })?;
        Ok(OutputFolder {
            dir: dir.to_path_buf(),
            lock: Mutex::new(()),
        })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Writes `bytes` as `<number>-<file_name>` (`-2`, `-3`, … before the extension when the
    /// name is taken) and returns the path. `file_name` is one path component (Apple's names
    /// are built from safe characters); anything else is refused.
    pub fn save(&self, number: u64, file_name: &str, bytes: &[u8]) -> Result<PathBuf, OutputError> {
        let name = fit_name(&format!("{number:05}-{file_name}"));
        let single = Path::new(&name)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
            && !name.contains(['/', '\\']);
        if !single {
            return Err(OutputError::Write {
                path: self.dir.join(&name),
                detail: "not a plain file name".into(),
            });
        }
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let (stem, ext) = match name.rsplit_once('.') {
            Some((s, e)) => (s.to_string(), format!(".{e}")),
            None => (name.clone(), String::new()),
        };
        let mut path = self.dir.join(&name);
        let mut n = 2;
        while std::fs::symlink_metadata(&path).is_ok() {
            path = self.dir.join(format!("{stem}-{n}{ext}"));
            n += 1;
        }
        write_file_atomic(&path, bytes).map_err(|e| OutputError::Write {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        Ok(path)
    }
}

/// File names are at most 255 bytes on the usual file systems; room is kept for a `-N` suffix.
const MAX_NAME_BYTES: usize = 255 - 8;

/// `name` shortened to [`MAX_NAME_BYTES`] when needed, cutting the middle (the prompt) at a
/// character boundary and keeping the start (the number) and the end (seed, step, extension).
fn fit_name(name: &str) -> String {
    if name.len() <= MAX_NAME_BYTES {
        return name.to_string();
    }
    let tail_start = (name.len() - 48..name.len())
        .find(|&i| name.is_char_boundary(i))
        .unwrap_or(name.len());
    let budget = MAX_NAME_BYTES - (name.len() - tail_start);
    let head_end = (0..=budget)
        .rev()
        .find(|&i| name.is_char_boundary(i))
        .unwrap_or(0);
    format!("{}{}", &name[..head_end], &name[tail_start..])
}

#[cfg(test)]
mod tests {
    use super::{MAX_NAME_BYTES, fit_name};

    #[test]
    fn long_names_keep_their_number_and_ending() {
        let long = format!("00001-{}.93.final.png", "雪".repeat(80));
        let fitted = fit_name(&long);
        assert!(fitted.len() <= MAX_NAME_BYTES, "{}", fitted.len());
        assert!(
            fitted.starts_with("00001-雪") && fitted.ends_with("雪.93.final.png"),
            "{fitted}"
        );
        assert_eq!(fit_name("00002-a.1.final.png"), "00002-a.1.final.png");
    }
}
