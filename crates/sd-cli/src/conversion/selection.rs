//! Which networks a job converts, in which order, and which of them are compressed or chunked.

use crate::hub::{ResolveError, resolve};
use sd_convert::Component;
use std::path::PathBuf;

/// The networks asked for, as `sd convert`'s `--convert-*` flags name them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ComponentSelection {
    /// `--convert-text-encoder`.
    pub text_encoder: bool,
    /// `--convert-unet`.
    pub unet: bool,
    /// `--unet-support-controlnet`: the UNet is written as a control-unet.
    pub unet_support_controlnet: bool,
    /// `--convert-vae-decoder`.
    pub vae_decoder: bool,
    /// `--convert-vae-encoder`.
    pub vae_encoder: bool,
    /// `--convert-safety-checker`.
    pub safety_checker: bool,
    /// `--convert-controlnet`: local folders or cached Hub ids.
    pub controlnets: Vec<String>,
    /// `--convert-multilingual-projection`.
    pub multilingual_projection: Option<PathBuf>,
}

impl ComponentSelection {
    /// The components in conversion order (text encoder, UNet, VAE decoder, VAE encoder,
    /// ControlNets, safety checker, projection), ControlNet names resolved.
    pub fn components(&self) -> Result<Vec<Component>, ResolveError> {
        let mut out = Vec::new();
        if self.text_encoder {
            out.push(Component::TextEncoder);
        }
        if self.unet {
            out.push(if self.unet_support_controlnet {
                Component::ControlUnet
            } else {
                Component::Unet
            });
        }
        if self.vae_decoder {
            out.push(Component::VaeDecoder);
        }
        if self.vae_encoder {
            out.push(Component::VaeEncoder);
        }
        for c in &self.controlnets {
            out.push(Component::ControlNet(resolve(c)?));
        }
        if self.safety_checker {
            out.push(Component::SafetyChecker);
        }
        if let Some(p) = &self.multilingual_projection {
            out.push(Component::MultilingualProjection(p.clone()));
        }
        Ok(out)
    }
}

/// Whether `--quantize-nbits` applies to `c`: text encoder, UNets and ControlNets. VAE halves
/// and the safety checker stay uncompressed, as in Apple's converter; so does the projection
/// (Apple's script never compresses it).
pub fn palettizes(c: &Component) -> bool {
    !matches!(
        c,
        Component::VaeDecoder
            | Component::VaeEncoder
            | Component::SafetyChecker
            | Component::MultilingualProjection(_)
    )
}

/// Whether `--chunk-unet` applies to `c`: the UNet and the control-unet.
pub fn chunks(c: &Component) -> bool {
    matches!(c, Component::Unet | Component::ControlUnet)
}

/// Whether the components need no diffusers folder (only the multilingual projection).
pub fn needs_no_model(components: &[Component]) -> bool {
    !components.is_empty()
        && components
            .iter()
            .all(|c| matches!(c, Component::MultilingualProjection(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_and_policies_follow_torch2coreml() {
        let s = ComponentSelection {
            text_encoder: true,
            unet: true,
            unet_support_controlnet: true,
            vae_decoder: true,
            safety_checker: true,
            ..Default::default()
        };
        let c = s.components().unwrap();
        assert_eq!(
            c,
            [
                Component::TextEncoder,
                Component::ControlUnet,
                Component::VaeDecoder,
                Component::SafetyChecker
            ]
        );
        assert!(palettizes(&c[0]) && palettizes(&c[1]) && !palettizes(&c[2]));
        assert!(chunks(&c[1]) && !chunks(&c[0]));
        assert!(!needs_no_model(&c) && !needs_no_model(&[]));
        assert!(needs_no_model(&[Component::MultilingualProjection(
            "p".into()
        )]));
    }
}
