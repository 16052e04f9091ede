//! Loading SPACE-CLIP weights strictly: read the files (PyTorch zip pickles
//! or safetensors), map every naming variant to the official names, and
//! refuse anything missing, unexpected or wrongly shaped before building.

mod expected;
mod file;
mod infer;
mod names;
mod random;
mod save;
mod state_dict;

pub use expected::{expected_tensors, ExpectedTensor};
pub use infer::{infer_architecture, InferredArchitecture};
pub use file::{read_tensor_file, FileFormat, TensorFile};
pub use names::{canonical_name, is_backbone, training_name, NameClass};
pub use random::random_state_dict;
pub use save::{read_safetensors, write_safetensors};
pub use state_dict::{MismatchReport, StateDict};
