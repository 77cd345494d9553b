//! The image side of the image-generation pipeline: pixels in and out of the models, files in and
//! out of the file system, with diffusers' numerics.
//!
//! - Types: [`RgbImage`] (row-major HWC RGB `u8`), [`GrayImage`] (one channel), [`LoadedImage`]
//!   (an RGB image read from a file, its alpha channel kept when it had one) and [`Planar`]
//!   (float32 CHW, what the Core ML models take).
//! - Conversions ([`RgbImage::to_vae_input`], [`RgbImage::from_vae_output`],
//!   [`GrayImage::to_inpaint_mask`], [`controlnet_inpaint_conditioning`],
//!   [`safety_checker_images`]): exactly diffusers' `VaeImageProcessor` `preprocess` /
//!   `postprocess` + `numpy_to_pil`, its inpainting mask processor, and Apple's ControlNet
//!   conditioning with the alpha channel as inpainting mask.
//! - Loading ([`load_image`], [`load_mask`], [`decode_image`]): PNG or JPEG through the `image`
//!   crate; only regular files of at most [`MAX_INPUT_BYTES`] (checked before opening, so a FIFO or
//!   `/dev/zero` fails at once); EXIF orientation applied (as diffusers' `load_image`); RGBA,
//!   grayscale, palette and 16-bit images converted to RGB as Pillow's `convert("RGB")` does.
//! - PNG output ([`encode_png`], [`write_png_atomic`], [`read_png_text`]): `tEXt` chunks (`iTXt`
//!   when the text is not Latin-1, as Pillow and so AUTOMATIC1111 write them), written to a hidden
//!   temporary file beside the target, synced, then renamed over it.
//! - AUTOMATIC1111's `parameters` text ([`GenerationParameters::to_a1111_string`]) and Apple's
//!   output file names ([`OutputFileName`], made safe as file names).
//! - The safety checker's `clip_input` ([`ClipImageProcessor`]): transformers' PIL-backend
//!   `CLIPImageProcessor` with Pillow's resampling reimplemented exactly ([`resample`]).
//!
//! ```
//! use sd_runtime::pipeline::image::{GenerationParameters, OutputFileName, RgbImage};
//!
//! // A decoded VAE output (1, 3, H, W) in [-1, 1] becomes the u8 image diffusers saves.
//! let vae_out = vec![0.5_f32; 3 * 2 * 2];
//! let image = RgbImage::from_vae_output(&vae_out, 2, 2)?;
//! assert_eq!(image.data, vec![191; 12]); // (0.5 / 2 + 0.5) * 255 = 191.25 -> 191
//!
//! let params = GenerationParameters {
//!     prompt: "a photo of an astronaut riding a horse on mars".into(),
//!     negative_prompt: String::new(),
//!     steps: 20,
//!     sampler: "DPM++ 2M Karras".into(),
//!     cfg_scale: 7.5,
//!     seed: 93,
//!     width: 512,
//!     height: 512,
//!     model_hash: None,
//!     model: "sd15".into(),
//!     denoising_strength: None,
//! };
//! assert_eq!(
//!     params.to_a1111_string(),
//!     "a photo of an astronaut riding a horse on mars\n\
//!      Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7.5, Seed: 93, Size: 512x512, Model: sd15"
//! );
//! let png = sd_runtime::pipeline::image::encode_png(
//!     &image,
//!     &[("parameters", &params.to_a1111_string())],
//! )?;
//! assert_eq!(
//!     sd_runtime::pipeline::image::read_png_text(&png)?,
//!     vec![("parameters".to_string(), params.to_a1111_string())]
//! );
//!
//! let name = OutputFileName::new("a photo of an astronaut riding a horse on mars", 93);
//! assert_eq!(
//!     name.file_name(),
//!     "a_photo_of_an_astronaut_riding_a_horse_on_mars.93.final.png"
//! );
//! # Ok::<(), sd_runtime::pipeline::image::ImageError>(())
//! ```

#![warn(missing_docs)]

mod clip;
mod convert;
mod load;
mod naming;
mod params;
mod png_io;
pub mod resample;

use std::path::PathBuf;

pub use clip::{ClipImageProcessor, ClipSize};
pub use convert::{
    controlnet_conditioning, controlnet_inpaint_conditioning, mask_to_latent_size, masked_image,
    safety_checker_images,
};
pub use load::{
    LoadedImage, MAX_INPUT_BYTES, decode_image, decode_image_within, load_image, load_mask,
    read_input_file,
};
pub use naming::{MAX_FILE_NAME_BYTES, OutputFileName, PROMPT_CHAR_LIMIT};
pub use params::GenerationParameters;
pub use png_io::{
    encode_png, read_png_text, read_png_text_file, write_file_atomic, write_png_atomic,
};

