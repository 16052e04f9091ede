//! Weights as files hold them: read the files (PyTorch zip pickles,
//! TorchScript archives or safetensors), map every naming variant to the
//! official names, and refuse anything missing, unexpected or wrongly
//! shaped against what a model expects ([`record_tensors`] learns that from
//! the model's own code). SPACE-CLIP checkpoints go through `StateDict`;
//! whole CLIPs for zero-shot models (OpenAI, OpenCLIP, Hugging Face) through
//! `ClipStateDict`; BLIP-2s through `Blip2StateDict`. Below the models:
//! nothing here knows a model's architecture.

mod blip2;
mod clip_model;
mod expected;
mod file;
mod names;
mod random;
mod save;
mod state_dict;
mod torchscript;

pub use blip2::{Blip2Format, Blip2StateDict};
pub use clip_model::{ClipLayout, ClipStateDict};
pub use expected::{record_tensors, ExpectedTensor};
pub use file::{read_tensor_file, FileFormat, TensorFile};
pub use names::{canonical_name, is_backbone, training_name, NameClass, BACKBONE_PREFIX};
pub use random::{fill_uniform, random_tensors};
pub use save::{read_safetensors, write_safetensors};
pub use state_dict::{MismatchReport, StateDict};
pub use torchscript::{is_torchscript, read_torchscript};
