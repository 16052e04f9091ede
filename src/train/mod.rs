//! Training: the authors' recipe (losses, AdamW with clipping, schedules,
//! EMA, validation and best selection) over any [`crate::model::nn::TrainableModel`].

pub mod bins;
pub mod cache;
pub mod config;
pub mod ema;
pub mod load;
pub mod log;
pub mod loss;
pub mod optim;
pub mod schedule;
pub mod state;
pub mod trainer;

pub use config::TrainConfig;
pub use load::{load_trainable, WeightSources};
pub use trainer::{Outcome, RunOptions, Trainer};
