//! `--torch-reference`: diffusers/transformers themselves (PyTorch, CPU, fp32) as the reference
//! of `sd convert --check-output-correctness`, through a Python interpreter the user names.
//!
//! The script (`torch_reference.py`, embedded in the binary) loads the same network from the
//! same diffusers folder, runs it on the inputs we wrote, and writes its outputs under the Core
//! ML feature names and layouts.

use anyhow::{Context, Result, bail};
use sd_convert::Component;
use sd_runtime::Tensor;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const SCRIPT: &str = include_str!("torch_reference.py");

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
    pub fn find(python: &str, work: &Path) -> Result<Self> {
        std::fs::create_dir_all(work).with_context(|| format!("creating {}", work.display()))?;
        let script = work.join("torch_reference.py");
        std::fs::write(&script, SCRIPT).with_context(|| format!("writing {}", script.display()))?;
        let out = Command::new(python)
            .arg(&script)
            .arg("--probe")
            .output()
            .with_context(|| format!("--torch-reference: cannot start `{python}`"))?;
        if !out.status.success() {
            bail!(
                "--torch-reference: `{python}` cannot import torch, diffusers, transformers and safetensors \
                 (pip install torch diffusers transformers safetensors, or pass another interpreter: \
                 --torch-reference /path/to/python):\n{}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
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
    ) -> Result<HashMap<String, Tensor>> {
        let stem = component.suffix();
        let in_path = work.join(format!("{stem}.in.safetensors"));
        let out_path = work.join(format!("{stem}.out.safetensors"));
        Tensor::write_safetensors(&in_path, inputs.iter().map(|(k, v)| (k.as_str(), v)))
            .with_context(|| format!("writing {}", in_path.display()))?;
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
        let out = cmd
            .output()
            .with_context(|| format!("running {}", self.python))?;
        if !out.status.success() {
            bail!(
                "the PyTorch reference of {stem} failed:\n{}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let outputs = Tensor::read_safetensors(&out_path)
            .with_context(|| format!("reading {}", out_path.display()))?;
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
