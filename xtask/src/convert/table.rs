//! The summary table of `cargo xtask convert`: one row per package (chunks included).

use sd_cli::conversion::ConversionReport;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;

/// coremltools' word on one package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoremltoolsStatus {
    /// It passed.
    Ok,
    /// It failed, with the checker's reason.
    Failed(String),
    /// The check did not run.
    Skipped,
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The package's part (`unet`, `unet_chunk1`, …).
    pub model: String,
    /// Its `.mlpackage`.
    pub path: PathBuf,
    /// `weight.bin` size in MB.
    pub size_mb: f64,
    /// Ops in `main`.
    pub ops: Option<usize>,
    /// The lowest PSNR of its outputs against the fp32 reference.
    pub psnr_db: Option<f64>,
    /// Conversion seconds.
    pub seconds: Option<f64>,
    /// coremltools' verdict.
    pub coremltools: CoremltoolsStatus,
}

/// The rows of `report`: each package, then its chunks (not checked by PSNR).
pub fn rows(report: &ConversionReport) -> Vec<Row> {
    let psnr = |c| report.check.as_ref().and_then(|k| k.worst_db_of(c));
    let mut rows = Vec::new();
    for p in &report.packages {
        let name = p.component.suffix();
        rows.push(Row {
            model: name.clone(),
            path: p.path.clone(),
            size_mb: p.weight_bytes as f64 / 1e6,
            ops: p.ops,
            psnr_db: psnr(&p.component),
            seconds: (!p.skipped).then_some(p.seconds),
            coremltools: CoremltoolsStatus::Skipped,
        });
        for (i, c) in p.chunks.iter().enumerate() {
            rows.push(Row {
                model: format!("{name}_chunk{}", i + 1),
                path: c.path.clone(),
                size_mb: c.weight_bytes as f64 / 1e6,
                ops: Some(c.ops),
                psnr_db: None,
                seconds: None,
                coremltools: CoremltoolsStatus::Skipped,
            });
        }
    }
    rows
}

/// Sets each row's coremltools status from `verdicts` (package path → passed or the reason).
pub fn set_verdicts(rows: &mut [Row], verdicts: &HashMap<PathBuf, Result<(), String>>) {
    for r in rows {
        r.coremltools = match verdicts.get(&r.path) {
            Some(Ok(())) => CoremltoolsStatus::Ok,
            Some(Err(e)) => CoremltoolsStatus::Failed(e.clone()),
            None => CoremltoolsStatus::Skipped,
        };
    }
}

/// The table as text, a header line first.
pub fn render(rows: &[Row]) -> String {
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let mut out = format!(
        "{:<24} {:>10} {:>7} {:>10} {:>12} {:>9}\n",
        "model", "size (MB)", "ops", "PSNR (dB)", "coremltools", "time (s)"
    );
    for r in rows {
        let status = match &r.coremltools {
            CoremltoolsStatus::Ok => "ok",
            CoremltoolsStatus::Failed(_) => "FAIL",
            CoremltoolsStatus::Skipped => "skipped",
        };
        let _ = writeln!(
            out,
            "{:<24} {:>10.2} {:>7} {:>10} {:>12} {:>9}",
            r.model,
            r.size_mb,
            opt(r.ops.map(|o| o.to_string())),
            opt(r.psnr_db.map(|d| format!("{d:.1}"))),
            status,
            opt(r.seconds.map(|s| format!("{s:.1}"))),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_one_line_per_row_with_dashes_for_unknowns() {
        let rows = vec![Row {
            model: "unet_chunk1".into(),
            path: "u1.mlpackage".into(),
            size_mb: 1.234,
            ops: Some(10),
            psnr_db: None,
            seconds: None,
            coremltools: CoremltoolsStatus::Ok,
        }];
        let text = render(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let cols: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(cols, ["unet_chunk1", "1.23", "10", "-", "ok", "-"]);
    }
}
