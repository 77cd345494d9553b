//! The pipeline's image side: conversions with diffusers' numerics, file loading and refusal,
//! PNG text metadata, atomic writes, A1111 parameters, Apple's file names, and CLIP
//! preprocessing against transformers' `CLIPImageProcessorPil` + Pillow
//! (fixtures/preprocess/clip.safetensors, made by xtask/reference/gen_preprocess.py).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sd_runtime::pipeline::image::{
    ClipImageProcessor, ClipSize, GenerationParameters, GrayImage, ImageError, OutputFileName,
    Planar, RgbImage, controlnet_inpaint_conditioning, decode_image, encode_png, load_image,
    load_mask, mask_to_latent_size, masked_image, read_input_file, read_png_text,
    read_png_text_file, resample, safety_checker_images, write_file_atomic, write_png_atomic,
};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "sd-pipeline-image-{}-{tag}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
    fn path(&self) -> &Path {
        &self.0
    }
    fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn test_image(width: usize, height: usize) -> RgbImage {
    let mut data = Vec::with_capacity(width * height * 3);
    for y in 0..height {
        for x in 0..width {
            data.extend_from_slice(&[(x * 7 + y) as u8, (y * 5) as u8, ((x ^ y) * 3) as u8]);
        }
    }
    RgbImage::new(width, height, data).unwrap()
}

/// A PNG of any color type written with the png crate (for loader tests).
fn raw_png(
    width: u32,
    height: u32,
    color: png::ColorType,
    depth: png::BitDepth,
    data: &[u8],
) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, width, height);
        enc.set_color(color);
        enc.set_depth(depth);
        let mut w = enc.write_header().unwrap();
        w.write_image_data(data).unwrap();
        w.finish().unwrap();
    }
    out
}

// ---------------------------------------------------------------- conversions

#[test]
fn postprocess_rounds_like_numpy() {
    // (x * 0.5 + 0.5).clamp(0, 1) * 255, rounded half to even, all float32. Values worked by
    // hand, and ties found with numpy (float32 bit patterns) where half-away-from-zero differs.
    let cases: [(f32, u8); 12] = [
        (0.5, 191), // 0.75 * 255 = 191.25 -> 191
        (0.0, 128), // 127.5 -> 128 (even)
        (-1.0, 0),
        (1.0, 255),
        (-0.5, 64),                        // 0.25 * 255 = 63.75 -> 64
        (2.0, 255),                        // clamped
        (-3.0, 0),                         // clamped
        (f32::from_bits(3201092813), 76),  // -0.4: 76.5 -> 76 (half away would give 77)
        (f32::from_bits(1029759211), 134), // 0.054902: 134.5 -> 134
        (f32::from_bits(1053609165), 178), // 0.4: 178.5 -> 178
        (f32::NAN, 0),
        (0.99, 254), // 0.995 * 255 = 253.725 -> 254
    ];
    let chw: Vec<f32> = cases
        .iter()
        .map(|c| c.0)
        .chain(std::iter::repeat_n(0.0, 24))
        .collect();
    // 3 channels of 4x3: channel 0 holds the cases.
    let img = RgbImage::from_vae_output(&chw, 4, 3).unwrap();
    for (i, (x, want)) in cases.iter().enumerate() {
        assert_eq!(img.data[i * 3], *want, "x = {x}");
        assert_eq!(img.data[i * 3 + 1], 128);
    }
    assert!(matches!(
        RgbImage::from_vae_output(&chw[..10], 4, 3),
        Err(ImageError::InvalidData { .. })
    ));
}

#[test]
fn vae_preprocess_matches_diffusers_bits() {
    // numpy: np.float32(2.0) * (v.astype(np.float32) / 255.0) - 1.0
    let want: [(u8, u32); 6] = [
        (0, 0xbf80_0000),
        (1, 0xbf7d_fdfe),
        (127, 0xbb80_8080),
        (128, 0x3b80_8100),
        (254, 0x3f7d_fdfe),
        (255, 0x3f80_0000),
    ];
    let data: Vec<u8> = want.iter().flat_map(|&(v, _)| [v, v, v]).collect();
    let img = RgbImage::new(6, 1, data).unwrap();
    let p = img.to_vae_input();
    assert_eq!(p.shape(), [1, 3, 1, 6]);
    for (i, &(v, bits)) in want.iter().enumerate() {
        for c in 0..3 {
            assert_eq!(p.data[c * 6 + i].to_bits(), bits, "value {v}");
        }
    }
    // Round trip: the VAE input decodes back to the same bytes.
    let back = RgbImage::from_vae_output(&p.data, 6, 1).unwrap();
    assert_eq!(back, img);
    let img = test_image(17, 9);
    assert_eq!(
        RgbImage::from_vae_output(&img.to_vae_input().data, 17, 9).unwrap(),
        img
    );
}

