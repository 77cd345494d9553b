//! Running a fixed-batch Core ML model on any number of rows: rows are grouped into the
//! model's batch (the last group padded by repeating its last row), each group runs through the
//! model's stages (one package, or chunk 1 then chunk 2), and the outputs are split back into
//! rows. This is how one function serves batch-2 and batch-1 (`--unet-batch-one`) UNets and
//! ControlNets alike.

use super::error::{PipelineError, Result};
use crate::{Predictor, Tensor};
use std::collections::HashMap;

/// One batch entry's values, by input or output name, without the batch dimension.
pub type Row = HashMap<String, Vec<f32>>;

/// A model as its stages: one package, or a chunked UNet's two.
pub struct Staged {
    /// What the model is, for messages ("UNet", "ControlNet `canny`").
    pub label: String,
    /// The packages in run order (on the burn backend or the CUDA engine).
    pub stages: Vec<Box<dyn Predictor>>,
}

impl Staged {
    /// The batch size the first stage declares (dim 0 of its first input).
    pub fn batch(&self) -> usize {
        self.first_input_shape(None)
            .and_then(|s| s.first().copied())
            .unwrap_or(1)
            .max(1)
    }

    /// The declared shape of input `name` in the first stage that has it (the first input
    /// when `name` is `None`).
    pub fn first_input_shape(&self, name: Option<&str>) -> Option<Vec<usize>> {
        self.stages.iter().find_map(|m| {
            m.description()
                .inputs
                .iter()
                .find(|f| name.is_none_or(|n| f.name == n))
                .map(|f| f.shape.clone())
        })
    }

    /// Whether any stage declares input `name`.
    pub fn has_input(&self, name: &str) -> bool {
        self.first_input_shape(Some(name)).is_some()
    }

    /// The names of the inputs no stage produces (what the caller must give).
    pub fn external_inputs(&self) -> Vec<String> {
        let mut produced: Vec<&str> = Vec::new();
        let mut inputs = Vec::new();
        for m in &self.stages {
            for f in &m.description().inputs {
                if !produced.contains(&f.name.as_str()) && !inputs.contains(&f.name) {
                    inputs.push(f.name.clone());
                }
            }
            produced.extend(m.description().outputs.iter().map(|f| f.name.as_str()));
        }
        inputs
    }

    /// The last stage's output names.
    pub fn output_names(&self) -> Vec<String> {
        self.stages
            .last()
            .map(|m| {
                m.description()
                    .outputs
                    .iter()
                    .map(|f| f.name.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Runs every row; returns one row of outputs (the last stage's) per input row.
    pub fn predict_rows(&self, rows: &[Row]) -> Result<Vec<Row>> {
        let batch = self.batch();
        let mut out = Vec::with_capacity(rows.len());
        for group in rows.chunks(batch) {
            let mut tensors: HashMap<String, Tensor> = HashMap::new();
            for stage in &self.stages {
                let mut inputs = HashMap::new();
                for f in &stage.description().inputs {
                    if let Some(t) = tensors.get(&f.name) {
                        inputs.insert(f.name.clone(), t.clone());
                        continue;
                    }
                    let t = self.stack(group, batch, &f.name, &f.shape)?;
                    inputs.insert(f.name.clone(), t);
                }
                let produced =
                    stage
                        .predict_checked(&inputs)
                        .map_err(|source| PipelineError::Predict {
                            model: self.label.clone(),
                            source: Box::new(source),
                        })?;
                tensors.extend(inputs);
                tensors.extend(produced);
            }
            // Each output once as host values, checked, then cut into the group's rows.
            let mut outputs = Vec::new();
            for n in self.output_names() {
                let t = &tensors[&n];
                let per = t.len() / batch.max(1);
                if t.shape.first() != Some(&batch) || per * batch != t.len() {
                    return Err(PipelineError::Signature {
                        model: self.label.clone(),
                        reason: format!(
                            "output `{n}` has shape {:?}, not batch {batch} first",
                            t.shape
                        ),
                    });
                }
                outputs.push((n, per, t.to_f32_vec()));
            }
            for r in 0..group.len() {
                let row = outputs
                    .iter()
                    .map(|(n, per, v)| (n.clone(), v[r * per..(r + 1) * per].to_vec()))
                    .collect();
                out.push(row);
            }
        }
        Ok(out)
    }

    /// Input `name` for one group: the rows' values stacked along dim 0, the last row repeated
    /// to fill the batch.
    fn stack(&self, group: &[Row], batch: usize, name: &str, shape: &[usize]) -> Result<Tensor> {
        let total: usize = shape.iter().product();
        let per = total / batch.max(1);
        let mut data = Vec::with_capacity(total);
        for i in 0..batch {
            let row = &group[i.min(group.len() - 1)];
            let v = row.get(name).ok_or_else(|| PipelineError::Signature {
                model: self.label.clone(),
                reason: format!("input `{name}` is not one the pipeline provides"),
            })?;
            if v.len() != per {
                return Err(PipelineError::Signature {
                    model: self.label.clone(),
                    reason: format!(
                        "input `{name}` is declared {shape:?} ({per} values per batch entry) but the pipeline has {} values per entry; the model was converted for another size",
                        v.len()
                    ),
                });
            }
            data.extend_from_slice(v);
        }
        Ok(Tensor::f32(shape.to_vec(), data))
    }
}