/// Everything that can go wrong on the image side. Each variant names the file (or the thing) it
/// is about and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A file could not be opened or read.
    #[error("{}: cannot read: {source}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The path names something other than a regular file (a directory, FIFO, socket, device).
    #[error("{}: not a regular file (it is {kind})", path.display())]
    NotRegularFile {
        /// The path.
        path: PathBuf,
        /// What it is instead ("a directory", "a FIFO", ...).
        kind: &'static str,
    },
    /// The file is larger than the limit for input images.
    #[error("{}: {size} bytes, more than the {limit}-byte limit for an input image", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit ([`MAX_INPUT_BYTES`]).
        limit: u64,
    },
    /// The data is not PNG or JPEG.
    #[error("{what}: unsupported image format ({detail}); PNG and JPEG can be read")]
    UnsupportedFormat {
        /// The file (or "image bytes").
        what: String,
        /// What it looks like instead.
        detail: String,
    },
    /// The data claims to be PNG or JPEG but cannot be decoded.
    #[error("{what}: cannot decode {format} image: {detail}")]
    Decode {
        /// The file (or "image bytes").
        what: String,
        /// "PNG" or "JPEG".
        format: &'static str,
        /// The decoder's message.
        detail: String,
    },
    /// An image has another size than the one needed.
    #[error(
        "{what}: wrong size: expected {expected_width}x{expected_height}, got {width}x{height}"
    )]
    WrongSize {
        /// The file (or which image).
        what: String,
        /// Needed width.
        expected_width: usize,
        /// Needed height.
        expected_height: usize,
        /// Actual width.
        width: usize,
        /// Actual height.
        height: usize,
    },
    /// An image has another mode (channel layout) than the one needed, e.g. no alpha channel
    /// where an alpha inpainting mask is expected.
    #[error("{what}: wrong mode: expected {expected}, got {got}")]
    WrongMode {
        /// The file (or which image).
        what: String,
        /// Needed mode.
        expected: String,
        /// Actual mode.
        got: String,
    },
    /// A buffer does not hold what its dimensions say (length mismatch, zero size, ...).
    #[error("{what}: invalid data: {detail}")]
    InvalidData {
        /// Which buffer.
        what: String,
        /// What is wrong.
        detail: String,
    },
    /// A PNG text chunk cannot be written as given.
    #[error("PNG text chunk {keyword:?}: {detail}")]
    TextChunk {
        /// The chunk's keyword.
        keyword: String,
        /// What is wrong.
        detail: String,
    },
    /// The PNG encoder failed.
    #[error("PNG encoding failed: {0}")]
    Encode(String),
    /// Writing a file failed (the temporary file is removed; the target is untouched).
    #[error("{}: cannot write: {source}", path.display())]
    Write {
        /// The target file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The target exists and is not a regular file, so it is not replaced.
    #[error("{}: refusing to replace it: it exists and is {kind}, not a regular file", path.display())]
    RefuseToReplace {
        /// The target.
        path: PathBuf,
        /// What it is ("a symbolic link", "a directory", ...).
        kind: &'static str,
    },
    /// An image processor configuration (`preprocessor_config.json`) is invalid or unsupported.
    #[error("{what}: image processor config: {detail}")]
    Config {
        /// The file (or "config").
        what: String,
        /// What is wrong.
        detail: String,
    },
}

impl ImageError {
    /// The image error for a refusal of [`sd_mil::files`] while reading (`writing` false) or
    /// writing `path`.
    pub(crate) fn from_file(
        e: sd_mil::files::FileError,
        path: &std::path::Path,
        writing: bool,
    ) -> Self {
        use sd_mil::files::FileError;
        match e {
            FileError::NotRegular { path, kind } => ImageError::NotRegularFile { path, kind },
            FileError::TooLarge { path, len, limit } => ImageError::TooLarge {
                path,
                size: len,
                limit,
            },
            FileError::RefuseToReplace { path, kind } => ImageError::RefuseToReplace { path, kind },
            FileError::Io { path, source } if writing => ImageError::Write { path, source },
            FileError::Io { path, source } => ImageError::Unreadable { path, source },
            other => {
                let source = std::io::Error::other(other.to_string());
                let path = path.to_path_buf();
                if writing {
                    ImageError::Write { path, source }
                } else {
                    ImageError::Unreadable { path, source }
                }
            }
        }
    }
}

