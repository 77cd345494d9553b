//! Where a prediction spends its time, per op type, on the CPU backend.
//!
//! `cargo run --release -p sd-runtime --example op_profile -- PACKAGE INPUTS.safetensors [RUNS]`
//! (inputs named as the model's features, or `in.<feature>` as in the reference files).
//! [`Model::predict_inspect`] reports each value as its op finishes; on the CPU the
//! kernels run synchronously, so the time between two reports is the op's. Values are not
//! read back, so the profile adds almost nothing to the run.

use sd_runtime::{Model, Precision, Tensor};
use std::collections::HashMap;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // As the `sd` binary does: freed memory is reused, not faulted in afresh.
    sd_runtime::allocator::keep_freed_memory();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(package), Some(inputs)) = (args.first(), args.get(1)) else {
        return Err("usage: op_profile PACKAGE INPUTS.safetensors [RUNS]".into());
    };
    let runs: usize = args.get(2).map(|r| r.parse()).transpose()?.unwrap_or(5);
    let loading = Instant::now();
    let model = Model::load_cpu(package, Precision::Program)?;
    println!("loaded in {:.2} s", loading.elapsed().as_secs_f64());
    let inputs: HashMap<String, Tensor> = Tensor::read_safetensors(inputs)?
        .into_iter()
        .map(|(n, t)| (n.strip_prefix("in.").unwrap_or(&n).to_string(), t))
        .filter(|(n, _)| model.description().inputs.iter().any(|f| &f.name == n))
        .collect();
    model.predict(&inputs)?;
    let mut per_type: HashMap<String, (f64, usize)> = HashMap::new();
    let mut per_op: HashMap<String, (f64, String, Vec<usize>)> = HashMap::new();
    let start = Instant::now();
    for _ in 0..runs {
        let mut last = Instant::now();
        model.predict_inspect(&inputs, |p| {
            let now = Instant::now();
            let e = per_type.entry(p.op_type.to_string()).or_default();
            e.0 += (now - last).as_secs_f64() * 1e3 / runs as f64;
            e.1 += 1;
            let o = per_op.entry(p.op.to_string()).or_default();
            o.0 += (now - last).as_secs_f64() * 1e3 / runs as f64;
            (o.1, o.2) = (p.op_type.to_string(), p.shape());
            last = now;
        })?;
    }
    let total = start.elapsed().as_secs_f64() * 1e3 / runs as f64;
    let mut rows: Vec<_> = per_type.into_iter().collect();
    rows.sort_by(|a, b| b.1.0.total_cmp(&a.1.0));
    println!("{total:.2} ms per prediction (mean of {runs})");
    for (op, (ms, n)) in rows {
        let share = 100.0 * ms / total;
        println!("{op:<32} {ms:>9.3} ms {share:>5.1} % ({} ops)", n / runs);
    }
    let mut ops: Vec<_> = per_op.into_iter().collect();
    ops.sort_by(|a, b| b.1.0.total_cmp(&a.1.0));
    println!("slowest ops:");
    for (name, (ms, op, shape)) in ops.into_iter().take(12) {
        println!("{name:<40} {op:<24} {shape:?} {ms:.3} ms");
    }
    Ok(())
}