#[test]
fn inpaint_mask_binarizes_at_half() {
    let gray = GrayImage::new(6, 1, vec![0, 1, 127, 128, 200, 255]).unwrap();
    let m = gray.to_inpaint_mask();
    assert_eq!(m.shape(), [1, 1, 1, 6]);
    assert_eq!(m.data, vec![0.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
    // Colour masks go through Pillow's luma first: pure red (255 * 19595 + 0x8000) >> 16 = 76
    // (-> 0), white 255 (-> 1), gray 128 stays 128 (-> 1), pure green 150 (-> 1).
    let rgb = RgbImage::new(
        4,
        1,
        vec![255, 0, 0, 255, 255, 255, 128, 128, 128, 0, 255, 0],
    )
    .unwrap();
    let l = rgb.to_luma();
    assert_eq!(l.data, vec![76, 255, 128, 150]);
    assert_eq!(l.to_inpaint_mask().data, vec![0.0, 1.0, 1.0, 1.0]);
}

#[test]
fn masked_image_and_latent_mask() {
    let img = test_image(16, 8).to_vae_input();
    let mut mdata = vec![0.0f32; 16 * 8];
    for y in 0..8 {
        for x in 8..16 {
            mdata[y * 16 + x] = 1.0;
        }
    }
    let mask = Planar {
        channels: 1,
        height: 8,
        width: 16,
        data: mdata,
    };
    let masked = masked_image(&img, &mask).unwrap();
    for c in 0..3 {
        for y in 0..8 {
            for x in 0..16 {
                let i = c * 128 + y * 16 + x;
                if x >= 8 {
                    assert_eq!(masked.data[i], 0.0);
                } else {
                    assert_eq!(masked.data[i], img.data[i]);
                }
            }
        }
    }
    let small = mask_to_latent_size(&mask, 8).unwrap();
    assert_eq!(small.shape(), [1, 1, 1, 2]);
    assert_eq!(small.data, vec![0.0, 1.0]);
    let wrong = Planar {
        channels: 1,
        height: 4,
        width: 16,
        data: vec![0.0; 64],
    };
    let err = masked_image(&img, &wrong).unwrap_err().to_string();
    assert!(err.contains("expected 16x8, got 16x4"), "{err}");
}

#[test]
fn apple_inpaint_conditioning_from_alpha() {
    // RGBA PNG: alpha 0 in the left column.
    let mut rgba = Vec::new();
    for y in 0..2u8 {
        for x in 0..3u8 {
            let a = if x == 0 { 0 } else { 255 - y };
            rgba.extend_from_slice(&[51 * x, 255, 0, a]);
        }
    }
    let png = raw_png(3, 2, png::ColorType::Rgba, png::BitDepth::Eight, &rgba);
    let img = decode_image(&png, "mask.png").unwrap();
    assert_eq!(img.mode, "RGBA");
    let alpha = img.alpha.as_ref().unwrap();
    assert_eq!(alpha.data, vec![0, 255, 255, 0, 254, 254]);
    // RGB keeps the colours of transparent pixels (Pillow's convert("RGB") drops alpha).
    assert_eq!(img.rgb.pixel(0, 0), [0, 255, 0]);
    assert_eq!(img.rgb.pixel(2, 1), [102, 255, 0]);
    let cond = img.inpaint_conditioning().unwrap();
    assert_eq!(cond.shape(), [1, 3, 2, 3]);
    let plane = 6;
    for c in 0..3 {
        assert_eq!(cond.data[c * plane], -1.0);
        assert_eq!(cond.data[c * plane + 3], -1.0);
    }
    assert_eq!(cond.data[1], 51.0 / 255.0);
    assert_eq!(cond.data[plane + 1], 1.0);
    assert_eq!(cond.data[2 * plane + 1], 0.0);
    // The free function too, and the size check.
    let again = controlnet_inpaint_conditioning(&img.rgb, alpha).unwrap();
    assert_eq!(again, cond);
    let small = GrayImage::new(1, 1, vec![0]).unwrap();
    let err = controlnet_inpaint_conditioning(&img.rgb, &small).unwrap_err();
    assert!(err.to_string().contains("expected 3x2, got 1x1"), "{err}");
    // No alpha: a clear wrong-mode error naming the file.
    let opaque = decode_image(
        &raw_png(1, 1, png::ColorType::Rgb, png::BitDepth::Eight, &[1, 2, 3]),
        "opaque.png",
    )
    .unwrap();
    let err = opaque.inpaint_conditioning().unwrap_err().to_string();
    assert!(
        err.contains("opaque.png") && err.contains("wrong mode") && err.contains("got RGB"),
        "{err}"
    );
}

#[test]
fn safety_checker_images_are_hwc_unit() {
    let chw = vec![
        -1.0, 0.0, 1.0, 3.0, /* g */ 0.5, 0.5, 0.5, 0.5, /* b */ -2.0, -0.5, 0.25, 1.0,
    ];
    let hwc = safety_checker_images(&chw, 2, 2).unwrap();
    assert_eq!(
        hwc,
        vec![
            0.0, 0.75, 0.0, 0.5, 0.75, 0.25, 1.0, 0.75, 0.625, 1.0, 0.75, 1.0
        ]
    );
}

// ---------------------------------------------------------------- loading

#[test]
fn loads_png_modes_like_pillow() {
    let dir = TempDir::new("modes");
    // 8-bit gray.
    let g = raw_png(
        2,
        1,
        png::ColorType::Grayscale,
        png::BitDepth::Eight,
        &[7, 200],
    );
    let img = decode_image(&g, "g.png").unwrap();
    assert_eq!(
        (img.mode, img.rgb.data.clone()),
        ("L", vec![7, 7, 7, 200, 200, 200])
    );
    assert!(img.alpha.is_none());
    // Gray + alpha.
    let la = raw_png(
        1,
        1,
        png::ColorType::GrayscaleAlpha,
        png::BitDepth::Eight,
        &[9, 0],
    );
    let img = decode_image(&la, "la.png").unwrap();
    assert_eq!(img.mode, "LA");
    assert_eq!(img.alpha.unwrap().data, vec![0]);
    // 16-bit RGB: the high byte, as Pillow's RGB;16B unpacker.
    let v: [u16; 3] = [0x01ff, 0x8000, 0xffff];
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_be_bytes()).collect();
    let rgb16 = raw_png(1, 1, png::ColorType::Rgb, png::BitDepth::Sixteen, &bytes);
    let img = decode_image(&rgb16, "rgb16.png").unwrap();
    assert_eq!(
        (img.mode, img.rgb.data.clone()),
        ("RGB;16", vec![1, 128, 255])
    );
    // 16-bit gray.
    let g16 = raw_png(
        1,
        1,
        png::ColorType::Grayscale,
        png::BitDepth::Sixteen,
        &[0x40, 0x10],
    );
    let img = decode_image(&g16, "g16.png").unwrap();
    assert_eq!((img.mode, img.rgb.data.clone()), ("I;16", vec![64, 64, 64]));
    // Through a file, with a size check naming the path and both sizes.
    let path = dir.path().join("start.png");
    std::fs::write(&path, encode_png(&test_image(30, 20), &[]).unwrap()).unwrap();
    let img = load_image(&path).unwrap();
    assert_eq!(img.rgb, test_image(30, 20));
    img.expect_size(30, 20).unwrap();
    let err = img.expect_size(512, 512).unwrap_err().to_string();
    assert!(err.contains("start.png"), "{err}");
    assert!(
        err.contains("wrong size: expected 512x512, got 30x20"),
        "{err}"
    );
    let err = img.rgb.expect_size(64, 48).unwrap_err().to_string();
    assert!(err.contains("expected 64x48, got 30x20"), "{err}");
    // A mask file: Pillow's convert("L").
    let mask = load_mask(&path).unwrap();
    assert_eq!(mask, test_image(30, 20).to_luma());
}

#[test]
fn applies_exif_orientation() {
    use image::ImageEncoder;
    // EXIF (TIFF, little endian) with Orientation = 6: rotate 90 degrees clockwise to display.
    let exif = vec![
        b'I', b'I', 0x2a, 0, 8, 0, 0, 0, // header, IFD at 8
        1, 0, // one entry
        0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0, // 0x0112 SHORT 1 = 6
        0, 0, 0, 0, // no next IFD
    ];
    let stored = test_image(3, 2);
    let mut bytes = Vec::new();
    let mut enc = image::codecs::png::PngEncoder::new(&mut bytes);
    enc.set_exif_metadata(exif).unwrap();
    enc.write_image(&stored.data, 3, 2, image::ExtendedColorType::Rgb8)
        .unwrap();
    let loaded = decode_image(&bytes, "rotated.png").unwrap();
    assert_eq!((loaded.rgb.width, loaded.rgb.height), (2, 3));
    for y in 0..2 {
        for x in 0..3 {
            // (x, y) -> (H - 1 - y, x)
            assert_eq!(loaded.rgb.pixel(1 - y, x), stored.pixel(x, y));
        }
    }
}

#[test]
fn loads_jpeg() {
    let img = test_image(40, 24);
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95)
        .encode(&img.data, 40, 24, image::ExtendedColorType::Rgb8)
        .unwrap();
    let loaded = decode_image(&jpeg, "x.jpg").unwrap();
    assert_eq!(loaded.mode, "RGB");
    assert_eq!((loaded.rgb.width, loaded.rgb.height), (40, 24));
    let mean_err: f64 = loaded
        .rgb
        .data
        .iter()
        .zip(&img.data)
        .map(|(&a, &b)| (f64::from(a) - f64::from(b)).abs())
        .sum::<f64>()
        / img.data.len() as f64;
    assert!(mean_err < 12.0, "JPEG round trip mean error {mean_err}");
}

