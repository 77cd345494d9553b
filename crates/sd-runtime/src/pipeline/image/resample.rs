//! Pillow's `Image.resize` for 8-bit images, reimplemented from `libImaging/Resample.c`
//! (`ImagingResample`), so that results are identical to Pillow's, pixel for pixel.
//!
//! The algorithm: a separable convolution, horizontal pass first (over only the rows the
//! vertical pass needs), then vertical. For each output pixel the filter is centred at
//! `(i + 0.5) * scale` in input coordinates (`scale = in / out`); when downscaling its support
//! is widened by `scale` (`support = filter support * max(scale, 1)`), so every input pixel is
//! covered (antialiasing). The weights of one output pixel are normalized to sum 1, converted to
//! 22-bit fixed point (`PRECISION_BITS = 32 - 8 - 2`, rounded half away from zero), accumulated
//! in integers from a rounding offset of `1 << 21`, shifted back and clipped to 0..255. The
//! intermediate image after the horizontal pass is `u8`, as in Pillow.
//!
//! NEAREST (Pillow's filter 0) is a different code path in Pillow (an affine transform) and is
//! not provided.

/// A resampling filter, numbered as Pillow's `Image.Resampling` (and transformers'
/// `PILImageResampling`, the `resample` field of `preprocessor_config.json`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filter {
    /// `LANCZOS` (1): windowed sinc, support 3.
    Lanczos,
    /// `BILINEAR` (2): triangle, support 1.
    Bilinear,
    /// `BICUBIC` (3): cubic convolution with a = -0.5, support 2.
    Bicubic,
    /// `BOX` (4): support 0.5.
    Box,
    /// `HAMMING` (5): Hamming-windowed sinc, support 1.
    Hamming,
}

impl Filter {
    /// The filter for Pillow's number (1..=5); `None` for NEAREST (0) and unknown numbers.
    pub fn from_pil(value: u32) -> Option<Self> {
        match value {
            1 => Some(Self::Lanczos),
            2 => Some(Self::Bilinear),
            3 => Some(Self::Bicubic),
            4 => Some(Self::Box),
            5 => Some(Self::Hamming),
            _ => None,
        }
    }

    fn support(self) -> f64 {
        match self {
            Self::Box => 0.5,
            Self::Bilinear | Self::Hamming => 1.0,
            Self::Bicubic => 2.0,
            Self::Lanczos => 3.0,
        }
    }

