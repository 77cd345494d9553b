//! `sd-compress`: weight compression and model splitting as passes over `sd-mil` programs.
//!
//! * [`palettize`]: optimal 1-D k-means look-up tables (1, 2, 4, 6, 8 bits; per tensor or per
//!   grouped channel), written as `constexpr_lut_to_dense`.
//! * [`kmeans`]: the globally optimal weighted 1-D k-means behind it.
//! * [`quantize`]: linear 8-bit per-channel quantization.
//! * [`recipe`]: mixed-bit recipes (weight name → bits) for [`PalettizeOptions::per_weight_bits`].
//! * [`chunk`]: cutting a model into two halves the way Apple's `chunk_mlprogram.py` does.
//!
//! ```
//! use sd_compress::kmeans::optimal_kmeans_1d;
//!
//! let c = optimal_kmeans_1d(&[0.0, 0.1, 5.0, 5.2], &[1.0, 1.0, 1.0, 1.0], 2);
//! assert_eq!(c.assignment, [0, 0, 1, 1]);
//! ```

pub mod analysis;
pub mod chunk;
mod error;
pub mod kmeans;
mod lazy;
pub mod palettize;
pub mod quantize;
pub mod recipe;
mod weights;

pub use chunk::{Chunks, chunk};
pub use error::CompressError;
pub use palettize::{CompressReport, Granularity, PalettizeOptions, palettize};
pub use quantize::quantize_linear8;