/// Result with [`ImageError`].
pub type Result<T, E = ImageError> = std::result::Result<T, E>;

/// An RGB image, 8 bits per channel, row-major HWC: `data[(y * width + x) * 3 + c]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbImage {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `width * height * 3` bytes.
    pub data: Vec<u8>,
}

/// A one-channel 8-bit image (a mask or Pillow's mode "L"), row-major: `data[y * width + x]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrayImage {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `width * height` bytes.
    pub data: Vec<u8>,
}

/// A float32 image in planar CHW layout (batch 1): what the Core ML models take and give.
#[derive(Clone, Debug, PartialEq)]
pub struct Planar {
    /// Channels.
    pub channels: usize,
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
    /// `channels * height * width` values, `data[(c * height + y) * width + x]`.
    pub data: Vec<f32>,
}

impl Planar {
    /// The tensor shape `[1, channels, height, width]`.
    pub fn shape(&self) -> [usize; 4] {
        [1, self.channels, self.height, self.width]
    }

    /// As a runtime tensor of shape [`Planar::shape`].
    pub fn into_tensor(self) -> crate::Tensor {
        crate::Tensor::f32(self.shape(), self.data)
    }
}

fn check_len(what: &str, width: usize, height: usize, channels: usize, len: usize) -> Result<()> {
    let expected = width
        .checked_mul(height)
        .and_then(|n| n.checked_mul(channels))
        .ok_or_else(|| ImageError::InvalidData {
            what: what.to_string(),
            detail: format!("{width}x{height}x{channels} overflows"),
        })?;
    if width == 0 || height == 0 {
        return Err(ImageError::InvalidData {
            what: what.to_string(),
            detail: format!("empty image ({width}x{height})"),
        });
    }
    if len != expected {
        return Err(ImageError::InvalidData {
            what: what.to_string(),
            detail: format!("{len} values for {width}x{height}x{channels} (expected {expected})"),
        });
    }
    Ok(())
}

fn wrong_size(what: &str, expected: (usize, usize), got: (usize, usize)) -> ImageError {
    ImageError::WrongSize {
        what: what.to_string(),
        expected_width: expected.0,
        expected_height: expected.1,
        width: got.0,
        height: got.1,
    }
}

impl RgbImage {
    /// An image from its pixels; fails unless `data.len() == width * height * 3` and both sizes
    /// are non-zero.
    pub fn new(width: usize, height: usize, data: Vec<u8>) -> Result<Self> {
        check_len("RGB image", width, height, 3, data.len())?;
        Ok(Self {
            width,
            height,
            data,
        })
    }

    /// A `width` x `height` image of one color.
    pub fn filled(width: usize, height: usize, rgb: [u8; 3]) -> Self {
        let data = rgb
            .iter()
            .copied()
            .cycle()
            .take(width * height * 3)
            .collect();
        Self {
            width,
            height,
            data,
        }
    }

    /// The pixel at (`x`, `y`).
    pub fn pixel(&self, x: usize, y: usize) -> [u8; 3] {
        let i = (y * self.width + x) * 3;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }

    /// Checks the size: `Err(WrongSize)` naming both sizes unless it is `width` x `height`.
    pub fn expect_size(&self, width: usize, height: usize) -> Result<()> {
        if (self.width, self.height) != (width, height) {
            return Err(wrong_size(
                "image",
                (width, height),
                (self.width, self.height),
            ));
        }
        Ok(())
    }

    /// Checks that the buffer length matches the dimensions.
    pub fn validate(&self) -> Result<()> {
        check_len("RGB image", self.width, self.height, 3, self.data.len())
    }
}

impl GrayImage {
    /// An image from its pixels; fails unless `data.len() == width * height` and both sizes
    /// are non-zero.
    pub fn new(width: usize, height: usize, data: Vec<u8>) -> Result<Self> {
        check_len("grayscale image", width, height, 1, data.len())?;
        Ok(Self {
            width,
            height,
            data,
        })
    }

    /// Checks the size: `Err(WrongSize)` naming both sizes unless it is `width` x `height`.
    pub fn expect_size(&self, width: usize, height: usize) -> Result<()> {
        if (self.width, self.height) != (width, height) {
            return Err(wrong_size(
                "mask",
                (width, height),
                (self.width, self.height),
            ));
        }
        Ok(())
    }

    /// Checks that the buffer length matches the dimensions.
    pub fn validate(&self) -> Result<()> {
        check_len(
            "grayscale image",
            self.width,
            self.height,
            1,
            self.data.len(),
        )
    }
}
