//! The CLIP text transformer's architecture (OpenAI's defaults: the text
//! tower of every OpenAI CLIP but the large ones).

use crate::model::Activation;

#[derive(Debug, Clone, PartialEq)]
pub struct TextConfig {
    pub vocab_size: usize,
    /// Positions (77 for every CLIP): prompts are padded to it.
    pub context_length: usize,
    pub width: usize,
    pub heads: usize,
    pub layers: usize,
    pub intermediate_size: usize,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
    /// Width of the joint text-image space (`text_projection`'s output).
    pub embed_dim: usize,
}

impl Default for TextConfig {
    fn default() -> Self {
        Self {
            vocab_size: 49408,
            context_length: 77,
            width: 512,
            heads: 8,
            layers: 12,
            intermediate_size: 2048,
            hidden_act: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
            embed_dim: 512,
        }
    }
}

impl TextConfig {
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("context_length", self.context_length),
            ("width", self.width),
            ("heads", self.heads),
            ("layers", self.layers),
            ("intermediate_size", self.intermediate_size),
            ("embed_dim", self.embed_dim),
        ] {
            if v == 0 {
                return Err(format!("text tower: {name} must be positive"));
            }
        }
        if !self.width.is_multiple_of(self.heads) {
            return Err(format!("text tower: width {} is not divisible by {} heads", self.width, self.heads));
        }
        if self.context_length < 3 {
            return Err(format!("text tower: context length {} cannot hold a prompt", self.context_length));
        }
        Ok(())
    }
}
