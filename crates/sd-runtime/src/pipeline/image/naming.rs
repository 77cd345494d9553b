//! Output file names as Apple's `StableDiffusionSample` makes them, made safe as file names.

/// Apple's `fileCharLimit`: at most this many characters of the prompt go into the name.
pub const PROMPT_CHAR_LIMIT: usize = 75;

/// The longest file name written, in bytes (the limit of Linux and macOS file systems); the
/// prompt part is shortened further when the name would be longer.
pub const MAX_FILE_NAME_BYTES: usize = 255;

/// What goes into an output file name (Apple's `imageName(_:step:)`).
#[derive(Clone, Debug, PartialEq)]
pub struct OutputFileName<'a> {
    /// The prompt.
    pub prompt: &'a str,
    /// This image's index in the batch.
    pub image_index: usize,
    /// How many images the run makes (the index is written only when this is not 1).
    pub image_count: usize,
    /// The image-to-image strength, when a starting image is used (written as
    /// `.str<int(strength * 100)>`, the product in float32 as Swift's `Float` computes it).
    pub start_image_strength: Option<f32>,
    /// The seed.
    pub seed: u64,
    /// The step of an intermediate image; `None` for the final one.
    pub step: Option<usize>,
}

impl<'a> OutputFileName<'a> {
    /// The final image of a one-image text-to-image run.
    pub fn new(prompt: &'a str, seed: u64) -> Self {
        Self {
            prompt,
            image_index: 0,
            image_count: 1,
            start_image_strength: None,
            seed,
            step: None,
        }
    }

    /// The file name: the prompt's first 75 characters with spaces as `_`, then `.<index>` when
    /// more than one image is made, `.str<strength×100>` with a starting image, `.<seed>`,
    /// `.<step>` or `.final`, and `.png` — e.g.
    /// `a_photo_of_an_astronaut_riding_a_horse_on_mars.93.final.png`.
    ///
    /// Beyond Apple's rule, the name is safe to join to an output folder: `/`, `\`, NUL and
    /// every other control, line/paragraph-separator and bidirectional-override character of the
    /// prompt becomes `_` too, so no prompt can make a path separator (`../../etc` gives
    /// `.._.._etc.…`); an empty prompt gives `image`; the name is at most
    /// [`MAX_FILE_NAME_BYTES`] bytes (the prompt is cut at a character boundary). Characters are
    /// Unicode scalar values (Swift counts grapheme clusters, so a prompt with combining marks or
    /// emoji sequences can keep fewer visible characters here).
    pub fn file_name(&self) -> String {
        let mut suffix = String::new();
        if self.image_count != 1 {
            suffix.push_str(&format!(".{}", self.image_index));
        }
        if let Some(strength) = self.start_image_strength {
            // Swift: `Int(strength * 100)`, Float arithmetic, truncation toward zero.
            let percent = (strength * 100.0).trunc() as i64;
            suffix.push_str(&format!(".str{percent}"));
        }
        suffix.push_str(&format!(".{}", self.seed));
        match self.step {
            Some(step) => suffix.push_str(&format!(".{step}")),
            None => suffix.push_str(".final"),
        }
        suffix.push_str(".png");

        let budget = MAX_FILE_NAME_BYTES.saturating_sub(suffix.len());
        let mut stem = String::new();
        for c in self.prompt.chars().take(PROMPT_CHAR_LIMIT) {
            let c = safe_char(c);
            if stem.len() + c.len_utf8() > budget {
                break;
            }
            stem.push(c);
        }
        if stem.is_empty() {
            stem.push_str("image");
        }
        stem + &suffix
    }
}

/// `' '` -> `_` (Apple), and every character that could act as a path separator or hide in a
/// file name -> `_`.
fn safe_char(c: char) -> char {
    match c {
        ' ' | '/' | '\\' => '_',
        c if c.is_control() => '_', // C0 (NUL, tab, newline, ...), DEL, C1
        '\u{2028}' | '\u{2029}' => '_', // line / paragraph separators
        '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' => '_', // bidi controls
        '\u{FEFF}' => '_', // zero-width no-break space / BOM
        c => c,
    }
}
