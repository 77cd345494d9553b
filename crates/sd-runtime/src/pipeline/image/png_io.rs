//! PNG files with text metadata, written atomically.

use std::io::Cursor;
use std::path::Path;

use super::load::read_input_file;
use super::{ImageError, Result, RgbImage};

/// Largest PNG read by [`read_png_text_file`].
const MAX_PNG_BYTES: u64 = super::load::MAX_INPUT_BYTES;

fn text_err(keyword: &str, detail: impl Into<String>) -> ImageError {
    ImageError::TextChunk {
        keyword: keyword.to_string(),
        detail: detail.into(),
    }
}

fn is_latin1(text: &str) -> bool {
    text.chars().all(|c| (c as u32) <= 0xFF)
}

/// A PNG keyword: 1 to 79 printable Latin-1 characters (PNG spec, 11.3.4.2).
fn check_keyword(keyword: &str) -> Result<()> {
    let n = keyword.chars().count();
    if n == 0 || n > 79 {
        return Err(text_err(
            keyword,
            format!("a keyword has 1 to 79 characters, not {n}"),
        ));
    }
    if let Some(c) = keyword
        .chars()
        .find(|&c| !matches!(c as u32, 0x20..=0x7E | 0xA1..=0xFF))
    {
        return Err(text_err(
            keyword,
            format!("a keyword is printable Latin-1; {c:?} is not"),
        ));
    }
    if keyword.starts_with(' ') || keyword.ends_with(' ') || keyword.contains("  ") {
        return Err(text_err(
            keyword,
            "a keyword has no leading, trailing or consecutive spaces",
        ));
    }
    Ok(())
}

/// Encodes `image` as an 8-bit RGB PNG with one text chunk per `(keyword, text)` pair, in order,
/// before the image data (where Pillow writes them): `tEXt` when the text is Latin-1, else an
/// uncompressed `iTXt` (UTF-8) — what Pillow's `PngInfo.add_text`, and so AUTOMATIC1111, writes.
/// Keywords must be 1–79 printable Latin-1 characters; texts may not contain NUL.
pub fn encode_png(image: &RgbImage, text_chunks: &[(&str, &str)]) -> Result<Vec<u8>> {
    image.validate()?;
    for (keyword, text) in text_chunks {
        check_keyword(keyword)?;
        if text.contains('\0') {
            return Err(text_err(keyword, "the text contains a NUL character"));
        }
    }
    let width =
        u32::try_from(image.width).map_err(|_| ImageError::Encode("width too large".into()))?;
    let height =
        u32::try_from(image.height).map_err(|_| ImageError::Encode("height too large".into()))?;
    let mut out = Vec::with_capacity(image.data.len() / 2 + 1024);
    {
        let mut encoder = png::Encoder::new(Cursor::new(&mut out), width, height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let enc = |e: png::EncodingError| ImageError::Encode(e.to_string());
        let mut writer = encoder.write_header().map_err(enc)?;
        // Written one by one (not through `Info`, which groups them by type) to keep the order.
        for (keyword, text) in text_chunks {
            if is_latin1(text) {
                writer
                    .write_text_chunk(&png::text_metadata::TEXtChunk::new(*keyword, *text))
                    .map_err(enc)?;
            } else {
                writer
                    .write_text_chunk(&png::text_metadata::ITXtChunk::new(*keyword, *text))
                    .map_err(enc)?;
            }
        }
        writer.write_image_data(&image.data).map_err(enc)?;
        writer.finish().map_err(enc)?;
    }
    Ok(out)
}

/// [`encode_png`] then [`write_file_atomic`].
pub fn write_png_atomic(
    path: impl AsRef<Path>,
    image: &RgbImage,
    text_chunks: &[(&str, &str)],
) -> Result<()> {
    let path = path.as_ref();
    let bytes = encode_png(image, text_chunks)?;
    write_file_atomic(path, &bytes)?;
    tracing::debug!(path = %path.display(), bytes = bytes.len(), "wrote PNG");
    Ok(())
}

/// Writes `bytes` to `path` so that `path` is either untouched or complete
/// ([`sd_mil::files::write_atomic`]: a temporary file beside it, synced, then renamed). A
/// `path` that exists and is not a regular file (a symbolic link, directory, FIFO, device,
/// socket) is refused, not replaced.
pub fn write_file_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    let path = path.as_ref();
    sd_mil::files::write_atomic(path, bytes).map_err(|e| ImageError::from_file(e, path, true))
}

/// The text chunks (`tEXt`, `zTXt`, `iTXt`) of a PNG, as (keyword, text) in file order,
/// compressed ones inflated.
pub fn read_png_text(png_bytes: &[u8]) -> Result<Vec<(String, String)>> {
    read_text_impl(png_bytes, "PNG bytes")
}

