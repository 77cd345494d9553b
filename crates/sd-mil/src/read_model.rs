//! Opening a model in either form: an `.mlpackage` or a compiled `.mlmodelc` folder.

use crate::{MilError, Model, compiled, package};
use std::path::Path;

/// Reads a Core ML model from an `.mlpackage` or a compiled `.mlmodelc` folder (told apart
/// by [`compiled::is_compiled`]); both give the same [`Model`].
pub fn read_model(path: impl AsRef<Path>) -> Result<Model, MilError> {
    let path = path.as_ref();
    if compiled::is_compiled(path) {
        compiled::read_compiled(path)
    } else {
        package::read_package(path)
    }
}
