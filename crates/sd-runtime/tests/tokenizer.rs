//! The CLIP tokenizer against transformers 5.24.0's `CLIPTokenizer` (fixtures/tokenizer/prompts.json)
//! and its file handling.

use std::path::{Path, PathBuf};

use sd_runtime::pipeline::tokenizer::{ClipTokenizer, Encoded, Padding, TokenizerError};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

fn tokenizer_dir() -> PathBuf {
    fixtures().join("tokenizer")
}

fn tokenizer(padding: Padding) -> ClipTokenizer {
    let dir = tokenizer_dir();
    ClipTokenizer::from_files(&dir.join("vocab.json"), &dir.join("merges.txt"), padding)
        .expect("fixture tokenizer")
}

struct Prompt {
    text: String,
    ids: Vec<u32>,
    sd1: Vec<u32>,
    sd2: Vec<u32>,
}

fn prompts() -> Vec<Prompt> {
    let path = tokenizer_dir().join("prompts.json");
    let text = std::fs::read_to_string(&path).expect("prompts.json");
    let json: serde_json::Value = serde_json::from_str(&text).expect("prompts.json is JSON");
    let ids = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array()
            .expect("id array")
            .iter()
            .map(|id| id.as_u64().expect("id") as u32)
            .collect()
    };
    json["prompts"]
        .as_array()
        .expect("prompts array")
        .iter()
        .map(|p| Prompt {
            text: p["text"].as_str().expect("text").to_string(),
            ids: ids(&p["ids"]),
            sd1: ids(&p["sd1"]),
            sd2: ids(&p["sd2"]),
        })
        .collect()
}

/// A fresh scratch folder for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sd-runtime-tokenizer-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// A folder with the fixture vocabulary and merges plus the given extra files.
fn tokenizer_folder(name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = scratch(name);
    for file in ["vocab.json", "merges.txt"] {
        std::fs::copy(tokenizer_dir().join(file), dir.join(file)).expect("copy fixture");
    }
    for (file, text) in files {
        std::fs::write(dir.join(file), text).expect("write");
    }
    dir
}

