//! The CLIP BPE tokenizer of Stable Diffusion's text encoders, equal to transformers'
//! `CLIPTokenizer` (checked on 322 prompts against transformers 5.24.0, SD 1.x and SD 2.x
//! padding).
//!
//! The tokenizer is built with the [`tokenizers`] crate from the `vocab.json` + `merges.txt` pair
//! that both a diffusers `tokenizer/` folder and Apple's Swift `Resources` folder hold:
//!
//! - model: BPE with end-of-word suffix `</w>` and unknown token `<|endoftext|>`;
//! - normalizer: NFC, then every run of whitespace (`\s+`) → one space, then lowercase;
//! - pre-tokenizer: the CLIP regex
//!   `'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`, keeping the matches and
//!   dropping the whitespace between them, then byte-level mapping (no prefix space);
//! - special tokens: `<|startoftext|>` (49406) and `<|endoftext|>` (49407), also recognised when
//!   typed in a prompt; with SD 2.x padding the pad token `!` (id 0) is a special token too, so a
//!   `!` in the prompt becomes id 0 as well (transformers' behaviour with SD 2.x tokenizer
//!   folders, diffusers issue #4153);
//! - decoder: byte-level, `</w>` → space.
//!
//! [`ClipTokenizer::encode`] wraps the tokens in the start and end tokens, truncates to
//! [`ClipTokenizer::max_len`] (77) as transformers' `truncation=True` does (start token, the first
//! 75 tokens, end token) and pads with the pad token. Apple's pipeline drops the overflow
//! silently; here [`Encoded::dropped_text`] says what was dropped and a `tracing` warning names
//! it.
//!
//! ```
//! use sd_runtime::pipeline::tokenizer::{ClipTokenizer, Padding};
//! use std::path::PathBuf;
//!
//! let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tokenizer");
//! let tokenizer = ClipTokenizer::from_files(
//!     &dir.join("vocab.json"),
//!     &dir.join("merges.txt"),
//!     Padding::EndOfText,
//! )?;
//! let encoded = tokenizer.encode("A photo of an astronaut riding a horse on Mars");
//! assert_eq!(
//!     encoded.ids[..12],
//!     [49406, 320, 1125, 539, 550, 18376, 6765, 320, 4558, 525, 7496, 49407]
//! );
//! assert_eq!(encoded.ids.len(), 77);
//! assert!(encoded.ids[12..].iter().all(|&id| id == 49407));
//! assert_eq!(encoded.untruncated_len, 12);
//! assert!(encoded.dropped_text.is_none());
//! // Core ML text encoders take `input_ids` as float32.
//! let input_ids: Vec<f32> = encoded.as_f32();
//! assert_eq!(input_ids[1], 320.0);
//! # Ok::<(), sd_runtime::pipeline::tokenizer::TokenizerError>(())
//! ```

#![warn(missing_docs)]

use std::fmt;
use std::path::{Path, PathBuf};

