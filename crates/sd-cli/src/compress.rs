//! `sd compress PACKAGE -o OUT`: palettize or quantize a package's weights, and/or cut it into
//! two chunks, as Apple's `--quantize-nbits` / mixed-bit recipes / `--chunk-unet` do.

use anyhow::{Context, Result, bail};
use sd_compress::{Granularity, PalettizeOptions, chunk, palettize, quantize_linear8, recipe};
use sd_mil::package::{WriteOptions, read_package, write_package};
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
    /// Mixed-bit recipe JSON {weight name: bits}; weights not named use --nbits.
    #[arg(long, requires = "nbits")]
    recipe: Option<PathBuf>,
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
    if args.nbits.is_none() && !args.linear8 && !args.chunk {
        bail!("nothing to do: give --nbits, --linear8 or --chunk");
    }
    let mut model = read_package(&args.package)
        .with_context(|| format!("reading {}", args.package.display()))?;
    if let Some(nbits) = args.nbits {
        let mut opts = PalettizeOptions::new(nbits);
        opts.weight_threshold = args.weight_threshold;
        if let Some(g) = args.group_size {
            opts.granularity = Granularity::PerGroupedChannel { group_size: g };
        }
        if let Some(r) = &args.recipe {
            opts.per_weight_bits = recipe::read_recipe(r)?;
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
