//! Small helpers for pattern matching over a MIL function.

use sd_mil::{Binding, ConstValue, Function, Operation};
use std::collections::HashMap;

/// Index of each value's producer, and each value's readers (op indices); the names are
/// borrowed from the function, so building it copies no strings.
pub struct Index<'f> {
    pub producer: HashMap<&'f str, usize>,
    pub readers: HashMap<&'f str, Vec<usize>>,
}

impl<'f> Index<'f> {
    pub fn new(f: &'f Function) -> Self {
        let mut producer = HashMap::with_capacity(f.operations.len());
        let mut readers: HashMap<&str, Vec<usize>> = HashMap::with_capacity(f.operations.len());
        for (i, op) in f.operations.iter().enumerate() {
            for v in &op.outputs {
                producer.insert(v.name.as_str(), i);
            }
            for n in op.input_names() {
                readers.entry(n).or_default().push(i);
            }
        }
        for n in &f.outputs {
            // Block outputs count as a reader that no pattern may swallow.
            readers.entry(n.as_str()).or_default().push(usize::MAX);
        }
        Index { producer, readers }
    }

    /// Readers of a value.
    pub fn readers(&self, name: &str) -> &[usize] {
        self.readers.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The op producing `name`, if its type is `op_type`.
    pub fn producer_of<'g>(
        &self,
        f: &'g Function,
        name: &str,
        op_type: &str,
    ) -> Option<(usize, &'g Operation)> {
        let i = *self.producer.get(name)?;
        let op = &f.operations[i];
        (op.op_type == op_type).then_some((i, op))
    }
}

/// The constant bound to `param` (through a const op or inline).
pub fn const_param(f: &Function, idx: &Index, op: &Operation, param: &str) -> Option<ConstValue> {
    match op.input(param)? {
        [Binding::Value(v)] => Some(v.clone()),
        [Binding::Name(n)] => {
            let p = *idx.producer.get(n.as_str())?;
            f.operations[p].const_value().cloned()
        }
        _ => None,
    }
}

/// Integer elements of a constant parameter.
pub fn const_ints(f: &Function, idx: &Index, op: &Operation, param: &str) -> Option<Vec<i64>> {
    const_param(f, idx, op, param)?.to_i64_vec()
}

/// Float elements of a constant parameter.
pub fn const_floats(f: &Function, idx: &Index, op: &Operation, param: &str) -> Option<Vec<f32>> {
    const_param(f, idx, op, param)?.to_f32_vec()
}

/// Removes the ops at the given indices, keeping the order of the rest.
pub fn remove_ops(f: &mut Function, dropped: &std::collections::HashSet<usize>) {
    let mut i = 0;
    f.operations.retain(|_| {
        i += 1;
        !dropped.contains(&(i - 1))
    });
}

/// The single value name bound to `param`.
pub fn name_of<'a>(op: &'a Operation, param: &str) -> Option<&'a str> {
    op.input_name(param)
}

/// A new op with inline constant parameters.
pub fn fused_op(
    op_type: &str,
    name: &str,
    names: &[(&str, &str)],
    consts: Vec<(&str, ConstValue)>,
    outputs: Vec<sd_mil::Var>,
) -> Operation {
    let mut inputs: Vec<(String, Vec<Binding>)> = names
        .iter()
        .map(|(p, n)| (p.to_string(), vec![Binding::Name(n.to_string())]))
        .collect();
    inputs.extend(
        consts
            .into_iter()
            .map(|(p, v)| (p.to_string(), vec![Binding::Value(v)])),
    );
    Operation {
        op_type: op_type.to_string(),
        name: name.to_string(),
        inputs,
        outputs,
        attributes: Default::default(),
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use crate::{LoadOptions, Model, Precision, Tensor, psnr};
    use std::collections::HashMap;
    use std::path::PathBuf;

    fn root() -> PathBuf {
        std::env::var_os("SD_FIXTURES")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("../../../shared/fixtures/apple-tiny")
            })
    }

    /// The main function of a split-einsum fixture package, before any pass.
    pub fn main_of(component: &str) -> sd_mil::Function {
        let pkg = root().join(format!(
            "packages/split_einsum/Stable_Diffusion_version_sd-tiny_{component}.mlpackage"
        ));
        let model = sd_mil::read_model(&pkg).unwrap();
        model.program.main().unwrap().clone()
    }

    /// Runs a split-einsum package with and without the passes; returns (fused model,
    /// min PSNR of fused vs unfused over outputs) in the given precision.
    pub fn fused_vs_unfused(component: &str, precision: Precision) -> (Model, f64) {
        fused_vs_unfused_in("split_einsum", component, precision)
    }

    /// As [`fused_vs_unfused`] for the package of another folder (split_einsum_v2, …).
    pub fn fused_vs_unfused_in(
        folder: &str,
        component: &str,
        precision: Precision,
    ) -> (Model, f64) {
        let pkg = root().join(format!(
            "packages/{folder}/Stable_Diffusion_version_sd-tiny_{component}.mlpackage"
        ));
        let refs =
            Tensor::read_safetensors(root().join(format!("reference/{component}.io.safetensors")))
                .unwrap();
        let inputs: HashMap<String, Tensor> = refs
            .into_iter()
            .filter_map(|(n, t)| n.strip_prefix("in.").map(|n| (n.to_string(), t)))
            .collect();
        let fused = Model::load(
            &pkg,
            LoadOptions {
                compute: precision,
                fuse: true,
                ..Default::default()
            },
        )
        .unwrap();
        let plain = Model::load(
            &pkg,
            LoadOptions {
                compute: precision,
                fuse: false,
                ..Default::default()
            },
        )
        .unwrap();
        let (a, b) = (
            fused.predict(&inputs).unwrap(),
            plain.predict(&inputs).unwrap(),
        );
        let mut worst = f64::INFINITY;
        for (k, v) in &a {
            let p = psnr(&v.to_f32_vec(), &b[k].to_f32_vec());
            println!("fused vs unfused {component} {k} {precision:?}: {p:.2} dB");
            worst = worst.min(p);
        }
        (fused, worst)
    }
}