use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::models::bpe::{BPE, Merges, Vocab};
use tokenizers::normalizers::replace::ReplacePattern;
use tokenizers::normalizers::{Lowercase, NFC, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

/// The start-of-prompt token.
pub const START_OF_TEXT: &str = "<|startoftext|>";
/// The end-of-prompt token (also the unknown token, and SD 1.x's pad token).
pub const END_OF_TEXT: &str = "<|endoftext|>";
/// SD 2.x's pad token (id 0 in the CLIP vocabulary).
pub const EXCLAMATION: &str = "!";
/// The context length of CLIP's text encoders: the default [`ClipTokenizer::max_len`].
pub const DEFAULT_MAX_LEN: usize = 77;

/// CLIP's pre-tokenization regex (transformers' `CLIPTokenizer`).
const CLIP_PATTERN: &str = r"'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";
/// CLIP's end-of-word suffix.
const END_OF_WORD: &str = "</w>";

/// What goes wrong when building a [`ClipTokenizer`]. Every variant names the file concerned.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A file the tokenizer needs is not there.
    #[error("{}: file not found", path.display())]
    MissingFile {
        /// The missing file.
        path: PathBuf,
    },
    /// A file is there but cannot be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The unreadable file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `vocab.json` is not a JSON object of token → id, or lacks a token CLIP needs.
    #[error("{}: invalid vocabulary: {reason}", path.display())]
    InvalidVocab {
        /// The vocabulary file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A line of `merges.txt` is not two space-separated tokens of the vocabulary.
    #[error("{}: invalid merges, line {line}: {reason}", path.display())]
    InvalidMerges {
        /// The merges file.
        path: PathBuf,
        /// The 1-based line number in the file.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// `tokenizer_config.json` or `special_tokens_map.json` is not valid JSON.
    #[error("{}: invalid tokenizer configuration: {reason}", path.display())]
    InvalidConfig {
        /// The configuration file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The configuration asks for a pad token other than `<|endoftext|>` or `!`.
    #[error(
        "{}: unsupported pad token {token:?} (expected \"<|endoftext|>\" or \"!\")",
        path.display()
    )]
    UnsupportedPadToken {
        /// The configuration file naming the pad token.
        path: PathBuf,
        /// The pad token it names.
        token: String,
    },
    /// The `tokenizers` crate refused the vocabulary and merges.
    #[error("{} + {}: cannot build the BPE tokenizer: {reason}", vocab.display(), merges.display())]
    Build {
        /// The vocabulary file.
        vocab: PathBuf,
        /// The merges file.
        merges: PathBuf,
        /// The `tokenizers` crate's message.
        reason: String,
    },
}

/// The token that fills the ids after the end token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Padding {
    /// `<|endoftext|>` (id 49407): SD 1.x, and Apple's Swift pipeline.
    #[default]
    EndOfText,
    /// `!` (id 0): SD 2.x. The `!` is then a special token, so a `!` typed in the prompt also
    /// becomes id 0 (as transformers does), not `!</w>` (256).
    Exclamation,
}

impl Padding {
    /// The pad token's text: `<|endoftext|>` or `!`.
    pub fn token(self) -> &'static str {
        match self {
            Padding::EndOfText => END_OF_TEXT,
            Padding::Exclamation => EXCLAMATION,
        }
    }
}

impl fmt::Display for Padding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.token())
    }
}

/// A prompt turned into token ids by [`ClipTokenizer::encode`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    /// Exactly [`ClipTokenizer::max_len`] ids: start token, prompt tokens, end token, padding.
    pub ids: Vec<u32>,
    /// How many ids the prompt gives before truncation and padding, start and end tokens
    /// included (so 2 for an empty prompt); above `max_len` the prompt was truncated.
    pub untruncated_len: usize,
    /// When the prompt was truncated: the dropped tokens decoded back to text (lowercased, as
    /// the tokenizer normalizes; a character cut in two by the truncation shows as U+FFFD).
    pub dropped_text: Option<String>,
}

impl Encoded {
    /// The ids as float32, as Core ML text encoders take `input_ids`.
    pub fn as_f32(&self) -> Vec<f32> {
        self.ids.iter().map(|&id| id as f32).collect()
    }

    /// Whether tokens were dropped to fit the maximum length.
    pub fn is_truncated(&self) -> bool {
        self.dropped_text.is_some()
    }
}

/// CLIP's BPE tokenizer, as Stable Diffusion's text encoders expect it.
#[derive(Clone)]
pub struct ClipTokenizer {
    inner: Tokenizer,
    padding: Padding,
    max_len: usize,
    start_id: u32,
    end_id: u32,
    pad_id: u32,
}

impl fmt::Debug for ClipTokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClipTokenizer")
            .field("padding", &self.padding)
            .field("max_len", &self.max_len)
            .field("start_id", &self.start_id)
            .field("end_id", &self.end_id)
            .field("pad_id", &self.pad_id)
            .finish_non_exhaustive()
    }
}

