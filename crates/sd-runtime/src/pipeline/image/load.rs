//! Reading start images, control images and masks from PNG or JPEG files.

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};

use super::convert::controlnet_inpaint_conditioning;
use super::{GrayImage, ImageError, Planar, Result, RgbImage, wrong_size};

/// The largest input image file read (256 MiB); larger files are refused before reading.
pub const MAX_INPUT_BYTES: u64 = 256 << 20;

/// Decoded images may not be wider or taller than this (the decoder refuses them before
/// allocating).
const MAX_DIMENSION: u32 = 32768;
/// The decoder's allocation limit.
const MAX_DECODE_ALLOC: u64 = 2 << 30;

/// An image read from a file (or bytes), converted to RGB, with its alpha channel kept when it
/// had one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedImage {
    /// Where it came from (the path, or what the bytes were), for messages.
    pub source: String,
    /// The pixels as Pillow's `convert("RGB")` gives them: alpha dropped (not composited),
    /// gray replicated, 16-bit samples reduced to their high byte.
    pub rgb: RgbImage,
    /// The alpha channel (8-bit) when the file had one (RGBA, gray + alpha, a palette or
    /// grayscale/RGB PNG with `tRNS` transparency).
    pub alpha: Option<GrayImage>,
    /// The file's pixel format in Pillow's words: "L", "LA", "RGB", "RGBA", "I;16", "LA;16",
    /// "RGB;16", "RGBA;16" (palette PNGs appear as "RGB" or "RGBA").
    pub mode: &'static str,
}

impl LoadedImage {
    /// Checks the size; the error names the file and both sizes.
    pub fn expect_size(&self, width: usize, height: usize) -> Result<()> {
        if (self.rgb.width, self.rgb.height) != (width, height) {
            return Err(wrong_size(
                &self.source,
                (width, height),
                (self.rgb.width, self.rgb.height),
            ));
        }
        Ok(())
    }

    /// Pillow's `convert("L")` of the image (alpha ignored), e.g. for an inpainting mask.
    pub fn luma(&self) -> GrayImage {
        self.rgb.to_luma()
    }

    /// Apple's inpainting ControlNet conditioning from this image's alpha channel
    /// ([`controlnet_inpaint_conditioning`]); `Err(WrongMode)` when the file had no alpha.
    pub fn inpaint_conditioning(&self) -> Result<Planar> {
        match &self.alpha {
            Some(alpha) => controlnet_inpaint_conditioning(&self.rgb, alpha),
            None => Err(ImageError::WrongMode {
                what: self.source.clone(),
                expected: "an image with an alpha channel (RGBA or LA: transparent pixels mark \
                           the area to inpaint)"
                    .into(),
                got: self.mode.to_string(),
            }),
        }
    }
}

/// Reads a whole input file of at most `limit` bytes. The path's metadata is checked *before*
/// opening it (symbolic links are followed): anything but a regular file (a FIFO, `/dev/zero`,
/// a directory) is refused at once instead of blocking or reading forever, and so is a file
/// over the limit; the opened file is checked again and read through a `limit + 1` cap.
pub fn read_input_file(path: &Path, limit: u64) -> Result<Vec<u8>> {
    sd_mil::files::read_regular(path, limit).map_err(|e| ImageError::from_file(e, path, false))
}

/// Reads a PNG or JPEG file ([`read_input_file`] with [`MAX_INPUT_BYTES`], then
/// [`decode_image`]).
pub fn load_image(path: impl AsRef<Path>) -> Result<LoadedImage> {
    let path = path.as_ref();
    let bytes = read_input_file(path, MAX_INPUT_BYTES)?;
    let image = decode_image(&bytes, &path.display().to_string())?;
    tracing::debug!(
        path = %path.display(),
        width = image.rgb.width,
        height = image.rgb.height,
        mode = image.mode,
        "read image"
    );
    Ok(image)
}

/// Reads an inpainting mask: a PNG or JPEG file in any mode, converted as Pillow's
/// `convert("L")` does (RGB -> luma, alpha ignored). White (>= 128) marks the area to repaint;
/// see [`GrayImage::to_inpaint_mask`].
pub fn load_mask(path: impl AsRef<Path>) -> Result<GrayImage> {
    Ok(load_image(path)?.luma())
}

fn sniff(bytes: &[u8]) -> std::result::Result<ImageFormat, String> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Ok(ImageFormat::Png);
    }
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Ok(ImageFormat::Jpeg);
    }
    let other = if bytes.is_empty() {
        "an empty file".to_string()
    } else if bytes.starts_with(b"GIF8") {
        "GIF".into()
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        "WebP".into()
    } else if bytes.starts_with(b"BM") {
        "BMP".into()
    } else if bytes.starts_with(b"II*\0") || bytes.starts_with(b"MM\0*") {
        "TIFF".into()
    } else if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        format!(
            "an ISO media file ({}: AVIF/HEIC?)",
            String::from_utf8_lossy(&bytes[8..12])
        )
    } else {
        let head: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!("not PNG or JPEG; first bytes {}", head.join(" "))
    };
    Err(other)
}

