//! AUTOMATIC1111's generation-parameters text (the PNG `parameters` chunk).

/// What AUTOMATIC1111 writes about a generated image ("infotext"). Readers (A1111's PNG Info,
/// ComfyUI, civitai) parse [`GenerationParameters::to_a1111_string`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GenerationParameters {
    /// The prompt.
    pub prompt: String,
    /// The negative prompt ("" for none: the line is left out, as A1111 does).
    pub negative_prompt: String,
    /// Inference steps.
    pub steps: u32,
    /// The sampler's display name as A1111 shows it, e.g. "DPM++ 2M Karras", "Euler a", "PLMS".
    pub sampler: String,
    /// Guidance scale.
    pub cfg_scale: f32,
    /// Seed.
    pub seed: u64,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// "Model hash" (A1111: the first 10 hex digits of the checkpoint's sha256); `None` leaves it
    /// out.
    pub model_hash: Option<String>,
    /// "Model": the model's name ("" leaves it out).
    pub model: String,
    /// "Denoising strength" for image-to-image; `None` for text-to-image.
    pub denoising_strength: Option<f32>,
}

impl GenerationParameters {
    /// A1111's `create_infotext` text:
    /// `<prompt>\nNegative prompt: <negative>\nSteps: 20, Sampler: DPM++ 2M Karras, CFG scale:
    /// 7.5, Seed: 93, Size: 512x512, Model hash: <hash>, Model: <name>, Denoising strength: 0.75`.
    ///
    /// As A1111: the negative-prompt line only when there is one; a value containing `,`, `:` or
    /// a newline is written as a JSON string (its `quote`); floats as Python's `repr` writes them
    /// (`7.0`, `0.75`); the whole text stripped of surrounding whitespace.
    pub fn to_a1111_string(&self) -> String {
        let mut fields: Vec<(&str, String)> = vec![
            ("Steps", self.steps.to_string()),
            ("Sampler", quote(&self.sampler)),
            ("CFG scale", python_float(self.cfg_scale)),
            ("Seed", self.seed.to_string()),
            ("Size", format!("{}x{}", self.width, self.height)),
        ];
        if let Some(hash) = &self.model_hash {
            fields.push(("Model hash", quote(hash)));
        }
        if !self.model.is_empty() {
            fields.push(("Model", quote(&self.model)));
        }
        if let Some(strength) = self.denoising_strength {
            fields.push(("Denoising strength", python_float(strength)));
        }
        let params = fields
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", ");
        let negative = if self.negative_prompt.is_empty() {
            String::new()
        } else {
            format!("\nNegative prompt: {}", self.negative_prompt)
        };
        let text = format!("{}{negative}\n{params}", self.prompt);
        python_strip(&text).to_string()
    }
}

/// A1111's `quote`: the text unchanged unless it contains `,`, `\n` or `:`; then
/// `json.dumps(text, ensure_ascii=False)`.
fn quote(text: &str) -> String {
    if !text.contains([',', '\n', ':']) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Python's `repr(float(x))` for the float32 `x` typed by a user: the shortest digits that
/// give `x` back, fixed notation for exponents -4..16 (`7.5`, `7.0`, `0.0001`), else
/// scientific with a signed two-digit exponent (`1e-05`, `1e+16`).
fn python_float(x: f32) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if x == 0.0 {
        return if x.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    let sci = format!("{x:e}"); // shortest round-trip digits, e.g. "7.5e0", "1e-5"
    let (mantissa, exp) = sci.split_once('e').expect("LowerExp has an exponent");
    let exp: i32 = exp.parse().expect("LowerExp exponent");
    if (-4..16).contains(&exp) {
        let fixed = format!("{x}");
        if fixed.contains('.') {
            fixed
        } else {
            fixed + ".0"
        }
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    }
}

/// Python's `str.strip()` (whitespace as `str.isspace`: Unicode White_Space plus the
/// information separators U+001C..U+001F).
fn python_strip(text: &str) -> &str {
    text.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_float_repr() {
        assert_eq!(python_float(7.5), "7.5");
        assert_eq!(python_float(7.0), "7.0");
        assert_eq!(python_float(0.75), "0.75");
        assert_eq!(python_float(0.7), "0.7");
        assert_eq!(python_float(1e-5), "1e-05");
        assert_eq!(python_float(0.0001), "0.0001");
        assert_eq!(python_float(1.5e17), "1.5e+17");
        assert_eq!(python_float(100.0), "100.0");
        assert_eq!(python_float(-2.25), "-2.25");
    }

    #[test]
    fn quote_like_a1111() {
        assert_eq!(quote("DPM++ 2M Karras"), "DPM++ 2M Karras");
        assert_eq!(quote("a, b"), "\"a, b\"");
        assert_eq!(quote("x:\"y\"\n"), "\"x:\\\"y\\\"\\n\"");
        assert_eq!(quote("é: ü"), "\"é: ü\"");
    }
}