impl ClipTokenizer {
    /// Builds the tokenizer from a CLIP `vocab.json` and `merges.txt`, padding with `padding`,
    /// with the maximum length [`DEFAULT_MAX_LEN`] (77).
    pub fn from_files(
        vocab: &Path,
        merges: &Path,
        padding: Padding,
    ) -> Result<Self, TokenizerError> {
        let vocab_map = read_vocab(vocab)?;
        let merges_list = read_merges(merges)?;
        let token_id = |token: &str| {
            vocab_map
                .get(token)
                .copied()
                .ok_or_else(|| TokenizerError::InvalidVocab {
                    path: vocab.to_path_buf(),
                    reason: format!("no {token:?} token"),
                })
        };
        let start_id = token_id(START_OF_TEXT)?;
        let end_id = token_id(END_OF_TEXT)?;
        let pad_id = token_id(padding.token())?;
        let build_error = |reason: String| TokenizerError::Build {
            vocab: vocab.to_path_buf(),
            merges: merges.to_path_buf(),
            reason,
        };

        let bpe = BPE::builder()
            .vocab_and_merges(vocab_map, merges_list)
            .end_of_word_suffix(END_OF_WORD.to_string())
            .unk_token(END_OF_TEXT.to_string())
            .fuse_unk(false)
            .build()
            .map_err(|e| build_error(e.to_string()))?;

        let normalizer = NormalizerSequence::new(vec![
            NFC.into(),
            Replace::new(ReplacePattern::Regex(r"\s+".into()), " ")
                .map_err(|e| build_error(e.to_string()))?
                .into(),
            Lowercase.into(),
        ]);
        // `Removed` + `invert`: keep what the regex matches, drop what lies between (whitespace).
        let split = Split::new(
            SplitPattern::Regex(CLIP_PATTERN.into()),
            SplitDelimiterBehavior::Removed,
            true,
        )
        .map_err(|e| build_error(e.to_string()))?;
        let pre_tokenizer = PreTokenizerSequence::new(vec![
            split.into(),
            ByteLevel::new(false, false, false).into(),
        ]);
        let decoder = DecoderSequence::new(vec![
            ByteLevel::new(false, false, false).into(),
            Replace::new(END_OF_WORD, " ")
                .map_err(|e| build_error(e.to_string()))?
                .into(),
        ]);

        let mut inner = Tokenizer::new(bpe);
        inner
            .with_normalizer(Some(normalizer))
            .map_err(|e| build_error(e.to_string()))?;
        inner.with_pre_tokenizer(Some(pre_tokenizer));
        inner.with_decoder(Some(decoder));
        // As the tokenizer folders declare them: special, matched on the normalized text.
        let mut special = vec![START_OF_TEXT, END_OF_TEXT];
        if padding == Padding::Exclamation {
            special.push(EXCLAMATION);
        }
        inner
            .add_special_tokens(
                special
                    .into_iter()
                    .map(|t| AddedToken::from(t, true).normalized(true)),
            )
            .map_err(|e| build_error(e.to_string()))?;

        Ok(Self {
            inner,
            padding,
            max_len: DEFAULT_MAX_LEN,
            start_id,
            end_id,
            pad_id,
        })
    }

    /// Builds the tokenizer from a folder holding `vocab.json` and `merges.txt`: a diffusers
    /// `tokenizer/` folder (or a diffusers model folder with a `tokenizer/` subfolder), or the
    /// root of Apple's Swift `Resources` folder.
    ///
    /// The pad token comes from `special_tokens_map.json`, else `tokenizer_config.json` (key
    /// `pad_token`, a string or an object with `content`): `!` gives [`Padding::Exclamation`];
    /// `<|endoftext|>`, no such file or no such key gives [`Padding::EndOfText`] (what Apple's
    /// pipeline uses). Any other pad token is an error.
    pub fn from_dir(dir: &Path) -> Result<Self, TokenizerError> {
        let dir = if !dir.join("vocab.json").exists() && dir.join("tokenizer/vocab.json").exists() {
            dir.join("tokenizer")
        } else {
            dir.to_path_buf()
        };
        let padding = padding_from_configs(&dir)?;
        Self::from_files(&dir.join("vocab.json"), &dir.join("merges.txt"), padding)
    }

