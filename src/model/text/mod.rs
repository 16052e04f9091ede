//! Text: BERT's WordPiece tokenizer (BLIP-2's Q-Former) and CLIP's text side: the byte-level BPE tokenizer and the text transformer
//! (causal self-attention, the end-of-text token's features through
//! `final_layer_norm` and `text_projection`), as zero-shot models use it to
//! turn prompts into vectors in the image-text space.

mod clean;
mod config;
mod tokenizer;
mod transformer;
mod wordpiece;

pub use clean::{clean, CleanMode};
pub use config::TextConfig;
pub use tokenizer::ClipTokenizer;
pub use transformer::ClipTextModel;
pub use wordpiece::{pre_caption, BertTokenizer};