#[test]
fn every_fixture_prompt_matches_transformers() {
    let sd1 = tokenizer(Padding::EndOfText);
    let sd2 = tokenizer(Padding::Exclamation);
    let long = sd1.clone().with_max_len(1000);
    let prompts = prompts();
    assert_eq!(prompts.len(), 322);

    let (mut ids_ok, mut sd1_ok, mut sd2_ok) = (0, 0, 0);
    let mut failures = Vec::new();
    for (i, p) in prompts.iter().enumerate() {
        let untruncated = sd1.encode_untruncated(&p.text);
        if untruncated == p.ids {
            ids_ok += 1;
        } else {
            failures.push(format!(
                "#{i} {:?} ids: got {untruncated:?}, want {:?}",
                p.text, p.ids
            ));
        }
        // Same through a tokenizer long enough not to truncate.
        let e = long.encode(&p.text);
        assert_eq!(e.ids[..p.ids.len()], p.ids, "#{i} with_max_len");
        assert!(e.ids[p.ids.len()..].iter().all(|&id| id == 49407), "#{i}");
        assert!(e.dropped_text.is_none());

        let e1 = sd1.encode(&p.text);
        if e1.ids == p.sd1 {
            sd1_ok += 1;
        } else {
            failures.push(format!(
                "#{i} {:?} sd1: got {:?}, want {:?}",
                p.text, e1.ids, p.sd1
            ));
        }
        assert_eq!(e1.untruncated_len, p.ids.len(), "#{i} untruncated_len");
        assert_eq!(
            e1.dropped_text.is_some(),
            p.ids.len() > 77,
            "#{i} dropped_text"
        );

        let e2 = sd2.encode(&p.text);
        if e2.ids == p.sd2 {
            sd2_ok += 1;
        } else {
            failures.push(format!(
                "#{i} {:?} sd2: got {:?}, want {:?}",
                p.text, e2.ids, p.sd2
            ));
        }
        assert_eq!(e2.ids.len(), 77);
    }
    println!(
        "tokenizer fixtures: {ids_ok}/{n} untruncated ids, {sd1_ok}/{n} sd1, {sd2_ok}/{n} sd2 match",
        n = prompts.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn reference_prompt_and_empty_prompt() {
    let sd1 = tokenizer(Padding::EndOfText);
    let e = sd1.encode("A photo of an astronaut riding a horse on Mars");
    assert_eq!(
        e.ids[..12],
        [
            49406, 320, 1125, 539, 550, 18376, 6765, 320, 4558, 525, 7496, 49407
        ]
    );
    assert!(e.ids[12..].iter().all(|&id| id == 49407));
    assert_eq!(e.as_f32()[..3], [49406.0, 320.0, 1125.0]);
    assert_eq!(sd1.max_len(), 77);
    assert_eq!(sd1.padding(), Padding::EndOfText);
    assert_eq!(
        (sd1.start_id(), sd1.end_id(), sd1.pad_id()),
        (49406, 49407, 49407)
    );

    let empty = sd1.encode("");
    assert_eq!(empty.ids.len(), 77);
    assert_eq!(empty.ids[..2], [49406, 49407]);
    assert!(empty.ids[2..].iter().all(|&id| id == 49407));
    assert_eq!(empty.untruncated_len, 2);

    let sd2 = tokenizer(Padding::Exclamation);
    assert_eq!(sd2.pad_id(), 0);
    let empty = sd2.encode("   ");
    assert_eq!(empty.ids[..2], [49406, 49407]);
    assert!(empty.ids[2..].iter().all(|&id| id == 0));
}

#[test]
fn from_dir_picks_the_pad_token() {
    let models = fixtures().join("models");
    let sd1 = ClipTokenizer::from_dir(&models.join("sd1-tiny/tokenizer")).unwrap();
    assert_eq!(sd1.padding(), Padding::EndOfText);
    assert_eq!(sd1.pad_id(), 49407);
    let sd2 = ClipTokenizer::from_dir(&models.join("sd2-tiny/tokenizer")).unwrap();
    assert_eq!(sd2.padding(), Padding::Exclamation);
    assert_eq!(sd2.pad_id(), 0);
    // `!` in the prompt is the special pad token with SD 2.x, `!</w>` with SD 1.x.
    assert_eq!(sd2.encode("wow!").ids[..4], [49406, 2781, 0, 49407]);
    assert_eq!(sd1.encode("wow!").ids[..4], [49406, 2781, 256, 49407]);

    // A diffusers model folder: its tokenizer/ subfolder.
    let sd2_root = ClipTokenizer::from_dir(&models.join("sd2-tiny")).unwrap();
    assert_eq!(sd2_root.padding(), Padding::Exclamation);

    // Apple's Resources layout: vocab.json + merges.txt only → SD 1.x padding.
    let apple = tokenizer_folder("apple", &[]);
    let t = ClipTokenizer::from_dir(&apple).unwrap();
    assert_eq!(t.padding(), Padding::EndOfText);
    let _ = std::fs::remove_dir_all(&apple);

    // tokenizer_config.json alone, pad token as an object.
    let dir = tokenizer_folder(
        "config-only",
        &[(
            "tokenizer_config.json",
            r#"{"pad_token": {"content": "!", "normalized": true}}"#,
        )],
    );
    assert_eq!(
        ClipTokenizer::from_dir(&dir).unwrap().padding(),
        Padding::Exclamation
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn long_prompt_reports_the_dropped_words() {
    let t = tokenizer(Padding::EndOfText);
    let prompt = format!("a photo of{} purple zebra giraffe", " cat".repeat(80));
    let e = t.encode(&prompt);
    assert_eq!(e.ids.len(), 77);
    assert_eq!(e.ids[0], 49406);
    assert_eq!(e.ids[76], 49407);
    assert_eq!(e.untruncated_len, 3 + 80 + 3 + 2);
    assert!(e.is_truncated());
    let dropped = e.dropped_text.as_deref().unwrap();
    // 75 tokens kept: "a photo of" and 72 "cat"s; 8 cats and the last three words dropped.
    assert_eq!(dropped, format!("{}purple zebra giraffe", "cat ".repeat(8)));

    // A fixture prompt over 77 tokens.
    let p = prompts()
        .into_iter()
        .find(|p| p.text.starts_with("masterpiece") && p.ids.len() > 77)
        .expect("long fixture prompt");
    let e = t.encode(&p.text);
    let dropped = e.dropped_text.unwrap();
    assert!(!dropped.is_empty());
    let tail: String = p
        .text
        .to_lowercase()
        .split_whitespace()
        .last()
        .unwrap()
        .into();
    let tail = tail.trim_matches(|c: char| !c.is_alphanumeric());
    assert!(
        dropped.contains(tail),
        "dropped {dropped:?} lacks the prompt's last word {tail:?}"
    );

    // Exactly 75 tokens: nothing dropped.
    let fits = format!("a photo of{}", " cat".repeat(72));
    let e = t.encode(&fits);
    assert_eq!(e.untruncated_len, 77);
    assert!(e.dropped_text.is_none());
    assert_eq!(e.ids[76], 49407);
}

#[test]
fn missing_files_name_the_path() {
    let dir = scratch("missing");
    let vocab = dir.join("vocab.json");
    let merges = tokenizer_dir().join("merges.txt");
    let err = ClipTokenizer::from_files(&vocab, &merges, Padding::EndOfText).unwrap_err();
    assert!(
        matches!(&err, TokenizerError::MissingFile { path } if path == &vocab),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&vocab.display().to_string()),
        "{err}"
    );

    let missing_merges = dir.join("merges.txt");
    let err = ClipTokenizer::from_files(
        &tokenizer_dir().join("vocab.json"),
        &missing_merges,
        Padding::EndOfText,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains(&missing_merges.display().to_string()),
        "{err}"
    );

    let err = ClipTokenizer::from_dir(&dir).unwrap_err();
    assert!(err.to_string().contains("vocab.json"), "{err}");
    assert!(matches!(err, TokenizerError::MissingFile { .. }), "{err:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn build_error(name: &str, vocab: &str, merges: &str) -> TokenizerError {
    let dir = scratch(name);
    std::fs::write(dir.join("vocab.json"), vocab).unwrap();
    std::fs::write(dir.join("merges.txt"), merges).unwrap();
    let err = ClipTokenizer::from_dir(&dir).unwrap_err();
    let _ = std::fs::remove_dir_all(&dir);
    err
}

#[test]
fn garbage_files_give_errors_not_panics() {
    let merges = "#version: 0.2\na b\n";
    for (name, vocab) in [
        ("not-json", "this is not json {"),
        ("array", "[1, 2, 3]"),
        ("string-id", r#"{"a": "x", "b": 1}"#),
        ("negative-id", r#"{"a": -1}"#),
        ("empty", "{}"),
        ("no-specials", r#"{"a": 0, "b": 1, "ab": 2}"#),
    ] {
        let err = build_error(name, vocab, merges);
        assert!(
            matches!(err, TokenizerError::InvalidVocab { .. }),
            "{name}: {err:?}"
        );
        assert!(err.to_string().contains("vocab.json"), "{name}: {err}");
    }
    let vocab = r#"{"a": 0, "b": 1, "ab": 2, "<|startoftext|>": 3, "<|endoftext|>": 4}"#;
    let err = build_error("bad-merges", vocab, "#version: 0.2\na b c\n");
    assert!(
        matches!(err, TokenizerError::InvalidMerges { line: 2, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("merges.txt"), "{err}");
    let err = build_error("merge-out-of-vocab", vocab, "a zz\n");
    assert!(matches!(err, TokenizerError::Build { .. }), "{err:?}");
    let err = build_error("binary", vocab, "\u{0}\u{1}\u{2}");
    assert!(
        matches!(err, TokenizerError::InvalidMerges { .. }),
        "{err:?}"
    );

    // Not UTF-8 at all.
    let dir = scratch("not-utf8");
    std::fs::write(dir.join("vocab.json"), [0xff, 0xfe, 0x00, 0x80]).unwrap();
    std::fs::write(dir.join("merges.txt"), merges).unwrap();
    let err = ClipTokenizer::from_dir(&dir).unwrap_err();
    assert!(err.to_string().contains("vocab.json"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);

    // A toy vocabulary that builds: `!` missing, so SD 2.x padding is refused.
    let dir = scratch("toy");
    std::fs::write(dir.join("vocab.json"), vocab).unwrap();
    std::fs::write(dir.join("merges.txt"), "a b\n").unwrap();
    let toy = ClipTokenizer::from_dir(&dir).unwrap();
    let e = toy.encode("ab ba zzz ✨");
    assert_eq!(e.ids.len(), 77);
    let err = ClipTokenizer::from_files(
        &dir.join("vocab.json"),
        &dir.join("merges.txt"),
        Padding::Exclamation,
    )
    .unwrap_err();
    assert!(
        matches!(err, TokenizerError::InvalidVocab { .. }),
        "{err:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_configs_give_errors() {
    let dir = tokenizer_folder("bad-config", &[("tokenizer_config.json", "{ nope")]);
    let err = ClipTokenizer::from_dir(&dir).unwrap_err();
    assert!(
        matches!(err, TokenizerError::InvalidConfig { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("tokenizer_config.json"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);

    let dir = tokenizer_folder(
        "bad-map",
        &[("special_tokens_map.json", r#"{"pad_token": 7}"#)],
    );
    let err = ClipTokenizer::from_dir(&dir).unwrap_err();
    assert!(err.to_string().contains("special_tokens_map.json"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);

    let dir = tokenizer_folder(
        "other-pad",
        &[("tokenizer_config.json", r#"{"pad_token": "<pad>"}"#)],
    );
    let err = ClipTokenizer::from_dir(&dir).unwrap_err();
    assert!(
        matches!(&err, TokenizerError::UnsupportedPadToken { token, .. } if token == "<pad>"),
        "{err:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);

    // special_tokens_map.json wins over tokenizer_config.json; null means no pad token.
    let dir = tokenizer_folder(
        "both",
        &[
            ("special_tokens_map.json", r#"{"pad_token": "!"}"#),
            ("tokenizer_config.json", r#"{"pad_token": "<|endoftext|>"}"#),
        ],
    );
    assert_eq!(
        ClipTokenizer::from_dir(&dir).unwrap().padding(),
        Padding::Exclamation
    );
    let _ = std::fs::remove_dir_all(&dir);
    let dir = tokenizer_folder(
        "null",
        &[("tokenizer_config.json", r#"{"pad_token": null}"#)],
    );
    assert_eq!(
        ClipTokenizer::from_dir(&dir).unwrap().padding(),
        Padding::EndOfText
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn check(t: &ClipTokenizer, prompt: &str) -> Encoded {
    let e = t.encode(prompt);
    assert_eq!(e.ids.len(), t.max_len(), "{prompt:?}");
    assert_eq!(e.ids[0], t.start_id());
    assert!(e.ids.contains(&t.end_id()));
    assert!(e.untruncated_len >= 2);
    e
}

#[test]
fn never_panics() {
    let sd1 = tokenizer(Padding::EndOfText);
    let sd2 = tokenizer(Padding::Exclamation);
    let huge = "a very long prompt, with words! ".repeat(5_000);
    let one_huge_word = "x".repeat(50_000);
    let mut all_chars = String::new();
    for c in (0u32..0x11_0000).step_by(97).filter_map(char::from_u32) {
        all_chars.push(c);
    }
    let strange = [
        "",
        " ",
        "\t\n\r\u{b}\u{c}",
        "\u{0}\u{1}\u{7f}\u{9f}",
        "\u{301}",
        "\u{301}\u{308}\u{20dd}",
        "e\u{301}\u{301}\u{301}",
        "\u{ffff}\u{fffe}\u{fffd}\u{feff}",
        "\u{10ffff}",
        "\u{200b}\u{200d}\u{2060}",
        "👩‍👩‍👧‍👦🏳️‍🌈🇫🇷",
        "<|startoftext|><|endoftext|>!<|endoftext|",
        "<|ENDOFTEXT|>",
        "'s'''t're've'm'll'd",
        all_chars.as_str(),
    ];
    for t in [&sd1, &sd2] {
        for s in strange
            .iter()
            .chain([&huge.as_str(), &one_huge_word.as_str()])
        {
            check(t, s);
            let _ = t.encode_untruncated(s);
        }
        for max_len in [0, 1, 2, 3, 77, 1000] {
            let short = t.clone().with_max_len(max_len);
            for s in strange {
                let e = check(&short, s);
                assert_eq!(e.ids.len(), max_len.max(2));
            }
        }
    }
    let e = sd1.encode(&huge);
    assert!(e.dropped_text.unwrap().len() > 100_000);
    assert!(sd1.encode(&one_huge_word).untruncated_len > 77);
    let _ = sd1.decode(&[0, 1, 49406, 49407, 49408, u32::MAX]);
}

#[test]
fn paths_in_errors_are_the_given_ones() {
    let path = Path::new("/definitely/not/here/vocab.json");
    let err = ClipTokenizer::from_files(path, Path::new("/nope/merges.txt"), Padding::EndOfText)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "/definitely/not/here/vocab.json: file not found"
    );
}