    /// The same tokenizer with another maximum length (ids per prompt, start and end tokens
    /// included). Values below 2 are raised to 2 (start and end tokens only).
    pub fn with_max_len(mut self, max_len: usize) -> Self {
        if max_len < 2 {
            tracing::warn!(max_len, "CLIP tokenizer: max_len below 2 raised to 2");
        }
        self.max_len = max_len.max(2);
        self
    }

    /// Ids per encoded prompt (77 unless set by [`ClipTokenizer::with_max_len`]).
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// The pad token.
    pub fn padding(&self) -> Padding {
        self.padding
    }

    /// The pad token's id (49407 or 0 with CLIP's vocabulary).
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// `<|startoftext|>`'s id (49406 with CLIP's vocabulary).
    pub fn start_id(&self) -> u32 {
        self.start_id
    }

    /// `<|endoftext|>`'s id (49407 with CLIP's vocabulary).
    pub fn end_id(&self) -> u32 {
        self.end_id
    }

    /// The prompt's tokens without start and end tokens, truncation or padding.
    fn tokens(&self, prompt: &str) -> Vec<u32> {
        match self.inner.encode(prompt, false) {
            Ok(encoding) => encoding.get_ids().to_vec(),
            Err(e) => {
                // Not expected: byte-level BPE covers every input. Never panic; encode nothing.
                tracing::warn!(error = %e, "CLIP tokenizer failed on a prompt; encoding it as empty");
                Vec::new()
            }
        }
    }

    /// The prompt's ids, start and end tokens included, neither truncated nor padded.
    pub fn encode_untruncated(&self, prompt: &str) -> Vec<u32> {
        let tokens = self.tokens(prompt);
        let mut ids = Vec::with_capacity(tokens.len() + 2);
        ids.push(self.start_id);
        ids.extend(tokens);
        ids.push(self.end_id);
        ids
    }

    /// Encodes a prompt into exactly [`ClipTokenizer::max_len`] ids: start token, the prompt's
    /// tokens (the first `max_len - 2`), end token, then padding. When tokens are dropped,
    /// [`Encoded::dropped_text`] holds them decoded and a `tracing` warning names them.
    /// Never panics, whatever the string.
    pub fn encode(&self, prompt: &str) -> Encoded {
        let mut tokens = self.tokens(prompt);
        let untruncated_len = tokens.len() + 2;
        let budget = self.max_len - 2;
        let dropped_text = if tokens.len() > budget {
            let dropped = tokens.split_off(budget);
            let text = self.decode(&dropped);
            tracing::warn!(
                max_len = self.max_len,
                untruncated_len,
                dropped_tokens = dropped.len(),
                "prompt longer than {} tokens; dropped: {text:?}",
                self.max_len
            );
            Some(text)
        } else {
            None
        };
        let mut ids = Vec::with_capacity(self.max_len);
        ids.push(self.start_id);
        ids.extend(tokens);
        ids.push(self.end_id);
        ids.resize(self.max_len, self.pad_id);
        Encoded {
            ids,
            untruncated_len,
            dropped_text,
        }
    }

    /// Decodes ids back to text (byte-level, `</w>` → space, trimmed). Special tokens are kept
    /// as text; ids outside the vocabulary are skipped.
    pub fn decode(&self, ids: &[u32]) -> String {
        match self.inner.decode(ids, false) {
            Ok(text) => text.trim().to_string(),
            Err(e) => {
                tracing::warn!(error = %e, "CLIP tokenizer could not decode ids");
                String::new()
            }
        }
    }
}

/// Reads and checks `vocab.json`: a JSON object of token → id.
fn read_vocab(path: &Path) -> Result<Vocab, TokenizerError> {
    let text = read_text(path)?;
    let invalid = |reason: String| TokenizerError::InvalidVocab {
        path: path.to_path_buf(),
        reason,
    };
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| invalid(format!("not JSON: {e}")))?;
    let serde_json::Value::Object(map) = value else {
        return Err(invalid("not a JSON object of token → id".into()));
    };
    if map.is_empty() {
        return Err(invalid("empty".into()));
    }
    map.into_iter()
        .map(|(token, id)| {
            id.as_u64()
                .and_then(|id| u32::try_from(id).ok())
                .map(|id| (token.clone(), id))
                .ok_or_else(|| invalid(format!("token {token:?} has id {id}, not a u32")))
        })
        .collect()
}

