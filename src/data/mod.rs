//! Datasets for training and evaluation: the authors' file lists and
//! per-sample preprocessing (NYU, KITTI and datasets laid out like them),
//! loaded on worker threads ahead of the model, and an on-disk cache of a
//! frozen encoder's features.

pub mod depth;
pub mod export;
pub mod file_list;
pub mod loader;
pub mod registration;
pub mod rosbag;
pub mod sample;
pub mod synth;

pub use file_list::{read_list, ListEntry, SamplePaths};
pub use loader::{Loader, SkipLog};
pub use sample::{Augment, DataSpec, Sample};
