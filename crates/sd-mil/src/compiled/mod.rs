//! Compiled models (`.mlmodelc`): the form Apple's Swift package, `StableDiffusionSample` and
//! Core ML on a device load, read and written without Apple's compiler.
//!
//! A compiled ML program is a folder:
//!
//! ```text
//! Unet.mlmodelc/
//!   model.mil                 the program as MIL text (see crate::mil_text)
//!   coremldata.bin            header + the ModelDescription protobuf (inputs, outputs, metadata)
//!   metadata.json             a readable summary (schema, op histogram, user metadata)
//!   analytics/coremldata.bin  a small key/value record
//!   weights/weight.bin        the same blob file an .mlpackage holds
//! ```
//!
//! [`read_compiled`] yields the same [`Model`] that [`read_package`](crate::package::read_package)
//! gives for the package it came from; [`write_compiled`] lays a model out that way, copying
//! the package's `weight.bin` byte for byte when the model was read from one.
//!
//! ```
//! use sd_mil::builder::FunctionBuilder;
//! use sd_mil::compiled::{read_compiled, write_compiled};
//! use sd_mil::package::WriteOptions;
//! use sd_mil::{DType, Model, Opset, Program, TensorType};
//!
//! let mut f = FunctionBuilder::new(Opset::CoreML7);
//! let x = f.input("x", TensorType::new(DType::F16, [1, 4])).unwrap();
//! let y = f.op("relu").input("x", &x).name("y").build_one().unwrap();
//! let model = Model::from_program(Program::with_main(f.finish(&[&y]).unwrap())).unwrap();
//! let dir = std::env::temp_dir().join(format!("sd-mil-compiled-doc-{}", std::process::id()));
//! let dest = dir.join("Relu.mlmodelc");
//! write_compiled(&model, &dest, WriteOptions::default()).unwrap();
//! let back = read_compiled(&dest).unwrap();
//! assert_eq!(back.description, model.description);
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```

pub mod coremldata;
mod metadata_json;

use crate::blob::{BlobFile, BlobWriter};
use crate::files::{
    Confinement, MAX_JSON_BYTES, MAX_PROTOBUF_BYTES, read_regular, read_regular_string,
};
use crate::mil_text::{self, parse_program, program_text};
use crate::model_folder::{self, Destination, FolderKind};
use crate::package::WriteOptions;
use crate::proto::{read, write};
use crate::{ConstData, MilError, Model};
use base64::Engine;
use sha2::Digest;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use tracing::debug;

/// The program text.
pub const MODEL_MIL: &str = "model.mil";
/// The header with the description.
pub const COREMLDATA: &str = "coremldata.bin";
/// The readable summary.
pub const METADATA_JSON: &str = "metadata.json";
/// The weights, relative to the folder (what `@model_path/` in a `BLOBFILE` path stands for).
pub const WEIGHTS: &str = "weights/weight.bin";
/// The analytics record.
pub const ANALYTICS: &str = "analytics/coremldata.bin";

/// Size limit for `model.mil`: 256 MiB (a full-size UNet's text is a few MiB; weights live in
/// `weight.bin`).
pub const MAX_MIL_TEXT_BYTES: u64 = 256 << 20;

/// The prefix of every `BLOBFILE` path: the folder of the compiled model.
const MODEL_PATH_PREFIX: &str = "@model_path/";

const COMPILED: FolderKind = FolderKind {
    foreign: "a directory that is not a compiled Core ML model",
    entries: &[MODEL_MIL, COREMLDATA, METADATA_JSON, "weights", "analytics"],
    is_complete: |p| {
        [MODEL_MIL, COREMLDATA, METADATA_JSON]
            .iter()
            .all(|f| p.join(f).is_file())
    },
};

/// Whether `path` is a compiled model folder (named `*.mlmodelc`, or holding `model.mil` or
/// `coremldata.bin`) rather than an `.mlpackage`.
pub fn is_compiled(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "mlmodelc")
        || path.join(MODEL_MIL).exists()
        || path.join(COREMLDATA).exists()
}

/// Reads a compiled model: the description from `coremldata.bin`, the program from
/// `model.mil` (its `BLOBFILE` references resolved inside the folder and checked against the
/// blobs), checked against the op catalogue and the description; `metadata.json`, when
/// present, must agree with them.
pub fn read_compiled(dir: impl AsRef<Path>) -> Result<Model, MilError> {
    let dir = dir.as_ref();
    model_folder::require_dir(dir, ".mlmodelc")?;
    let confined = Confinement::new(dir)?;
    let data_path = confined.resolve(COREMLDATA)?;
    let (spec_version, desc) =
        coremldata::decode(&read_regular(&data_path, MAX_PROTOBUF_BYTES)?, &data_path)?;
    let description = read::description_from_proto(&desc, &data_path)?;
    let mil_path = confined.resolve(MODEL_MIL)?;
    let text = read_regular_string(&mil_path, MAX_MIL_TEXT_BYTES)?;
    let mut files: HashMap<String, Arc<BlobFile>> = HashMap::new();
    let mut resolve = |blob_path: &str| -> Result<Arc<BlobFile>, String> {
        if let Some(f) = files.get(blob_path) {
            return Ok(f.clone());
        }
        let relative = blob_path.strip_prefix(MODEL_PATH_PREFIX).ok_or_else(|| {
            format!("BLOBFILE path `{blob_path}` does not start with {MODEL_PATH_PREFIX}")
        })?;
        let p = confined.resolve(relative).map_err(|e| e.to_string())?;
        let f = Arc::new(BlobFile::open(&p).map_err(|e| e.to_string())?);
        files.insert(blob_path.to_string(), f.clone());
        Ok(f)
    };
    let program = parse_program(&text, &mut resolve).map_err(|source| MilError::Text {
        path: mil_path.clone(),
        source,
    })?;
    let model = Model {
        spec_version,
        description,
        program,
    };
    read::check_model(&model, &data_path, &mil_path)?;
    match confined.resolve(METADATA_JSON) {
        Ok(p) => metadata_json::check(&read_regular_string(&p, MAX_JSON_BYTES)?, &model, &p)?,
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e.into()),
    }
    debug!(model = %dir.display(), spec = model.spec_version, "compiled model read");
    Ok(model)
}

/// Looks at `dest` before a compiled model is written there (see
/// [`package::inspect_destination`](crate::package::inspect_destination)): only a missing
/// path, an empty directory or a compiled model folder may be replaced.
pub fn inspect_destination(dest: &Path) -> Result<Destination, MilError> {
    model_folder::inspect(dest, &COMPILED)
}

/// Writes `model` as a compiled model folder at `dest` (assembled beside it and renamed into
/// place). When every weight of the model lives in one `weight.bin` (a model read from a
/// package or a compiled model), that file is copied byte for byte and the offsets kept;
/// otherwise the weights are written afresh by the rules `.mlpackage` writing uses.
pub fn write_compiled(
    model: &Model,
    dest: impl AsRef<Path>,
    options: WriteOptions,
) -> Result<(), MilError> {
    let dest = dest.as_ref();
    let class_name = class_name(dest);
    model_folder::write(dest, &COMPILED, options.overwrite, |tmp| {
        write_into(model, tmp, &class_name)
    })
}

/// The class name Xcode would generate for the model: its file stem, with every character
/// that cannot be in a Swift identifier replaced by `_`.
fn class_name(dest: &Path) -> String {
    let stem = dest
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    stem.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// How a compiled model's weights are written.
enum Weights {
    /// Every stored constant lives in this one `weight.bin` and nothing else needs a blob: the
    /// file is copied and the offsets kept.
    Copy(Arc<BlobFile>),
    /// Written afresh by the package rules.
    Fresh,
    /// No constant needs a blob.
    None,
}

fn weights_of(model: &Model) -> Weights {
    let mut file: Option<&Arc<BlobFile>> = None;
    let mut fresh = false;
    for v in model.program.constants() {
        match &v.data {
            ConstData::Blob { file: f, .. } => {
                fresh |= file.is_some_and(|seen| !Arc::ptr_eq(seen, f));
                file = Some(f);
            }
            _ => fresh |= write::goes_to_blob(v, model.spec_version),
        }
    }
    match (file, fresh) {
        (_, true) => Weights::Fresh,
        (Some(f), false) => Weights::Copy(f.clone()),
        (None, false) => Weights::None,
    }
}

/// `dir/name`, its parent folder created.
fn create_parent(dir: &Path, name: &str) -> Result<std::path::PathBuf, MilError> {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).map_err(|e| MilError::io(parent, e))?;
    }
    Ok(p)
}

fn write_into(model: &Model, dir: &Path, class_name: &str) -> Result<(), MilError> {
    let put = |name: &str, bytes: &[u8]| -> Result<(), MilError> {
        let p = create_parent(dir, name)?;
        std::fs::write(&p, bytes).map_err(|e| MilError::io(&p, e))
    };
    let text = match weights_of(model) {
        Weights::Copy(file) => {
            put(WEIGHTS, file.bytes())?;
            program_text(&model.program, &mut mil_text::stored_offsets)?
        }
        Weights::Fresh => {
            let mut blobs = BlobWriter::create(create_parent(dir, WEIGHTS)?)?;
            let mut sink = write::BlobSink::new(&mut blobs, model.spec_version);
            let text = program_text(&model.program, &mut |v| sink.place(v))?;
            blobs.finish_synced()?;
            text
        }
        Weights::None => program_text(&model.program, &mut |_| Ok(None))?,
    };
    put(MODEL_MIL, text.as_bytes())?;
    let desc = write::description_to_proto(&model.description);
    put(COREMLDATA, &coremldata::encode(model.spec_version, &desc))?;
    let hash =
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(text.as_bytes()));
    put(ANALYTICS, &coremldata::encode_analytics(&hash))?;
    put(
        METADATA_JSON,
        metadata_json::encode(model, class_name).as_bytes(),
    )?;
    Ok(())
}