/// Reads and checks `merges.txt`: an optional `#version` line, then one `left right` pair a
/// line (blank lines skipped), both halves in the vocabulary.
fn read_merges(path: &Path) -> Result<Merges, TokenizerError> {
    let text = read_text(path)?;
    let mut merges = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() || (index == 0 && line.starts_with("#version")) {
            continue;
        }
        let mut parts = line.split(' ');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(b), None) if !a.is_empty() && !b.is_empty() => {
                merges.push((a.to_string(), b.to_string()));
            }
            _ => {
                return Err(TokenizerError::InvalidMerges {
                    path: path.to_path_buf(),
                    line: index + 1,
                    reason: format!("expected two tokens separated by one space, got {line:?}"),
                });
            }
        }
    }
    if merges.is_empty() {
        return Err(TokenizerError::InvalidMerges {
            path: path.to_path_buf(),
            line: 0,
            reason: "no merges".into(),
        });
    }
    Ok(merges)
}

/// Reads a UTF-8 text file, telling a missing file from an unreadable one.
fn read_text(path: &Path) -> Result<String, TokenizerError> {
    // vocab.json and merges.txt of CLIP are 1–2 MB; 64 MiB leaves room for any tokenizer.
    sd_mil::files::read_regular_string(path, sd_mil::files::MAX_JSON_BYTES).map_err(|e| {
        if e.is_not_found() {
            TokenizerError::MissingFile {
                path: path.to_path_buf(),
            }
        } else {
            TokenizerError::Read {
                path: path.to_path_buf(),
                source: match e {
                    sd_mil::files::FileError::Io { source, .. } => source,
                    other => std::io::Error::other(other.to_string()),
                },
            }
        }
    })
}

/// The pad token a diffusers tokenizer folder declares (see [`ClipTokenizer::from_dir`]).
fn padding_from_configs(dir: &Path) -> Result<Padding, TokenizerError> {
    let mut found: Vec<(PathBuf, String)> = Vec::new();
    for name in ["special_tokens_map.json", "tokenizer_config.json"] {
        let path = dir.join(name);
        if !path.exists() {
            continue;
        }
        if let Some(token) = pad_token_in(&path)? {
            found.push((path, token));
        }
    }
    let Some((path, token)) = found.first() else {
        return Ok(Padding::EndOfText);
    };
    if let Some((other_path, other)) = found.get(1)
        && other != token
    {
        tracing::warn!(
            "{} declares pad token {token:?} but {} declares {other:?}; using {token:?}",
            path.display(),
            other_path.display()
        );
    }
    match token.as_str() {
        END_OF_TEXT => Ok(Padding::EndOfText),
        EXCLAMATION => Ok(Padding::Exclamation),
        _ => Err(TokenizerError::UnsupportedPadToken {
            path: path.clone(),
            token: token.clone(),
        }),
    }
}

/// The `pad_token` of a transformers tokenizer JSON file: a string, an object with `content`,
/// or absent / null.
fn pad_token_in(path: &Path) -> Result<Option<String>, TokenizerError> {
    let text = read_text(path)?;
    let invalid = |reason: String| TokenizerError::InvalidConfig {
        path: path.to_path_buf(),
        reason,
    };
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| invalid(format!("not JSON: {e}")))?;
    let serde_json::Value::Object(map) = value else {
        return Err(invalid("not a JSON object".into()));
    };
    match map.get("pad_token") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
        Some(serde_json::Value::Object(o)) => match o.get("content") {
            Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
            _ => Err(invalid(
                "pad_token object without a string \"content\"".into(),
            )),
        },
        Some(other) => Err(invalid(format!(
            "pad_token is {other}, not a string or an object"
        ))),
    }
}
