//! [`Predictor`]: what the pipelines need of a loaded model — its signature and checked
//! predictions — so one pipeline runs the burn-backed [`Model`] or the CUDA engine.

use crate::backend::RtBackend;
use crate::error::Result;
use crate::model::Model;
use crate::tensor::Tensor;
use sd_mil::ModelDescription;
use std::collections::HashMap;

/// A loaded model that predicts.
pub trait Predictor: Send + Sync {
    /// The model's signature and metadata.
    fn description(&self) -> &ModelDescription;

    /// Runs the model on named inputs and returns the named outputs ([`Model::predict`]).
    fn predict(&self, inputs: &HashMap<String, Tensor>) -> Result<HashMap<String, Tensor>>;

    /// Runs the model; an output holding NaN or infinity is an error
    /// ([`crate::RuntimeError::NonFiniteOutput`]), as [`Model::predict_checked`] says.
    fn predict_checked(&self, inputs: &HashMap<String, Tensor>) -> Result<HashMap<String, Tensor>>;
}

impl<B: RtBackend> Predictor for Model<B>
where
    Model<B>: Send + Sync,
{
    fn description(&self) -> &ModelDescription {
        Model::description(self)
    }

    fn predict(&self, inputs: &HashMap<String, Tensor>) -> Result<HashMap<String, Tensor>> {
        Model::predict(self, inputs)
    }

    fn predict_checked(&self, inputs: &HashMap<String, Tensor>) -> Result<HashMap<String, Tensor>> {
        Model::predict_checked(self, inputs)
    }
}
