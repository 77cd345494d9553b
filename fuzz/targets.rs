//! The fuzz targets: one function per reader of untrusted input, shared by the libFuzzer
//! binaries in `fuzz/fuzz_targets/` (`cargo xtask fuzz`) and by the replay test of the committed
//! corpora and regression inputs (`xtask/tests/fuzz_replay.rs`, part of `cargo test`).
//!
//! Every target feeds the bytes to the toolkit's public API and ignores the result: an error
//! is the right answer to bad input; a panic, hang or runaway allocation is the bug a fuzzer
//! reports. Readers that take paths get the bytes written to a scratch file of this process.

use std::path::{Path, PathBuf};

/// Every target's name, in the order `cargo xtask fuzz` runs them.
pub const TARGETS: &[&str] = &[
    "weight_bin",
    "model_proto",
    "manifest",
    "package",
    "safetensors",
    "pickle",
    "config",
    "image",
    "prompt",
    "tokenizer_files",
    "recipe",
    "hub_listing",
    "mil_text",
    "compiled",
    "http_request",
];

/// libFuzzer's per-input time limit for target `name` (`-timeout`), in seconds: a hang
/// detector set well above the slowest input seen under AddressSanitizer. `http_request` runs
/// whole generations (a 2-step img2img on sd1-tiny took up to 34 s on one thread under ASan),
/// so it waits [`HTTP_ANSWER_SECONDS`] for an answer and gets half a minute more.
pub fn timeout_seconds(name: &str) -> u64 {
    if name == "http_request" {
        HTTP_ANSWER_SECONDS + 30
    } else {
        20
    }
}

/// Runs target `name` on `data`; unknown names panic (a harness bug, not an input bug).
pub fn run(name: &str, data: &[u8]) {
    match name {
        "weight_bin" => weight_bin(data),
        "model_proto" => model_proto(data),
        "manifest" => manifest(data),
        "package" => package(data),
        "safetensors" => safetensors(data),
        "pickle" => pickle(data),
        "config" => config(data),
        "image" => image(data),
        "prompt" => prompt(data),
        "tokenizer_files" => tokenizer_files(data),
        "recipe" => recipe(data),
        "hub_listing" => hub_listing(data),
        "mil_text" => mil_text(data),
        "compiled" => compiled(data),
        "http_request" => http_request(data),
        other => panic!("no fuzz target `{other}`"),
    }
}

/// A scratch folder of this process (and thread), emptied on every call.
fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sd-fuzz-{}-{:?}-{tag}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating the fuzz scratch folder");
    dir
}

fn write(path: &Path, data: &[u8]) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("creating a scratch folder");
    }
    std::fs::write(path, data).expect("writing a scratch file");
}

/// `weight.bin`: the header, then every blob record and its data.
fn weight_bin(data: &[u8]) {
    let dir = scratch("weight_bin");
    let path = dir.join("weight.bin");
    write(&path, data);
    if let Ok(file) = sd_mil::blob::BlobFile::open(&path) {
        for blob in file.iter().take(10_000) {
            let Ok(blob) = blob else { break };
            let _ = file.blob_typed(blob.metadata_offset, blob.dtype);
        }
    }
}

/// `model.mlmodel`: protobuf decoding and the MIL program's checks against the catalogue.
fn model_proto(data: &[u8]) {
    let path = Path::new("fuzz/model.mlmodel");
    if let Ok(pb) = sd_mil::proto::read::decode(data, path)
        && let Ok(model) = sd_mil::proto::read::model_from_proto(&pb, None, path)
    {
        let _ =
            sd_mil::mil_text::program_text(&model.program, &mut sd_mil::mil_text::stored_offsets);
    }
}

/// A `weight.bin` with no blobs: the 64-byte header (count 0, version 2).
fn empty_weights() -> [u8; 64] {
    let mut header = [0u8; 64];
    header[4] = 2;
    header
}

/// `model.mlmodel` of a valid one-op program (`y = relu(x)`), made once per thread.
fn one_op_model() -> Vec<u8> {
    use sd_mil::{DType, Opset, TensorType, builder::FunctionBuilder};
    thread_local! {
        static MODEL: Vec<u8> = {
            let mut f = FunctionBuilder::new(Opset::CoreML7);
            let x = f.input("x", TensorType::new(DType::F32, [1, 4])).expect("input");
            let y = f.op("relu").input("x", &x).build_one().expect("relu");
            let main = f.finish(&[&y]).expect("function");
            let model = sd_mil::Model::from_program(sd_mil::Program::with_main(main))
                .expect("model");
            let dir = scratch("one_op").join("m.mlpackage");
            sd_mil::package::write_package(&model, &dir, Default::default()).expect("writing");
            std::fs::read(dir.join("Data/com.apple.CoreML/model.mlmodel")).expect("reading")
        };
    }
    MODEL.with(Clone::clone)
}