/// [`read_png_text`] of a file (a regular file of at most 256 MiB).
pub fn read_png_text_file(path: impl AsRef<Path>) -> Result<Vec<(String, String)>> {
    let path = path.as_ref();
    let bytes = read_input_file(path, MAX_PNG_BYTES)?;
    read_text_impl(&bytes, &path.display().to_string())
}

fn decode_err(what: &str, detail: impl Into<String>) -> ImageError {
    ImageError::Decode {
        what: what.to_string(),
        format: "PNG",
        detail: detail.into(),
    }
}

enum Pending {
    Text(String, String),
    Compressed { itxt: bool },
}

fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

fn read_text_impl(bytes: &[u8], what: &str) -> Result<Vec<(String, String)>> {
    const SIG: &[u8] = b"\x89PNG\r\n\x1a\n";
    if !bytes.starts_with(SIG) {
        return Err(ImageError::UnsupportedFormat {
            what: what.to_string(),
            detail: "not a PNG (no PNG signature)".into(),
        });
    }
    // Walk the chunks to keep file order; tEXt and uncompressed iTXt are decoded here, the
    // compressed ones by the png crate (which keeps one list per chunk type, in order).
    let mut pending = Vec::new();
    let mut pos = SIG.len();
    let mut compressed = false;
    while pos + 8 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        let kind = &bytes[pos + 4..pos + 8];
        let start = pos + 8;
        let end = start
            .checked_add(len)
            .filter(|&e| e + 4 <= bytes.len())
            .ok_or_else(|| decode_err(what, format!("truncated {} chunk", latin1(kind))))?;
        let data = &bytes[start..end];
        match kind {
            b"tEXt" => {
                let nul = data
                    .iter()
                    .position(|&b| b == 0)
                    .ok_or_else(|| decode_err(what, "tEXt chunk without a keyword separator"))?;
                pending.push(Pending::Text(
                    latin1(&data[..nul]),
                    latin1(&data[nul + 1..]),
                ));
            }
            b"zTXt" => {
                pending.push(Pending::Compressed { itxt: false });
                compressed = true;
            }
            b"iTXt" => {
                let nul = data
                    .iter()
                    .position(|&b| b == 0)
                    .ok_or_else(|| decode_err(what, "iTXt chunk without a keyword separator"))?;
                let flag = data.get(nul + 1).copied().unwrap_or(0);
                if flag != 0 {
                    pending.push(Pending::Compressed { itxt: true });
                    compressed = true;
                } else {
                    // keyword \0 flag method lang \0 translated \0 text
                    let rest = data.get(nul + 3..).unwrap_or_default();
                    let mut parts = rest.splitn(3, |&b| b == 0);
                    let (_lang, _translated, text) = (parts.next(), parts.next(), parts.next());
                    let text = text.ok_or_else(|| decode_err(what, "malformed iTXt chunk"))?;
                    let text = String::from_utf8(text.to_vec())
                        .map_err(|_| decode_err(what, "iTXt text is not UTF-8"))?;
                    pending.push(Pending::Text(latin1(&data[..nul]), text));
                }
            }
            b"IEND" => break,
            _ => {}
        }
        pos = end + 4;
    }
    if !compressed {
        return Ok(pending
            .into_iter()
            .filter_map(|p| match p {
                Pending::Text(k, t) => Some((k, t)),
                Pending::Compressed { .. } => None,
            })
            .collect());
    }
    let decoder = png::Decoder::new(Cursor::new(bytes));
    let mut reader = decoder
        .read_info()
        .map_err(|e| decode_err(what, e.to_string()))?;
    reader
        .finish()
        .map_err(|e| decode_err(what, e.to_string()))?;
    let info = reader.info();
    let mut ztxt = info.compressed_latin1_text.iter();
    let mut itxt = info.utf8_text.iter().filter(|c| c.compressed);
    let mut out = Vec::with_capacity(pending.len());
    for p in pending {
        match p {
            Pending::Text(k, t) => out.push((k, t)),
            Pending::Compressed { itxt: false } => {
                let chunk = ztxt
                    .next()
                    .ok_or_else(|| decode_err(what, "zTXt chunk not decoded"))?;
                let text = chunk
                    .get_text()
                    .map_err(|e| decode_err(what, e.to_string()))?;
                out.push((chunk.keyword.clone(), text));
            }
            Pending::Compressed { itxt: true } => {
                let chunk = itxt
                    .next()
                    .ok_or_else(|| decode_err(what, "iTXt chunk not decoded"))?;
                let text = chunk
                    .get_text()
                    .map_err(|e| decode_err(what, e.to_string()))?;
                out.push((chunk.keyword.clone(), text));
            }
        }
    }
    Ok(out)
}
