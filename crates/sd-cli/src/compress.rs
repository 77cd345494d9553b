//! `sd compress PACKAGE -o OUT`: palettize or quantize a package's weights, and/or cut it into
//! two chunks, as Apple's `--quantize-nbits` / mixed-bit recipes / `--chunk-unet` do.

use crate::recipe_file::{RecipeChoice, read_recipe};
use anyhow::{Context, Result, bail};
use sd_compress::analysis::{AnalysisEvent, AnalysisOptions};
use sd_compress::{Granularity, PalettizeOptions, chunk, palettize, quantize_linear8};
use sd_mil::package::{WriteOptions, write_package};
use sd_runtime::pipeline::image::write_file_atomic;
use std::path::PathBuf;

/// Arguments of `sd compress`.
#[derive(clap::Args)]
pub struct Args {
    /// The package to compress.
    package: PathBuf,
    /// Output package (with --chunk: `<stem>_chunk1/2.mlpackage` beside it).
    #[arg(short, long)]
    output: PathBuf,
    /// Palettize with optimal k-means at this many bits (1, 2, 4, 6, 8; 3 from iOS18).
    #[arg(long, conflicts_with = "linear8")]
    nbits: Option<u32>,
    /// Quantize linearly to 8 bits per output channel instead.
    #[arg(long)]
    linear8: bool,
    /// Mixed-bit recipe: a JSON {weight name: bits}, or a pre-analysis file (`--analyze`,
    /// Apple's `--pre-analysis-json-path`) with --selected-recipe or --target-psnr. Weights it
    /// does not name use --nbits, or stay uncompressed without it.
    #[arg(
        long,
        visible_alias = "pre-analysis-json-path",
        conflicts_with = "linear8"
    )]
    recipe: Option<PathBuf>,
    /// The recipe of a pre-analysis file to apply, by name (`recipe_4.50_bit_mixedpalette`).
    #[arg(long, requires = "recipe", conflicts_with = "target_psnr")]
    selected_recipe: Option<String>,
    /// Apply the smallest recipe of a pre-analysis file whose measured PSNR reaches this (dB).
    #[arg(long, requires = "recipe")]
    target_psnr: Option<f64>,
    /// Measure instead of compressing: the mixed-bit pre-analysis (PSNR of the package's
    /// output with each weight palettized alone at each bit width, then cumulatively), with
    /// recipes for a range of PSNR targets, written as JSON to -o.
    #[arg(long, conflicts_with_all = ["nbits", "linear8", "recipe", "chunk"])]
    analyze: bool,
    /// With --analyze: the bit widths to measure.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1,2,4,6,8",
        requires = "analyze"
    )]
    analysis_bits: Vec<u32>,
    /// With --analyze: candidate weights have more elements than this.
    #[arg(long, default_value_t = sd_compress::analysis::MIN_ELEMENTS, requires = "analyze")]
    min_elements: usize,
    /// With --analyze: how many recipes to write.
    #[arg(long, default_value_t = 7, requires = "analyze")]
    num_recipes: usize,
    /// One table per this many output channels (iOS18 packages).
    #[arg(long, requires = "nbits")]
    group_size: Option<usize>,
    /// Only weights with more elements than this are compressed.
    #[arg(long, default_value_t = 2048)]
    weight_threshold: usize,
    /// Cut the (compressed) model into two chunks.
    #[arg(long)]
    chunk: bool,
    /// Replace existing outputs.
    #[arg(long)]
    force: bool,
}

/// Runs `sd compress`.
pub fn run(args: Args) -> Result<()> {
    if args.analyze {
        return analyze(&args);
    }
    if args.nbits.is_none() && args.recipe.is_none() && !args.linear8 && !args.chunk {
        bail!("nothing to do: give --nbits, --recipe, --linear8, --chunk or --analyze");
    }
    let mut model = sd_mil::read_model(&args.package)
        .with_context(|| format!("reading {}", args.package.display()))?;
    if args.nbits.is_some() || args.recipe.is_some() {
        let mut opts = PalettizeOptions::new(args.nbits.unwrap_or(16));
        opts.weight_threshold = args.weight_threshold;
        if let Some(g) = args.group_size {
            opts.granularity = Granularity::PerGroupedChannel { group_size: g };
        }
        if let Some(r) = &args.recipe {
            let choice = RecipeChoice {
                selected: args.selected_recipe.as_deref(),
                target_psnr: args.target_psnr,
            };
            opts.per_weight_bits = read_recipe(r, choice)?;
        }
        let r = palettize(&mut model.program, &opts)?;
        eprintln!(
            "palettized {} weights: {} → {} bytes",
            r.weights, r.bytes_before, r.bytes_after
        );
    }
    if args.linear8 {
        let r = quantize_linear8(&mut model.program, args.weight_threshold)?;
        eprintln!(
            "quantized {} weights: {} → {} bytes",
            r.weights, r.bytes_before, r.bytes_after
        );
    }
    let opts = WriteOptions {
        overwrite: args.force,
    };
    if args.chunk {
        let chunks = chunk(&model)?;
        let stem = args
            .output
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("model")
            .to_string();
        for (i, m) in [(1, &chunks.first), (2, &chunks.second)] {
            let path = args
                .output
                .with_file_name(format!("{stem}_chunk{i}.mlpackage"));
            write_package(m, &path, opts).with_context(|| format!("writing {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
    } else {
        write_package(&model, &args.output, opts)
            .with_context(|| format!("writing {}", args.output.display()))?;
        eprintln!("wrote {}", args.output.display());
    }
    Ok(())
}

/// `sd compress PKG --analyze -o FILE.json`.
fn analyze(args: &Args) -> Result<()> {
    if args.output.exists() && !args.force {
        bail!("{} exists (--force replaces it)", args.output.display());
    }
    if args.output.exists() && !args.output.is_file() {
        bail!(
            "{} is not a regular file; not replaced",
            args.output.display()
        );
    }
    let options = AnalysisOptions {
        bits: args.analysis_bits.clone(),
        min_elements: args.min_elements,
        recipes: args.num_recipes,
        original_psnr: None,
    };
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} {bar:24.cyan/blue} {pos}/{len} [{elapsed}]")
            .expect("the template is valid"),
    );
    let mut last_stage = String::new();
    let result = sd_cli::analysis::analyze_package(&args.package, &options, &mut |e| {
        let AnalysisEvent::Progress { stage, done, total } = e;
        if stage != last_stage {
            if bar.is_hidden() {
                eprintln!("{stage}: {total} evaluations");
            }
            last_stage = stage.to_string();
            bar.set_message(stage.to_string());
            bar.set_length(total as u64);
        }
        bar.set_position(done as u64);
    })
    .with_context(|| format!("analysing {}", args.package.display()))?;
    bar.finish_and_clear();
    let text = serde_json::to_string_pretty(&result)?;
    write_file_atomic(&args.output, text.as_bytes())?;
    eprintln!(
        "{} candidate weights in {:.1} s; original {:.1} dB, linear 8-bit {:.1} dB",
        result.sizes.len(),
        result.seconds,
        result.baselines["original"],
        result.baselines["linear_8bit"]
    );
    for (name, s) in &result.recipe_stats {
        eprintln!(
            "  {name}: {:.2} bits, {} bytes, {:.1} dB (threshold {:.1} dB)",
            s.mean_bits, s.size_bytes, s.psnr_db, s.threshold_db
        );
    }
    eprintln!("wrote {}", args.output.display());
    Ok(())
}