/// `Manifest.json` of a package whose model and weights are valid.
fn manifest(data: &[u8]) {
    let dir = scratch("manifest").join("m.mlpackage");
    write(&dir.join("Manifest.json"), data);
    write(
        &dir.join("Data/com.apple.CoreML/model.mlmodel"),
        &one_op_model(),
    );
    write(
        &dir.join("Data/com.apple.CoreML/weights/weight.bin"),
        &empty_weights(),
    );
    let _ = sd_mil::package::read_package(&dir);
}

/// A whole `.mlpackage`: the bytes hold `Manifest.json`, `model.mlmodel` and `weight.bin`
/// (see [`split_package`]); the package is read, every constant's data decoded and the main
/// function planned for the CPU executor.
fn package(data: &[u8]) {
    let Some([manifest, model, weights]) = split_package(data) else {
        return;
    };
    let dir = scratch("package").join("m.mlpackage");
    write(&dir.join("Manifest.json"), manifest);
    write(&dir.join("Data/com.apple.CoreML/model.mlmodel"), model);
    write(
        &dir.join("Data/com.apple.CoreML/weights/weight.bin"),
        weights,
    );
    let Ok(model) = sd_mil::package::read_package(&dir) else {
        return;
    };
    let Some(main) = model.program.main() else {
        return;
    };
    // Only models whose values are small: the planner allocates every constant.
    let small = main.operations.iter().all(|op| {
        op.outputs.iter().all(|v| {
            v.ty.shape
                .iter()
                .try_fold(1usize, |a, d| a.checked_mul(*d))
                .is_some_and(|n| n <= 1 << 22)
        })
    });
    if small {
        let _ = sd_runtime::Model::<sd_runtime::Cpu>::plan(
            main,
            model.description.clone(),
            sd_runtime::LoadOptions::default(),
            &sd_runtime::kernels::Registry::default(),
        );
    }
}

/// Splits `[u32 LE manifest length][u32 LE model length][manifest][model][weights]`.
pub fn split_package(data: &[u8]) -> Option<[&[u8]; 3]> {
    split_files(data)
}

/// Joins the three files of a package as [`split_package`] reads them.
pub fn join_package(manifest: &[u8], model: &[u8], weights: &[u8]) -> Vec<u8> {
    join_files(&[manifest, model, weights])
}

/// Splits `N` files joined as `[u32 LE length of each but the last]…[file 1]…[file N]`.
pub fn split_files<const N: usize>(data: &[u8]) -> Option<[&[u8]; N]> {
    let heads = (N - 1) * 4;
    let mut rest = data.get(heads..)?;
    let mut out = [&[][..]; N];
    for (i, slot) in out.iter_mut().enumerate().take(N - 1) {
        let len = u32::from_le_bytes(data.get(i * 4..i * 4 + 4)?.try_into().ok()?) as usize;
        *slot = rest.get(..len)?;
        rest = &rest[len..];
    }
    out[N - 1] = rest;
    Some(out)
}

/// Joins files as [`split_files`] reads them.
pub fn join_files(files: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in &files[..files.len().saturating_sub(1)] {
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
    }
    for f in files {
        out.extend_from_slice(f);
    }
    out
}

/// The weights the `mil_text` target's `BLOBFILE` references resolve to: those of the
/// hand-written iOS18 fixture (fp16, uint8, int8, uint4, … blobs).
const MIL_TEXT_WEIGHTS: &[u8] =
    include_bytes!("../crates/sd-mil/tests/fixtures/mil_text/weights/spec9.bin");

/// `model.mil`: MIL text parsed (BLOBFILE paths resolved to a small weight file), checked
/// against the catalogue, and — when it parses — printed and parsed again, which must work.
fn mil_text(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let dir = scratch("mil_text");
    let weights = dir.join("weight.bin");
    write(&weights, MIL_TEXT_WEIGHTS);
    let file =
        std::sync::Arc::new(sd_mil::blob::BlobFile::open(&weights).expect("fixture weights"));
    let mut resolve = |path: &str| {
        if path == "@model_path/weights/weight.bin" {
            Ok(file.clone())
        } else {
            Err(format!("no {path}"))
        }
    };
    let Ok(program) = sd_mil::mil_text::parse_program(text, &mut resolve) else {
        return;
    };
    let _ = sd_mil::graph::check_program(&program);
    if let Ok(printed) =
        sd_mil::mil_text::program_text(&program, &mut sd_mil::mil_text::stored_offsets)
        && let Err(e) = sd_mil::mil_text::parse_program(&printed, &mut resolve)
    {
        panic!("printed MIL text does not parse back: {e}\n{printed}");
    }
}