/// Decodes PNG or JPEG bytes (`what` names them in errors, e.g. the path or `init_images[0]`),
/// applies the EXIF orientation (as diffusers' `load_image` does with `exif_transpose`) and
/// converts to RGB as Pillow's `convert("RGB")` does, keeping the alpha channel.
///
/// Differences from Pillow: 16-bit grayscale is reduced to its high byte (Pillow's `I;16` ->
/// `RGB` clamps values above 255 to 255); JPEG is decoded by `zune-jpeg`, whose IDCT and chroma
/// upsampling can differ from libjpeg-turbo's by a level or so.
pub fn decode_image(bytes: &[u8], what: &str) -> Result<LoadedImage> {
    decode_image_within(bytes, what, MAX_DIMENSION as usize)
}

/// [`decode_image`], refusing from the header alone (before any pixel is decoded) an image
/// wider or taller than `max_side` pixels — for untrusted uploads.
pub fn decode_image_within(bytes: &[u8], what: &str, max_side: usize) -> Result<LoadedImage> {
    let format = sniff(bytes).map_err(|detail| ImageError::UnsupportedFormat {
        what: what.to_string(),
        detail,
    })?;
    let format_name = if format == ImageFormat::Png {
        "PNG"
    } else {
        "JPEG"
    };
    let decode_err = |e: image::ImageError| ImageError::Decode {
        what: what.to_string(),
        format: format_name,
        detail: e.to_string(),
    };
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_DIMENSION);
    limits.max_image_height = Some(MAX_DIMENSION);
    limits.max_alloc = Some(MAX_DECODE_ALLOC);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(decode_err)?;
    let (w, h) = decoder.dimensions();
    if w as usize > max_side || h as usize > max_side {
        return Err(ImageError::Decode {
            what: what.to_string(),
            format: format_name,
            detail: format!("the image is {w}x{h}; at most {max_side} pixels a side are accepted"),
        });
    }
    let orientation = decoder.orientation().map_err(decode_err)?;
    let mut image = DynamicImage::from_decoder(decoder).map_err(decode_err)?;
    image.apply_orientation(orientation);
    from_dynamic(image, what)
}

fn from_dynamic(image: DynamicImage, what: &str) -> Result<LoadedImage> {
    let width = image.width() as usize;
    let height = image.height() as usize;
    let n = width * height;
    let hi = |v: u16| (v >> 8) as u8;
    let unit = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    let mut rgb = Vec::with_capacity(n * 3);
    let mut alpha: Option<Vec<u8>> = None;
    let mode: &'static str;
    match image {
        DynamicImage::ImageLuma8(img) => {
            mode = "L";
            for &v in img.as_raw() {
                rgb.extend_from_slice(&[v, v, v]);
            }
        }
        DynamicImage::ImageLumaA8(img) => {
            mode = "LA";
            let mut a = Vec::with_capacity(n);
            for p in img.as_raw().chunks_exact(2) {
                rgb.extend_from_slice(&[p[0], p[0], p[0]]);
                a.push(p[1]);
            }
            alpha = Some(a);
        }
        DynamicImage::ImageRgb8(img) => {
            mode = "RGB";
            rgb = img.into_raw();
        }
        DynamicImage::ImageRgba8(img) => {
            mode = "RGBA";
            let mut a = Vec::with_capacity(n);
            for p in img.as_raw().chunks_exact(4) {
                rgb.extend_from_slice(&p[..3]);
                a.push(p[3]);
            }
            alpha = Some(a);
        }
        DynamicImage::ImageLuma16(img) => {
            mode = "I;16";
            for &v in img.as_raw() {
                let v = hi(v);
                rgb.extend_from_slice(&[v, v, v]);
            }
        }
        DynamicImage::ImageLumaA16(img) => {
            mode = "LA;16";
            let mut a = Vec::with_capacity(n);
            for p in img.as_raw().chunks_exact(2) {
                let v = hi(p[0]);
                rgb.extend_from_slice(&[v, v, v]);
                a.push(hi(p[1]));
            }
            alpha = Some(a);
        }
        DynamicImage::ImageRgb16(img) => {
            mode = "RGB;16";
            rgb.extend(img.as_raw().iter().map(|&v| hi(v)));
        }
        DynamicImage::ImageRgba16(img) => {
            mode = "RGBA;16";
            let mut a = Vec::with_capacity(n);
            for p in img.as_raw().chunks_exact(4) {
                rgb.extend(p[..3].iter().map(|&v| hi(v)));
                a.push(hi(p[3]));
            }
            alpha = Some(a);
        }
        DynamicImage::ImageRgb32F(img) => {
            mode = "RGB;F";
            rgb.extend(img.as_raw().iter().map(|&v| unit(v)));
        }
        DynamicImage::ImageRgba32F(img) => {
            mode = "RGBA;F";
            let mut a = Vec::with_capacity(n);
            for p in img.as_raw().chunks_exact(4) {
                rgb.extend(p[..3].iter().map(|&v| unit(v)));
                a.push(unit(p[3]));
            }
            alpha = Some(a);
        }
        other => {
            return Err(ImageError::WrongMode {
                what: what.to_string(),
                expected: "8- or 16-bit gray, gray + alpha, RGB or RGBA".into(),
                got: format!("{:?}", other.color()),
            });
        }
    }
    let rgb = RgbImage::new(width, height, rgb)?;
    let alpha = alpha.map(|a| GrayImage {
        width,
        height,
        data: a,
    });
    Ok(LoadedImage {
        source: what.to_string(),
        rgb,
        alpha,
        mode,
    })
}
