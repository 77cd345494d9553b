//! `.mlpackage` directories: the manifest, `model.mlmodel` and `weights/weight.bin`.
//!
//! Writing goes to a temporary directory beside the destination that is renamed into place
//! only when complete, so a failed write never leaves a half-written package.

use crate::blob::{BlobFile, BlobWriter};
#[cfg(doc)]
use crate::files::FileError;
use crate::files::{
    Confinement, MAX_JSON_BYTES, MAX_PROTOBUF_BYTES, read_regular, read_regular_string,
};
use crate::model_folder::{self, FolderKind};
use crate::proto::{read, write};
use crate::{MilError, Model};
use prost::Message;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use tracing::debug;

const AUTHOR: &str = "com.apple.CoreML";
const MODEL_PATH: &str = "com.apple.CoreML/model.mlmodel";
const WEIGHTS_PATH: &str = "com.apple.CoreML/weights";

/// One `itemInfoEntries` entry of the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestItem {
    /// The entry's identifier (a UUID, upper or lower case).
    pub id: String,
    /// Path below `Data/`.
    pub path: String,
    /// Item name ("model.mlmodel", "weights").
    pub name: String,
    /// Author ("com.apple.CoreML").
    pub author: String,
    /// Description.
    pub description: String,
}

/// A parsed `Manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// `fileFormatVersion`.
    pub file_format_version: String,
    /// Items.
    pub items: Vec<ManifestItem>,
    /// Identifier of the root model item.
    pub root_model_identifier: String,
}

impl Manifest {
    /// Reads and checks `<package>/Manifest.json`: version no newer than 1.0.0, every item
    /// complete and present on disk, the root item existing.
    ///
    /// Every path is resolved inside the package ([`Confinement`]): an item path that is
    /// absolute, climbs out with `..` or leads outside through a symbolic link is refused.
    pub fn read(package: &Path) -> Result<Self, MilError> {
        Self::read_confined(&Confinement::new(package)?)
    }

    fn read_confined(package: &Confinement) -> Result<Self, MilError> {
        let path = package.resolve("Manifest.json")?;
        let text = read_regular_string(&path, MAX_JSON_BYTES)?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| MilError::format(&path, "<json>", e.to_string()))?;
        let field = |name: &str| -> Result<&str, MilError> {
            v.get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| MilError::format(&path, name, "missing or not a string"))
        };
        let version = field("fileFormatVersion")?.to_string();
        let parts: Vec<u32> = version
            .split('.')
            .map(|p| p.parse().ok())
            .collect::<Option<_>>()
            .unwrap_or_default();
        if parts.len() != 3 {
            return Err(MilError::format(
                &path,
                "fileFormatVersion",
                format!("`{version}` is not major.minor.patch"),
            ));
        }
        if parts > vec![1, 0, 0] {
            return Err(MilError::format(
                &path,
                "fileFormatVersion",
                format!("{version} is newer than 1.0.0"),
            ));
        }
        let root = field("rootModelIdentifier")?.to_string();
        let entries = v
            .get("itemInfoEntries")
            .and_then(Value::as_object)
            .ok_or_else(|| {
                MilError::format(&path, "itemInfoEntries", "missing or not an object")
            })?;
        let mut items = Vec::new();
        for (id, e) in entries {
            let get = |k: &str| -> Result<String, MilError> {
                e.get(k)
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .ok_or_else(|| {
                        MilError::format(
                            &path,
                            format!("itemInfoEntries.{id}.{k}"),
                            "missing or not a string",
                        )
                    })
            };
            let item = ManifestItem {
                id: id.clone(),
                path: get("path")?,
                name: get("name")?,
                author: get("author")?,
                description: get("description")?,
            };
            match package.resolve_in("Data", &item.path) {
                Ok(_) => {}
                Err(e) if e.is_not_found() => {
                    return Err(MilError::format(
                        &path,
                        format!("itemInfoEntries.{id}.path"),
                        format!(
                            "{} does not exist",
                            package.root().join("Data").join(&item.path).display()
                        ),
                    ));
                }
                Err(e) => return Err(e.into()),
            }
            items.push(item);
        }
        let m = Manifest {
            file_format_version: version,
            items,
            root_model_identifier: root,
        };
        if m.root().is_none() {
            return Err(MilError::format(
                &path,
                "rootModelIdentifier",
                format!("no item `{}`", m.root_model_identifier),
            ));
        }
        Ok(m)
    }

    /// The item with this identifier (UUIDs compare case-insensitively).
    pub fn item(&self, id: &str) -> Option<&ManifestItem> {
        self.items.iter().find(|i| i.id.eq_ignore_ascii_case(id))
    }

    /// The root model item.
    pub fn root(&self) -> Option<&ManifestItem> {
        self.item(&self.root_model_identifier)
    }

    /// The Core ML weights item, if any.
    pub fn weights(&self) -> Option<&ManifestItem> {
        self.items
            .iter()
            .find(|i| i.name == "weights" && i.author == AUTHOR)
    }

    /// A manifest for a new package with fresh identifiers.
    pub fn new_package() -> Self {
        let id = || uuid::Uuid::new_v4().to_string().to_uppercase();
        let (model_id, weights_id) = (id(), id());
        Manifest {
            file_format_version: "1.0.0".into(),
            items: vec![
                ManifestItem {
                    id: model_id.clone(),
                    path: MODEL_PATH.into(),
                    name: "model.mlmodel".into(),
                    author: AUTHOR.into(),
                    description: "CoreML Model Specification".into(),
                },
                ManifestItem {
                    id: weights_id,
                    path: WEIGHTS_PATH.into(),
                    name: "weights".into(),
                    author: AUTHOR.into(),
                    description: "CoreML Model Weights".into(),
                },
            ],
            root_model_identifier: model_id,
        }
    }

    /// The manifest as Core ML writes it: sorted keys, 4-space indent, trailing newline.
    pub fn to_json(&self) -> String {
        let entries: serde_json::Map<String, Value> = self
            .items
            .iter()
            .map(|i| {
                (i.id.clone(), json!({"author": i.author, "description": i.description, "name": i.name, "path": i.path}))
            })
            .collect();
        let v = json!({
            "fileFormatVersion": self.file_format_version,
            "itemInfoEntries": entries,
            "rootModelIdentifier": self.root_model_identifier,
        });
        let mut out = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
        serde::Serialize::serialize(&v, &mut ser).expect("serializing a JSON value cannot fail");
        let mut s = String::from_utf8(out).expect("serde_json writes UTF-8");
        s.push('\n');
        s
    }
}