/// A whole `.mlmodelc`: the bytes hold `model.mil`, `coremldata.bin`, `metadata.json` and
/// `weight.bin` (see [`split_files`]); the folder is read as the CLI reads it.
fn compiled(data: &[u8]) {
    let Some([mil, coremldata, metadata, weights]) = split_files::<4>(data) else {
        return;
    };
    let dir = scratch("compiled").join("m.mlmodelc");
    write(&dir.join("model.mil"), mil);
    write(&dir.join("coremldata.bin"), coremldata);
    if !metadata.is_empty() {
        write(&dir.join("metadata.json"), metadata);
    }
    write(&dir.join("weights/weight.bin"), weights);
    let _ = sd_mil::read_model(&dir);
}

/// A safetensors file, through the converter's weight store (header checks, every small
/// tensor decoded) and the runtime's tensor reader.
fn safetensors(data: &[u8]) {
    let dir = scratch("safetensors");
    let path = dir.join("model.safetensors");
    write(&path, data);
    read_weights(&dir, &path);
    let _ = sd_runtime::Tensor::read_safetensors(&path);
}

/// A PyTorch checkpoint: a legacy pickle stream or a zip archive (`.bin`, `.ckpt`, `.pt`).
fn pickle(data: &[u8]) {
    let dir = scratch("pickle");
    let path = dir.join("model.bin");
    write(&path, data);
    read_weights(&dir, &path);
}

fn read_weights(dir: &Path, path: &Path) {
    let Ok(store) = sd_convert::weights::WeightStore::open_files(dir, &[path.to_path_buf()]) else {
        return;
    };
    let names: Vec<String> = store.names().map(str::to_string).collect();
    for name in names {
        if let Ok(shape) = store.shape(&name)
            && shape.iter().product::<usize>() <= 1 << 20
        {
            let _ = store.read_f32(&name, &shape);
        }
    }
}

/// A `config.json`; the first byte picks which (UNet, ControlNet, VAE, CLIP text, safety
/// checker), the rest is the JSON, parsed and checked as the converter does.
fn config(data: &[u8]) {
    use sd_convert::config::*;
    let Some((&kind, json)) = data.split_first() else {
        return;
    };
    let path = Path::new("fuzz/config.json");
    match kind % 5 {
        0 | 1 => {
            if let Ok(c) = serde_json::from_slice::<UNetConfig>(json) {
                let _ = c.check(path, kind % 5 == 1);
            }
        }
        2 => {
            if let Ok(c) = serde_json::from_slice::<VaeConfig>(json) {
                let _ = c.check(path);
            }
        }
        3 => {
            if let Ok(c) = serde_json::from_slice::<ClipTextConfig>(json) {
                let _ = c.check(path);
            }
        }
        _ => {
            if let Ok(c) = serde_json::from_slice::<SafetyCheckerConfig>(json) {
                let _ = c.check(path);
            }
        }
    }
}

/// A PNG or JPEG start image, control image or mask.
fn image(data: &[u8]) {
    use sd_runtime::pipeline::image::decode_image_within;
    if let Ok(img) = decode_image_within(data, "fuzz image", 1024) {
        let _ = img.luma();
        let _ = img.inpaint_conditioning();
    }
}

/// A prompt (any bytes, as lossy UTF-8) through sd1-tiny's CLIP tokenizer.
fn prompt(data: &[u8]) {
    thread_local! {
        static TOKENIZER: sd_runtime::pipeline::tokenizer::ClipTokenizer = {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/models/sd1-tiny/tokenizer");
            sd_runtime::pipeline::tokenizer::ClipTokenizer::from_dir(&dir)
                .expect("sd1-tiny's tokenizer loads")
        };
    }
    let text = String::from_utf8_lossy(data);
    TOKENIZER.with(|t| {
        let _ = t.encode(&text);
    });
}

/// A tokenizer folder: `vocab.json` and `merges.txt` from the bytes (split at the first NUL).
fn tokenizer_files(data: &[u8]) {
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let (vocab, merges) = (&data[..split], data.get(split + 1..).unwrap_or(&[]));
    let dir = scratch("tokenizer");
    write(&dir.join("vocab.json"), vocab);
    write(&dir.join("merges.txt"), merges);
    if let Ok(t) = sd_runtime::pipeline::tokenizer::ClipTokenizer::from_files(
        &dir.join("vocab.json"),
        &dir.join("merges.txt"),
        Default::default(),
    ) {
        let _ = t.encode("a photo of an astronaut riding a horse");
    }
}

/// A mixed-bit recipe (`sd compress --recipe`) and a pre-analysis file (`--analyze`).
fn recipe(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = sd_compress::recipe::parse_recipe(&text);
    let _ = sd_compress::analysis::parse_pre_analysis(&text);
}

