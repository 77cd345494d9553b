//! `--torch-reference`: diffusers/transformers themselves (PyTorch, CPU, fp32) as the reference
//! of the correctness check, through a Python interpreter the user names.
//!
//! The script (`torch_reference.py`, embedded in the library) loads the same network from the
//! same diffusers folder, runs it on the inputs we wrote, and writes its outputs under the Core
//! ML feature names and layouts.

use crate::fs_util::{PathError, at};
use sd_convert::Component;
use sd_runtime::Tensor;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const SCRIPT: &str = include_str!("torch_reference.py");

/// Why the PyTorch reference is unavailable or failed.
#[derive(Debug, thiserror::Error)]
pub enum TorchReferenceError {
    /// The interpreter could not be started.
    #[error("--torch-reference: cannot start `{python}`")]
    Start {
        /// The interpreter.
        python: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The interpreter runs but lacks part of the reference stack.
    #[error(
        "--torch-reference: `{python}` cannot import torch, diffusers, transformers and safetensors \
         (pip install torch diffusers transformers safetensors, or pass another interpreter: \
         --torch-reference /path/to/python):\n{stderr}"
    )]
    MissingStack {
        /// The interpreter.
        python: String,
        /// What it printed.
        stderr: String,
    },
    /// A file of the exchange could not be written or read.
    #[error(transparent)]
    Io(#[from] PathError),
    /// The inputs or outputs (safetensors) could not be written or read.
    #[error("{what} {}", path.display())]
    Tensors {
        /// `writing` or `reading`.
        what: &'static str,
        /// The safetensors file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: Box<sd_runtime::RuntimeError>,
    },
    /// The interpreter could not be run for a component.
    #[error("running {python}")]
    Run {
        /// The interpreter.
        python: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The script failed on a component.
    #[error("the PyTorch reference of {component} failed:\n{stderr}")]
    Failed {
        /// The component's suffix.
        component: String,
        /// What the script printed.
        stderr: String,
    },
}

/// A Python interpreter known to import torch, diffusers, transformers and safetensors; the
/// folder holding the script is removed on drop.
pub struct TorchReference {
    python: String,
    script: PathBuf,
    /// The versions the probe printed (`torch 2.x, diffusers 0.y, …`).
    pub versions: String,
}

impl TorchReference {
    /// Checks that `python` imports the reference stack; writes the script into `work`.
    pub fn find(python: &str, work: &Path) -> Result<Self, TorchReferenceError> {
        std::fs::create_dir_all(work).map_err(at("creating", work))?;
        let script = work.join("torch_reference.py");
        std::fs::write(&script, SCRIPT).map_err(at("writing", &script))?;
        let out = Command::new(python)
            .arg(&script)
            .arg("--probe")
            .output()
            .map_err(|source| TorchReferenceError::Start {
                python: python.to_string(),
                source,
            })?;
        if !out.status.success() {
            return Err(TorchReferenceError::MissingStack {
                python: python.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(TorchReference {
            python: python.to_string(),
            script,
            versions: String::from_utf8_lossy(&out.stdout).trim().to_string(),
        })
    }

    /// Runs `component` of the diffusers folder `model_dir` on `inputs` (feature names) and
    /// returns its outputs by feature name. `work` holds the exchanged files.
    pub fn run(
        &self,
        component: &Component,
        model_dir: &Path,
        variant: Option<&str>,
        hidden_embeds: bool,
        inputs: &HashMap<String, Tensor>,
        work: &Path,
    ) -> Result<HashMap<String, Tensor>, TorchReferenceError> {
        let stem = component.suffix();
        let in_path = work.join(format!("{stem}.in.safetensors"));
        let out_path = work.join(format!("{stem}.out.safetensors"));
        Tensor::write_safetensors(&in_path, inputs.iter().map(|(k, v)| (k.as_str(), v))).map_err(
            |source| TorchReferenceError::Tensors {
                what: "writing",
                path: in_path.clone(),
                source: Box::new(source),
            },
        )?;
        let mut cmd = Command::new(&self.python);
        cmd.arg(&self.script);
        match component {
            Component::ControlNet(dir) => {
                cmd.arg("controlnet")
                    .arg(model_dir)
                    .arg("--controlnet")
                    .arg(dir);
            }
            Component::MultilingualProjection(path) => {
                cmd.arg("multilingual_projection")
                    .arg(model_dir)
                    .arg("--projection")
                    .arg(path);
            }
            other => {
                cmd.arg(other.suffix()).arg(model_dir);
            }
        }
        cmd.arg(&in_path).arg(&out_path);
        if let Some(v) = variant {
            cmd.arg("--variant").arg(v);
        }
        if hidden_embeds {
            cmd.arg("--hidden-embeds");
        }
        let out = cmd.output().map_err(|source| TorchReferenceError::Run {
            python: self.python.clone(),
            source,
        })?;
        if !out.status.success() {
            return Err(TorchReferenceError::Failed {
                component: stem,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        let outputs =
            Tensor::read_safetensors(&out_path).map_err(|source| TorchReferenceError::Tensors {
                what: "reading",
                path: out_path.clone(),
                source: Box::new(source),
            })?;
        Ok(outputs.into_iter().collect())
    }
}

impl Drop for TorchReference {
    fn drop(&mut self) {
        if let Some(dir) = self.script.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