#[test]
fn refuses_unsupported_and_broken_data() {
    let err = decode_image(b"GIF89a\x01\x00\x01\x00", "anim.gif").unwrap_err();
    assert!(matches!(err, ImageError::UnsupportedFormat { .. }));
    assert!(
        err.to_string().contains("anim.gif") && err.to_string().contains("GIF"),
        "{err}"
    );
    let err = decode_image(b"hello world", "notes.txt")
        .unwrap_err()
        .to_string();
    assert!(err.contains("first bytes 68 65 6c"), "{err}");
    let err = decode_image(b"", "empty.png").unwrap_err().to_string();
    assert!(err.contains("empty"), "{err}");
    // A truncated PNG.
    let png = encode_png(&test_image(8, 8), &[]).unwrap();
    let err = decode_image(&png[..png.len() / 2], "cut.png").unwrap_err();
    assert!(
        matches!(err, ImageError::Decode { format: "PNG", .. }),
        "{err}"
    );
}

#[test]
fn refuses_dev_zero_and_fifos_at_once() {
    let t = Instant::now();
    let err = load_image("/dev/zero").unwrap_err();
    assert!(
        matches!(
            err,
            ImageError::NotRegularFile {
                kind: "a character device",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("/dev/zero"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(1));

    let dir = TempDir::new("fifo");
    let err = load_image(dir.path()).unwrap_err();
    assert!(
        matches!(
            err,
            ImageError::NotRegularFile {
                kind: "a directory",
                ..
            }
        ),
        "{err}"
    );
    let fifo = dir.path().join("pipe.png");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if made {
        let t = Instant::now();
        let err = load_image(&fifo).unwrap_err();
        assert!(
            matches!(err, ImageError::NotRegularFile { kind: "a FIFO", .. }),
            "{err}"
        );
        assert!(t.elapsed() < Duration::from_secs(1));
    }
    let err = load_image(dir.path().join("missing.png")).unwrap_err();
    assert!(matches!(err, ImageError::Unreadable { .. }), "{err}");
    assert!(err.to_string().contains("missing.png"), "{err}");
}

#[test]
fn refuses_oversized_files_before_reading() {
    let dir = TempDir::new("big");
    let path = dir.path().join("huge.png");
    let f = std::fs::File::create(&path).unwrap();
    f.set_len((256 << 20) + 1).unwrap(); // sparse: no disk used
    drop(f);
    let t = Instant::now();
    let err = load_image(&path).unwrap_err();
    assert!(
        matches!(err, ImageError::TooLarge { size, .. } if size == (256 << 20) + 1),
        "{err}"
    );
    assert!(t.elapsed() < Duration::from_secs(1));
    let small = dir.path().join("small.bin");
    std::fs::write(&small, [0u8; 100]).unwrap();
    assert!(matches!(
        read_input_file(&small, 99),
        Err(ImageError::TooLarge { .. })
    ));
    assert_eq!(read_input_file(&small, 100).unwrap().len(), 100);
}

// ---------------------------------------------------------------- PNG text and writing

fn chunk_types(png: &[u8]) -> Vec<String> {
    let mut pos = 8;
    let mut out = Vec::new();
    while pos + 8 <= png.len() {
        let len = u32::from_be_bytes(png[pos..pos + 4].try_into().unwrap()) as usize;
        out.push(String::from_utf8_lossy(&png[pos + 4..pos + 8]).into_owned());
        pos += 12 + len;
    }
    out
}

#[test]
fn png_text_round_trip() {
    let img = test_image(33, 17);
    let params = GenerationParameters {
        prompt: "宇宙飛行士が火星で馬に乗る, photo — «très» détaillé 🚀".into(),
        negative_prompt: "blurry, low quality".into(),
        steps: 20,
        sampler: "DPM++ 2M Karras".into(),
        cfg_scale: 7.5,
        seed: 93,
        width: 33,
        height: 17,
        model_hash: None,
        model: "sd1-tiny".into(),
        denoising_strength: None,
    };
    let text = params.to_a1111_string();
    let latin1 = "café crème, naïve";
    let png = encode_png(&img, &[("parameters", &text), ("Comment", latin1)]).unwrap();
    // Non-Latin-1 text as iTXt, Latin-1 as tEXt, both before the image data.
    assert_eq!(chunk_types(&png), ["IHDR", "iTXt", "tEXt", "IDAT", "IEND"]);
    let back = read_png_text(&png).unwrap();
    assert_eq!(
        back,
        vec![
            ("parameters".to_string(), text.clone()),
            ("Comment".to_string(), latin1.to_string())
        ]
    );
    // The pixels survive.
    assert_eq!(decode_image(&png, "p.png").unwrap().rgb, img);
    // An ASCII parameters text is a tEXt chunk, as A1111 writes it.
    let ascii = encode_png(&img, &[("parameters", "a cat\nSteps: 20")]).unwrap();
    assert_eq!(chunk_types(&ascii)[1], "tEXt");
    // Through a file.
    let dir = TempDir::new("text");
    let path = dir.path().join("out.png");
    write_png_atomic(&path, &img, &[("parameters", &text)]).unwrap();
    assert_eq!(
        read_png_text_file(&path).unwrap(),
        vec![("parameters".to_string(), text)]
    );
}

#[test]
fn png_text_reads_compressed_chunks_in_file_order() {
    // zTXt and compressed iTXt written by the png crate (as other tools write them).
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, 1, 1);
        enc.set_color(png::ColorType::Rgb);
        enc.add_ztxt_chunk("Software".into(), "zipped latin-1 é".into())
            .unwrap();
        enc.add_text_chunk("Title".into(), "plain".into()).unwrap();
        let mut w = enc.write_header().unwrap();
        let mut itxt = png::text_metadata::ITXtChunk::new("parameters", "ζ compressed ✓");
        itxt.compressed = true;
        w.write_text_chunk(&itxt).unwrap();
        w.write_image_data(&[1, 2, 3]).unwrap();
        w.finish().unwrap();
    }
    let types = chunk_types(&out);
    let text = read_png_text(&out).unwrap();
    // File order, whatever the chunk types.
    let mut expected = Vec::new();
    for t in &types {
        match t.as_str() {
            "zTXt" => expected.push(("Software", "zipped latin-1 é")),
            "tEXt" => expected.push(("Title", "plain")),
            "iTXt" => expected.push(("parameters", "ζ compressed ✓")),
            _ => {}
        }
    }
    let expected: Vec<(String, String)> = expected
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(text, expected, "chunk order {types:?}");
    assert!(read_png_text(b"not a png").is_err());
}

#[test]
fn png_text_refuses_bad_keywords() {
    let img = test_image(2, 2);
    for bad in ["", " lead", "a  b", "clé€", &"k".repeat(80), "nul\0"] {
        let err = encode_png(&img, &[(bad, "x")]).unwrap_err();
        assert!(
            matches!(err, ImageError::TextChunk { .. }),
            "{bad:?}: {err}"
        );
    }
    let err = encode_png(&img, &[("parameters", "a\0b")]).unwrap_err();
    assert!(err.to_string().contains("NUL"), "{err}");
    assert!(matches!(
        encode_png(
            &RgbImage {
                width: 2,
                height: 2,
                data: vec![0; 5]
            },
            &[]
        ),
        Err(ImageError::InvalidData { .. })
    ));
}

#[test]
fn atomic_write_leaves_no_temporary_files() {
    let dir = TempDir::new("atomic");
    let img = test_image(5, 4);
    let path = dir.path().join("a.png");
    write_png_atomic(&path, &img, &[("parameters", "p")]).unwrap();
    assert_eq!(dir.entries(), ["a.png"]);
    // Replacing an existing regular file.
    let img2 = test_image(6, 4);
    write_png_atomic(&path, &img2, &[]).unwrap();
    assert_eq!(dir.entries(), ["a.png"]);
    assert_eq!(load_image(&path).unwrap().rgb, img2);

    // The target is a directory: refused, nothing left behind, the directory untouched.
    let sub = dir.path().join("b.png");
    std::fs::create_dir(&sub).unwrap();
    let err = write_png_atomic(&sub, &img, &[]).unwrap_err();
    assert!(
        matches!(
            err,
            ImageError::RefuseToReplace {
                kind: "a directory",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("b.png"), "{err}");
    assert_eq!(dir.entries(), ["a.png", "b.png"]);
    assert!(sub.is_dir());

    // A missing directory: an error, nothing created.
    let err = write_png_atomic(dir.path().join("no/such/c.png"), &img, &[]).unwrap_err();
    assert!(matches!(err, ImageError::Write { .. }), "{err}");
    assert_eq!(dir.entries(), ["a.png", "b.png"]);

    // An encoding failure (bad keyword) writes nothing.
    assert!(write_png_atomic(dir.path().join("d.png"), &img, &[("", "x")]).is_err());
    assert_eq!(dir.entries(), ["a.png", "b.png"]);
}

#[cfg(unix)]
#[test]
fn atomic_write_refuses_symlinks_and_fifos() {
    let dir = TempDir::new("symlink");
    let real = dir.path().join("real.png");
    std::fs::write(&real, b"keep me").unwrap();
    let link = dir.path().join("link.png");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let err = write_png_atomic(&link, &test_image(2, 2), &[]).unwrap_err();
    assert!(
        matches!(
            err,
            ImageError::RefuseToReplace {
                kind: "a symbolic link",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(std::fs::read(&real).unwrap(), b"keep me");
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // A dangling link is refused too.
    let dangling = dir.path().join("dangling.png");
    std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
    assert!(matches!(
        write_file_atomic(&dangling, b"x"),
        Err(ImageError::RefuseToReplace { .. })
    ));
    let fifo = dir.path().join("pipe.png");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if made {
        let err = write_file_atomic(&fifo, b"x").unwrap_err();
        assert!(
            matches!(err, ImageError::RefuseToReplace { kind: "a FIFO", .. }),
            "{err}"
        );
    }
    let mut names = dir.entries();
    names.retain(|n| n.starts_with('.'));
    assert!(names.is_empty(), "left behind: {names:?}");
    assert_eq!(std::fs::read(&real).unwrap(), b"keep me");
}

// ---------------------------------------------------------------- A1111 parameters

#[test]
fn a1111_parameters_text() {
    let mut p = GenerationParameters {
        prompt: "a photo of an astronaut riding a horse on mars".into(),
        negative_prompt: "blurry, low quality".into(),
        steps: 20,
        sampler: "DPM++ 2M Karras".into(),
        cfg_scale: 7.5,
        seed: 93,
        width: 512,
        height: 512,
        model_hash: None,
        model: "v1-5-pruned-emaonly".into(),
        denoising_strength: None,
    };
    assert_eq!(
        p.to_a1111_string(),
        "a photo of an astronaut riding a horse on mars\n\
         Negative prompt: blurry, low quality\n\
         Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7.5, Seed: 93, Size: 512x512, \
         Model: v1-5-pruned-emaonly"
    );
    p.negative_prompt.clear();
    p.denoising_strength = Some(0.75);
    p.cfg_scale = 7.0;
    p.width = 768;
    p.model_hash = Some("6ce0161689".into());
    assert_eq!(
        p.to_a1111_string(),
        "a photo of an astronaut riding a horse on mars\n\
         Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7.0, Seed: 93, Size: 768x512, \
         Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Denoising strength: 0.75"
    );
    // A1111's quote() for values with , : or newlines, and strip() of the whole text.
    p.prompt = "  spaced prompt \n".into();
    p.model = "my model: v2, final".into();
    p.model_hash = None;
    p.denoising_strength = None;
    assert_eq!(
        p.to_a1111_string(),
        "spaced prompt \n\nSteps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7.0, Seed: 93, \
         Size: 768x512, Model: \"my model: v2, final\""
    );
}

// ---------------------------------------------------------------- file names

#[test]
fn apple_file_names() {
    let prompt = "a photo of an astronaut riding a horse on mars";
    assert_eq!(
        OutputFileName::new(prompt, 93).file_name(),
        "a_photo_of_an_astronaut_riding_a_horse_on_mars.93.final.png"
    );
    let batch = OutputFileName {
        prompt,
        image_index: 2,
        image_count: 4,
        start_image_strength: Some(0.7),
        seed: 93,
        step: Some(15),
    };
    assert_eq!(
        batch.file_name(),
        "a_photo_of_an_astronaut_riding_a_horse_on_mars.2.str70.93.15.png"
    );
    // Float32 product, truncated: 0.29 * 100 = 29.0 in f32; 0.5 -> 50; 1.0 -> 100.
    for (s, want) in [
        (0.29f32, "str29"),
        (0.5, "str50"),
        (1.0, "str100"),
        (0.555, "str55"),
    ] {
        let n = OutputFileName {
            start_image_strength: Some(s),
            ..OutputFileName::new("x", 1)
        };
        assert!(
            n.file_name().contains(&format!(".{want}.")),
            "{s}: {}",
            n.file_name()
        );
    }
    // 75 characters of the prompt.
    let long = "word ".repeat(40);
    let name = OutputFileName::new(&long, 7).file_name();
    assert_eq!(name, format!("{}.7.final.png", "word_".repeat(15)));
}

fn assert_safe(name: &str) {
    assert!(!name.is_empty());
    assert!(
        !name.contains('/') && !name.contains('\\') && !name.contains('\0'),
        "{name:?}"
    );
    assert!(!name.chars().any(char::is_control), "{name:?}");
    assert!(name.len() <= 255, "{} bytes", name.len());
    assert_ne!(name, ".");
    assert_ne!(name, "..");
    // Joined to a folder it stays one component inside it.
    let joined = Path::new("/out").join(name);
    assert_eq!(joined.parent(), Some(Path::new("/out")), "{name:?}");
    assert_eq!(joined.components().count(), 3, "{name:?}");
}

#[test]
fn file_names_are_safe_for_nasty_prompts() {
    let cases: Vec<(String, Option<&str>)> = vec![
        (
            "../../etc/passwd".into(),
            Some(".._.._etc_passwd.93.final.png"),
        ),
        ("..".into(), Some("...93.final.png")),
        ("/absolute/path".into(), Some("_absolute_path.93.final.png")),
        ("back\\slash".into(), Some("back_slash.93.final.png")),
        ("nul\0byte".into(), Some("nul_byte.93.final.png")),
        (
            "line\nbreak\r\ttab".into(),
            Some("line_break__tab.93.final.png"),
        ),
        (
            "del\u{7f} c1\u{85} ls\u{2028}".into(),
            Some("del__c1__ls_.93.final.png"),
        ),
        (
            "rtl\u{202e}gnp.exe".into(),
            Some("rtl_gnp.exe.93.final.png"),
        ),
        (String::new(), Some("image.93.final.png")),
        ("   ".into(), Some("___.93.final.png")),
        ("宇".repeat(200), None),
        ("🚀".repeat(200), None),
        ("é".repeat(300), None),
    ];
    for (prompt, want) in &cases {
        let name = OutputFileName::new(prompt, 93).file_name();
        assert_safe(&name);
        if let Some(want) = want {
            assert_eq!(&name, want, "{prompt:?}");
        }
        assert!(name.ends_with(".93.final.png"));
    }
    // 200 CJK characters: 75 kept (225 bytes), never cut inside a character.
    let name = OutputFileName::new(&"宇".repeat(200), 93).file_name();
    assert_eq!(name, format!("{}.93.final.png", "宇".repeat(75)));
    // 200 emoji: 75 × 4 bytes would pass 255, so fewer, whole characters.
    let name = OutputFileName::new(&"🚀".repeat(200), 93).file_name();
    let stem = name.strip_suffix(".93.final.png").unwrap();
    assert!(stem.chars().all(|c| c == '🚀'));
    assert_eq!(stem.chars().count(), (255 - ".93.final.png".len()) / 4);
    // Batch, strength and step fields with a long prompt stay within 255 bytes.
    let n = OutputFileName {
        prompt: &"界".repeat(100),
        image_index: 12345,
        image_count: 99999,
        start_image_strength: Some(0.75),
        seed: u64::MAX,
        step: Some(999),
    };
    assert_safe(&n.file_name());
}

// ---------------------------------------------------------------- CLIP preprocessing

struct Fixture {
    tensors: Vec<(String, Vec<usize>, Vec<u8>)>,
    metadata: std::collections::HashMap<String, String>,
}

fn clip_fixture() -> Fixture {
    let bytes = std::fs::read(fixtures().join("preprocess/clip.safetensors"))
        .expect("fixtures/preprocess/clip.safetensors (xtask/reference/gen_preprocess.py)");
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let metadata = meta.metadata().clone().unwrap_or_default();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors = Vec::new();
    for (name, view) in st.tensors() {
        tensors.push((
            name.to_string(),
            view.shape().to_vec(),
            view.data().to_vec(),
        ));
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    Fixture { tensors, metadata }
}

impl Fixture {
    fn get(&self, name: &str) -> Option<(&[usize], &[u8])> {
        self.tensors
            .iter()
            .find(|t| t.0 == name)
            .map(|t| (&t.1[..], &t.2[..]))
    }
    fn f32s(&self, name: &str) -> Option<Vec<f32>> {
        self.get(name).map(|(_, d)| {
            d.chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect()
        })
    }
}

fn fnv1a64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn clip_preprocess_matches_transformers_and_pillow() {
    let fx = clip_fixture();
    let tiny = ClipImageProcessor::from_file(
        fixtures().join("models/safety-checker-tiny/feature_extractor/preprocessor_config.json"),
    )
    .unwrap();
    assert_eq!(tiny.size, ClipSize::ShortestEdge(64));
    assert_eq!(tiny.crop_size, (64, 64));
    // The fixture's copy of the tiny config parses the same.
    let tiny_meta =
        ClipImageProcessor::from_json_str(&fx.metadata["config.tiny"], "config.tiny").unwrap();
    assert_eq!(tiny_meta, tiny);
    // SD 1.x's old-style config ("size": 224, "crop_size": 224) is the default processor.
    let sd = ClipImageProcessor::from_json_str(&fx.metadata["config.sd"], "config.sd").unwrap();
    assert_eq!(sd, ClipImageProcessor::default());

    let mut worst_tiny = 0f32;
    let mut worst_sd_ends = 0f32;
    let mut compared = [0usize; 2];
    for (name, shape, data) in &fx.tensors {
        let Some(size) = name.strip_prefix("input.") else {
            continue;
        };
        let (h, w) = (shape[0], shape[1]);
        assert_eq!(shape[2], 3);
        let img = RgbImage::new(w, h, data.clone()).unwrap();
        // Tiny config: the whole pixel_values array.
        let want = fx.f32s(&format!("tiny.{size}")).expect("tiny output");
        let got = tiny.preprocess(&img).unwrap();
        assert_eq!(got.shape(), [1, 3, 64, 64]);
        let d = max_abs_diff(&got.data, &want);
        eprintln!("clip preprocess tiny {size}: max abs diff {d:e}");
        assert!(d <= 1e-5, "tiny {size}: max abs diff {d}");
        worst_tiny = worst_tiny.max(d);
        compared[0] += 1;
        // SD config: first/last 16 values and the FNV-1a-64 hash of all float32 bytes.
        let got = sd.preprocess(&img).unwrap();
        assert_eq!(got.shape(), [1, 3, 224, 224]);
        let n = got.data.len();
        let head = fx.f32s(&format!("sd.{size}.head")).expect("sd head");
        let tail = fx.f32s(&format!("sd.{size}.tail")).expect("sd tail");
        let d = max_abs_diff(&got.data[..16], &head).max(max_abs_diff(&got.data[n - 16..], &tail));
        let bytes: Vec<u8> = got.data.iter().flat_map(|v| v.to_le_bytes()).collect();
        let hash = format!("{:016x}", fnv1a64(&bytes));
        eprintln!("clip preprocess sd {size}: head/tail max abs diff {d:e}, hash {hash}");
        assert!(d <= 1e-5, "sd {size}: head/tail max abs diff {d}");
        assert_eq!(
            hash,
            fx.metadata[&format!("sd.{size}.fnv1a64")],
            "sd {size}: pixel_values differ from transformers' (bit for bit)"
        );
        worst_sd_ends = worst_sd_ends.max(d);
        compared[1] += 1;
        if let Some((_, luma)) = fx.get(&format!("luma.{size}")) {
            assert_eq!(img.to_luma().data, luma, "Pillow convert('L') of {size}");
        }
    }
    assert_eq!(compared, [5, 5], "fixture cases");
    eprintln!(
        "clip preprocess: worst max abs diff tiny {worst_tiny:e}; sd bit-identical, \
         ends {worst_sd_ends:e} (Pillow {})",
        fx.metadata["pillow"]
    );
    // The comparison is sensitive: another filter is far off.
    let (shape, data) = fx.get("input.240x228").unwrap();
    let img = RgbImage::new(shape[1], shape[0], data.to_vec()).unwrap();
    let bilinear = ClipImageProcessor {
        resample: resample::Filter::Bilinear,
        ..tiny.clone()
    };
    let d = max_abs_diff(
        &bilinear.preprocess(&img).unwrap().data,
        &fx.f32s("tiny.240x228").unwrap(),
    );
    assert!(d > 1e-2, "bilinear differs by only {d}");
}

#[test]
fn clip_resize_rule_and_config_errors() {
    let tiny = ClipImageProcessor {
        size: ClipSize::ShortestEdge(64),
        crop_size: (64, 64),
        ..ClipImageProcessor::default()
    };
    // int(64 * long / short), shorter side 64.
    assert_eq!(tiny.resized_size(300, 200), (96, 64));
    assert_eq!(tiny.resized_size(97, 131), (64, 86));
    assert_eq!(tiny.resized_size(31, 250), (64, 516));
    assert_eq!(tiny.resized_size(64, 64), (64, 64));
    assert_eq!(
        ClipImageProcessor::default().resized_size(512, 384),
        (298, 224)
    );
    // A crop larger than the resized image pads with zeros before normalizing.
    let pad = ClipImageProcessor {
        do_resize: false,
        crop_size: (4, 4),
        ..ClipImageProcessor::default()
    };
    let img = RgbImage::filled(2, 2, [255, 255, 255]);
    let out = pad.preprocess(&img).unwrap();
    assert_eq!(out.shape(), [1, 3, 4, 4]);
    let zero = (0.0 - 0.48145466f32) / 0.26862954f32;
    let one = (1.0 - 0.48145466f32) / 0.26862954f32;
    let row0: Vec<f32> = out.data[..4].to_vec();
    assert_eq!(row0, vec![zero; 4]);
    assert_eq!(out.data[4 + 1], one);
    assert_eq!(out.data[4 + 3], zero);
    for bad in [
        r#"{"resample": 0}"#,
        r#"{"size": {"longest_edge": 10}}"#,
        r#"{"size": "big"}"#,
        r#"{"image_mean": [1, 2]}"#,
        r#"[1]"#,
        "not json",
    ] {
        let err = ClipImageProcessor::from_json_str(bad, "preprocessor_config.json").unwrap_err();
        assert!(matches!(err, ImageError::Config { .. }), "{bad}: {err}");
        assert!(err.to_string().contains("preprocessor_config.json"));
    }
}

#[test]
fn pillow_resize_basics() {
    // Same size: a copy. A constant image stays constant through every filter.
    let img = test_image(9, 7);
    assert_eq!(
        resample::resize(&img.data, 9, 7, 3, 9, 7, resample::Filter::Bicubic),
        img.data
    );
    let flat = vec![77u8; 20 * 10];
    for f in [
        resample::Filter::Bicubic,
        resample::Filter::Bilinear,
        resample::Filter::Lanczos,
        resample::Filter::Box,
        resample::Filter::Hamming,
    ] {
        for (w, h) in [(7, 3), (40, 25), (20, 5), (3, 10)] {
            let out = resample::resize(&flat, 20, 10, 1, w, h, f);
            assert_eq!(out.len(), w * h);
            assert!(out.iter().all(|&v| v == 77), "{f:?} {w}x{h}");
        }
    }
    // Box downscale by 2 averages pairs (with Pillow's rounding).
    let row = [0u8, 10, 20, 31];
    assert_eq!(
        resample::resize(&row, 4, 1, 1, 2, 1, resample::Filter::Box),
        vec![5, 26]
    );
}
