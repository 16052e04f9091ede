//! Loading weights strictly: read the files (PyTorch zip pickles,
//! TorchScript archives or safetensors), map every naming variant to the
//! official names, and refuse anything missing, unexpected or wrongly shaped
//! before building. SPACE-CLIP checkpoints go through `StateDict`; whole
//! CLIPs for zero-shot models (OpenAI, OpenCLIP, Hugging Face) through
//! `ClipStateDict`.

mod blip2;
mod clip_model;
mod expected;
mod file;
mod infer;
mod names;
mod random;
mod random_clip;
mod save;
mod state_dict;
mod torchscript;

pub use blip2::{Blip2Format, Blip2StateDict};
pub use clip_model::{ClipLayout, ClipStateDict};
pub use expected::{expected_tensors, record_tensors, ExpectedTensor};
pub use infer::{infer_architecture, InferredArchitecture};
pub use file::{read_tensor_file, FileFormat, TensorFile};
pub use names::{canonical_name, is_backbone, training_name, NameClass};
pub use random::random_state_dict;
pub use random_clip::{random_blip2_state_dict, random_clip_state_dict};
pub use save::{read_safetensors, write_safetensors};
pub use state_dict::{MismatchReport, StateDict};
pub use torchscript::{is_torchscript, read_torchscript};
