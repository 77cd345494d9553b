//! Load a folder of Core ML models once, then make images from two prompts, in memory, with a
//! progress callback that could cancel — what an app does instead of Apple's Swift package.
//!
//! ```sh
//! cargo run --release -p sd-runtime --example generate -- FOLDER "a prompt" [TOKENIZER_DIR]
//! # e.g. Apple's tiny packages:
//! cargo run --release -p sd-runtime --example generate -- \
//!     ../shared/fixtures/apple-tiny/packages/split_einsum "a red car" fixtures/tokenizer
//! ```
//! The images are written as `example-0.png`, `example-1.png` with their A1111 parameters.

use sd_runtime::pipeline::image::write_png_atomic;
use sd_runtime::pipeline::{Control, GenerationRequest, Pipeline, PipelineOptions, SchedulerKind};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(folder), Some(prompt)) = (args.next(), args.next()) else {
        eprintln!("usage: generate FOLDER PROMPT [TOKENIZER_DIR]");
        std::process::exit(2);
    };
    let options = PipelineOptions {
        tokenizer: args.next().map(Into::into),
        ..PipelineOptions::default()
    };
    let mut pipe = Pipeline::load(&folder, options)?;

    for (i, text) in [prompt.clone(), format!("{prompt}, at night")]
        .iter()
        .enumerate()
    {
        let mut request = GenerationRequest::new(text.as_str());
        request.seed = 93 + i as u64;
        request.steps = 20;
        request.scheduler = SchedulerKind::DpmppKarras;
        let result = pipe.generate(&request, &mut |p| {
            eprint!("\r{text}: step {}/{}", p.step, p.total);
            Control::Continue // Control::Cancel stops at this step
        })?;
        eprintln!();
        for w in &result.warnings {
            eprintln!("warning: {w}");
        }
        let Some(image) = &result.images[0].image else {
            eprintln!("the safety checker withheld the image");
            continue;
        };
        let params = request.a1111_parameters(image.width, image.height, "");
        let path = format!("example-{i}.png");
        write_png_atomic(&path, image, &[("parameters", &params.to_a1111_string())])?;
        println!("{path}");
    }
    Ok(())
}