    fn eval(self, x: f64) -> f64 {
        match self {
            Self::Box => {
                if x > -0.5 && x <= 0.5 {
                    1.0
                } else {
                    0.0
                }
            }
            Self::Bilinear => {
                let x = x.abs();
                if x < 1.0 { 1.0 - x } else { 0.0 }
            }
            Self::Hamming => {
                let x = x.abs();
                if x == 0.0 {
                    1.0
                } else if x >= 1.0 {
                    0.0
                } else {
                    let x = x * std::f64::consts::PI;
                    // `0.54f + 0.46f * cos(x)`: float constants widened to double.
                    x.sin() / x * (f64::from(0.54f32) + f64::from(0.46f32) * x.cos())
                }
            }
            Self::Bicubic => {
                const A: f64 = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            Self::Lanczos => {
                if (-3.0..3.0).contains(&x) {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let x = x * std::f64::consts::PI;
        x.sin() / x
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// One axis' coefficients: per output index, the first input index and the fixed-point
/// weights.
struct Coefficients {
    ksize: usize,
    /// (first input index, count) per output index.
    bounds: Vec<(usize, usize)>,
    /// `ksize` fixed-point weights per output index.
    weights: Vec<i32>,
}

/// `precompute_coeffs` then `normalize_coeffs_8bpc`, for the box `[in0, in1)` of an axis of
/// `in_size` pixels resampled to `out_size`.
fn coefficients(
    in_size: usize,
    in0: f32,
    in1: f32,
    out_size: usize,
    filter: Filter,
) -> Coefficients {
    let scale = f64::from(in1 - in0) / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = f64::from(in0) + (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // C's `(int)` truncates toward zero.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64);
        let count = (xmax - xmin as i64).max(0) as usize;
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(count) {
            let w = filter.eval(((x + xmin) as f64 - center + 0.5) * ss);
            *kx = w;
            ww += w;
        }
        for (x, kx) in k.iter().enumerate().take(count) {
            let v = if ww != 0.0 { kx / ww } else { *kx };
            weights[xx * ksize + x] = fixed(v);
        }
        bounds.push((xmin, count));
    }
    Coefficients {
        ksize,
        bounds,
        weights,
    }
}

fn fixed(v: f64) -> i32 {
    let scaled = v * f64::from(1u32 << PRECISION_BITS);
    if v < 0.0 {
        (-0.5 + scaled) as i32
    } else {
        (0.5 + scaled) as i32
    }
}

fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes an 8-bit interleaved image of `channels` channels (`src.len() == width * height *
/// channels`) to `out_width` x `out_height` exactly as Pillow's `Image.resize(size, filter)`
/// does for modes L and RGB (no `box`, no `reducing_gap`). An unchanged size is a copy.
///
/// # Panics
/// If `src` has the wrong length or a size is zero.
pub fn resize(
    src: &[u8],
    width: usize,
    height: usize,
    channels: usize,
    out_width: usize,
    out_height: usize,
    filter: Filter,
) -> Vec<u8> {
    assert_eq!(
        src.len(),
        width * height * channels,
        "resize: buffer length"
    );
    assert!(
        width > 0 && height > 0 && out_width > 0 && out_height > 0,
        "resize: zero size"
    );
    let need_horizontal = out_width != width;
    let need_vertical = out_height != height;
    let vert = coefficients(height, 0.0, height as f32, out_height, filter);
    // First and one-past-last input rows the vertical pass reads.
    let ybox_first = vert.bounds[0].0;
    let (last_min, last_count) = vert.bounds[out_height - 1];
    let ybox_last = last_min + last_count;

    let mut cur: std::borrow::Cow<[u8]> = std::borrow::Cow::Borrowed(src);
    let mut cur_height = height;
    let mut row_offset = 0usize;
    if need_horizontal {
        let horiz = coefficients(width, 0.0, width as f32, out_width, filter);
        let rows = ybox_last - ybox_first;
        let mut tmp = vec![0u8; out_width * rows * channels];
        for yy in 0..rows {
            let in_row = &src[(yy + ybox_first) * width * channels..][..width * channels];
            let out_row = &mut tmp[yy * out_width * channels..][..out_width * channels];
            for xx in 0..out_width {
                let (xmin, count) = horiz.bounds[xx];
                let k = &horiz.weights[xx * horiz.ksize..][..count];
                for c in 0..channels {
                    let mut acc: i64 = 1 << (PRECISION_BITS - 1);
                    for (x, &kx) in k.iter().enumerate() {
                        acc += i64::from(in_row[(x + xmin) * channels + c]) * i64::from(kx);
                    }
                    out_row[xx * channels + c] = clip8(acc);
                }
            }
        }
        cur = std::borrow::Cow::Owned(tmp);
        cur_height = rows;
        row_offset = ybox_first;
    }
    let cur_width = if need_horizontal { out_width } else { width };
    if !need_vertical {
        debug_assert_eq!(cur_height, height);
        return cur.into_owned();
    }
    let mut out = vec![0u8; cur_width * out_height * channels];
    let stride = cur_width * channels;
    for yy in 0..out_height {
        let (ymin, count) = vert.bounds[yy];
        let ymin = ymin - row_offset;
        let k = &vert.weights[yy * vert.ksize..][..count];
        let out_row = &mut out[yy * stride..][..stride];
        for (i, o) in out_row.iter_mut().enumerate() {
            let mut acc: i64 = 1 << (PRECISION_BITS - 1);
            for (y, &ky) in k.iter().enumerate() {
                acc += i64::from(cur[(y + ymin) * stride + i]) * i64::from(ky);
            }
            *o = clip8(acc);
        }
    }
    out
}
