//! `sd inspect MODEL…` (`.mlpackage` or `.mlmodelc`): signature, spec version and opset, op histogram, weight bytes.

use anyhow::{Context, Result};
use sd_mil::{ConstData, Model, mil_text};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Arguments of `sd inspect`.
#[derive(clap::Args)]
pub struct Args {
    /// Models to inspect (.mlpackage or compiled .mlmodelc folders).
    #[arg(required = true)]
    packages: Vec<PathBuf>,
    /// Print the program as MIL text.
    #[arg(long)]
    mil: bool,
    /// Print one JSON object per package, one per line.
    #[arg(long, conflicts_with = "mil")]
    json: bool,
}

/// What `sd inspect` reports about one package.
struct Summary {
    ops: BTreeMap<String, usize>,
    weight_bytes: BTreeMap<String, u64>,
}

fn summarize(model: &Model) -> Summary {
    let mut ops = BTreeMap::new();
    let mut weight_bytes = BTreeMap::new();
    for op in model.program.functions.values().flat_map(|f| &f.operations) {
        *ops.entry(op.op_type.clone()).or_insert(0) += 1;
        for v in op.constants() {
            if matches!(v.data, ConstData::Blob { .. }) {
                *weight_bytes
                    .entry(v.ty.dtype.name().to_string())
                    .or_insert(0) += v.ty.storage_len() as u64;
            }
        }
    }
    Summary { ops, weight_bytes }
}

fn features(list: &[sd_mil::FeatureDescription]) -> Vec<serde_json::Value> {
    list.iter()
        .map(|f| json!({"name": f.name, "dtype": f.dtype.dtype().name(), "shape": f.shape}))
        .collect()
}

/// Runs `sd inspect`.
pub fn run(args: Args) -> Result<()> {
    for path in &args.packages {
        let model =
            sd_mil::read_model(path).with_context(|| format!("reading {}", path.display()))?;
        let main = model
            .program
            .main()
            .context("the program has no main function")?;
        if args.mil {
            let text = mil_text::program_text(&model.program, &mut mil_text::stored_offsets)
                .with_context(|| format!("printing {} as MIL text", path.display()))?;
            print!("{text}");
            continue;
        }
        let s = summarize(&model);
        if args.json {
            let v = json!({
                "package": path.display().to_string(),
                "spec_version": model.spec_version,
                "opset": main.opset.name(),
                "inputs": features(&model.description.inputs),
                "outputs": features(&model.description.outputs),
                "ops": s.ops,
                "weight_bytes": s.weight_bytes.values().sum::<u64>(),
                "weight_bytes_by_dtype": s.weight_bytes,
            });
            println!("{v}");
            continue;
        }
        println!("{}", path.display());
        println!(
            "  spec version {} ({}, {})",
            model.spec_version,
            main.opset.name(),
            main.opset.ios_name()
        );
        for (kind, list) in [
            ("input ", &model.description.inputs),
            ("output", &model.description.outputs),
        ] {
            for f in list {
                println!(
                    "  {kind} {:<28} {:<6} {:?}",
                    f.name,
                    f.dtype.dtype().name(),
                    f.shape
                );
            }
        }
        let total: usize = s.ops.values().sum();
        let hist: Vec<String> = s.ops.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("  ops {total}: {}", hist.join(", "));
        let weights: Vec<String> = s
            .weight_bytes
            .iter()
            .map(|(k, v)| format!("{k} {v} B"))
            .collect();
        println!(
            "  weights {} B: {}",
            s.weight_bytes.values().sum::<u64>(),
            weights.join(", ")
        );
    }
    Ok(())
}