/// Reads an `.mlpackage`: manifest, `model.mlmodel` (checked against the op catalogue) and a
/// memory-mapped `weight.bin` whose blobs are read only when used.
pub fn read_package(package: impl AsRef<Path>) -> Result<Model, MilError> {
    let package = package.as_ref();
    model_folder::require_dir(package, ".mlpackage")?;
    let confined = Confinement::new(package)?;
    let manifest = Manifest::read_confined(&confined)?;
    let root = manifest.root().expect("checked by Manifest::read");
    let model_path = confined.resolve_in("Data", &root.path)?;
    let bytes = read_regular(&model_path, MAX_PROTOBUF_BYTES)?;
    let weights = match manifest.weights() {
        Some(item) => match confined.resolve_in("Data", &format!("{}/weight.bin", item.path)) {
            Ok(p) => Some(Arc::new(BlobFile::open(&p)?)),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e.into()),
        },
        None => None,
    };
    let pb = read::decode(&bytes, &model_path)?;
    let model = read::model_from_proto(&pb, weights, &model_path)?;
    debug!(package = %package.display(), spec = model.spec_version, "package read");
    Ok(model)
}

pub use crate::model_folder::Destination;

/// Names a package directory may hold at its top level.
const PACKAGE: FolderKind = FolderKind {
    foreign: "a directory that is not a Core ML package",
    entries: &["Manifest.json", "Data"],
    is_complete: |p| Manifest::read(p).is_ok(),
};

/// Looks at `dest` before a package is written there: [`Destination`] when it is missing, a
/// directory with nothing but a package's top-level entries (`Manifest.json`, `Data`), or
/// empty. Anything else — a regular file, a symbolic link, a FIFO or device node, or a
/// directory holding other things — is refused ([`FileError::RefuseToReplace`]), so a write
/// never replaces what a tool did not make, `overwrite` or not.
pub fn inspect_destination(dest: &Path) -> Result<Destination, MilError> {
    model_folder::inspect(dest, &PACKAGE)
}

/// Options for [`write_package`].
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteOptions {
    /// Replace a complete package at the destination.
    pub overwrite: bool,
}

/// Writes `model` as an `.mlpackage` at `dest`, streaming constants into `weight.bin`. The
/// package is assembled in a temporary directory beside `dest` and renamed into place when
/// complete. Refuses to replace a complete package at `dest` unless `options.overwrite`
/// (an empty or unfinished one is replaced), and refuses to replace anything that is not a
/// package directory even then (see [`inspect_destination`]).
pub fn write_package(
    model: &Model,
    dest: impl AsRef<Path>,
    options: WriteOptions,
) -> Result<(), MilError> {
    model_folder::write(dest.as_ref(), &PACKAGE, options.overwrite, |tmp| {
        write_into(model, tmp)
    })
}

fn write_into(model: &Model, dir: &Path) -> Result<(), MilError> {
    let data = dir.join("Data");
    let weights_dir = data.join(WEIGHTS_PATH);
    std::fs::create_dir_all(&weights_dir).map_err(|e| MilError::io(&weights_dir, e))?;
    let weight_path = weights_dir.join("weight.bin");
    let mut blobs = BlobWriter::create(&weight_path)?;
    let pb = write::model_to_proto(model, &mut blobs)?;
    blobs.finish_synced()?;
    let model_path = data.join(MODEL_PATH);
    std::fs::write(&model_path, pb.encode_to_vec()).map_err(|e| MilError::io(&model_path, e))?;
    let manifest_path = dir.join("Manifest.json");
    std::fs::write(&manifest_path, Manifest::new_package().to_json())
        .map_err(|e| MilError::io(&manifest_path, e))?;
    Ok(())
}