/// A Hugging Face Hub revision listing (`/api/models/<repo>/revision/<rev>`).
fn hub_listing(data: &[u8]) {
    let repo = sd_cli::hub::RepoId::parse("org/name").expect("a valid repo id");
    let _ = sd_cli::hub::parse_listing(&repo, &String::from_utf8_lossy(data));
}

/// How long `sd serve` may stay silent on one fuzz request before the target reports a hang:
/// four times the slowest generation seen under AddressSanitizer (34 s).
pub const HTTP_ANSWER_SECONDS: u64 = 150;

/// One HTTP request (request line, header lines, a blank line, the body) sent over a loopback
/// connection to `sd serve`'s application on sd1-tiny: the Host/Origin guards, routing, every
/// API's JSON and parameter checks, base64 images, and — for a request that passes them all —
/// a generation (at most 3 steps, 2 images). The harness frames the request itself (the
/// input's own `Content-Length`, `Transfer-Encoding` and `Connection` lines are dropped; the
/// body's length and `Connection: close` are added) so that the server always has a whole
/// request and then closes: no answer within [`HTTP_ANSWER_SECONDS`] is a hang, and a 500 is a
/// handler that failed on its input.
fn http_request(data: &[u8]) {
    use std::io::{ErrorKind, Read, Write};
    let address = fuzz_server();
    let mut stream = std::net::TcpStream::connect(address).expect("connecting to the fuzz server");
    let limit = std::time::Duration::from_secs(HTTP_ANSWER_SECONDS);
    stream.set_read_timeout(Some(limit)).expect("read timeout");
    stream
        .set_write_timeout(Some(limit))
        .expect("write timeout");
    // The server may answer and close before reading all of a bad request.
    let _ = stream.write_all(&frame_http_request(data));
    let mut answer = Vec::new();
    if let Err(e) = (&mut stream).take(16 << 20).read_to_end(&mut answer)
        && matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
    {
        panic!("sd serve did not answer within {HTTP_ANSWER_SECONDS} s");
    }
    if let Some(status) = answer
        .strip_prefix(b"HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
    {
        assert!(
            status != b"500",
            "sd serve answered 500:\n{}",
            String::from_utf8_lossy(&answer[..answer.len().min(2000)])
        );
    }
}

/// `data` as one whole HTTP/1.1 request: its head (up to the first blank line) with CRLF line
/// ends and without framing headers, then `Content-Length` of the rest and `Connection: close`.
pub fn frame_http_request(data: &[u8]) -> Vec<u8> {
    let blank = [&b"\r\n\r\n"[..], b"\n\n"]
        .iter()
        .filter_map(|sep| {
            data.windows(sep.len())
                .position(|w| w == *sep)
                .map(|at| (at, at + sep.len()))
        })
        .min();
    let (head, body) = match blank {
        Some((end, body)) => (&data[..end], &data[body..]),
        None => (data, &[][..]),
    };
    let mut out = Vec::with_capacity(data.len() + 64);
    for line in head.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let name = line.split(|&b| b == b':').next().unwrap_or(b"");
        let framing = [&b"content-length"[..], b"transfer-encoding", b"connection"]
            .iter()
            .any(|f| name.trim_ascii().eq_ignore_ascii_case(f));
        if !framing {
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    out.extend_from_slice(body);
    out
}

/// `sd serve` on sd1-tiny (converted once into a cache shared by the fuzzing processes), on a
/// free loopback port, with small limits; started by the first request of this process.
fn fuzz_server() -> std::net::SocketAddr {
    use sd_cli::server::{Engine, EngineOptions, Limits, ServeOptions, Server};
    static SERVER: std::sync::OnceLock<Server> = std::sync::OnceLock::new();
    SERVER
        .get_or_init(|| {
            let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/models/sd1-tiny");
            let cache = sd_cli::CacheOptions {
                cache_root: Some(std::env::temp_dir().join("sd-fuzz-serve-cache")),
                ..Default::default()
            };
            let folder = sd_cli::prepare(&model, &cache)
                .expect("converting sd1-tiny for the fuzz server")
                .folder;
            let limits = Limits {
                max_body_bytes: 1 << 20,
                max_steps: 3,
                max_images: 2,
                max_image_side: 256,
                max_queued: 2,
                kept_jobs: 4,
                ..Limits::default()
            };
            let engine = Engine::start::<sd_runtime::Cpu>(
                &folder,
                sd_runtime::pipeline::PipelineOptions::new(
                    sd_runtime::Precision::Program,
                    Default::default(),
                ),
                EngineOptions {
                    model_name: None,
                    output: None,
                    max_queued: limits.max_queued,
                    kept_jobs: limits.kept_jobs,
                },
            )
            .expect("starting the fuzz server's engine");
            Server::start(
                engine,
                ServeOptions {
                    bind: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
                    limits,
                    safety_check: false,
                    saves_images: false,
                },
            )
            .expect("starting the fuzz server")
        })
        .address()
}
