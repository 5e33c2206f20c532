//! Sentence-transformers BERT encoders in [Burn](https://burn.dev): all-MiniLM-L6-v2 and any
//! `BertModel` checkpoint in Hugging Face layout, with the same tokenisation, truncation,
//! pooling and normalisation as Python's sentence-transformers.
//!
//! ```no_run
//! use burn::tensor::Device;
//! use sentence_encoder::SentenceEncoder;
//!
//! # fn main() -> Result<(), sentence_encoder::Error> {
//! let device = Device::flex();
//! let encoder = SentenceEncoder::load("models/all-MiniLM-L6-v2", &device)?;
//! let vectors = encoder.encode_vecs(&["a red fox in the snow, oil painting"])?;
//! assert_eq!(vectors[0].len(), 384);
//! # Ok(())
//! # }
//! ```
//!
//! The backend is the runtime [`burn::tensor::Device`]; cargo features `ndarray`, `flex`, `wgpu`
//! (default) and `cpu`, `cuda` (opt-in) decide which devices exist.

pub mod config;
pub mod encoder;
pub mod error;
mod host;
mod host_gelu;
pub mod model;
pub mod pooling;
pub mod tokenize;
pub mod weights;

pub use config::{BertConfig, Pipeline, PoolingMode, SentenceBertConfig};
pub use encoder::{DEFAULT_BATCH_SIZE, Precision, SentenceEncoder};
pub use error::{Error, Result};
pub use model::AttentionKernel;
pub use tokenize::{SentenceTokenizer, TokenizedText};

/// Re-export of the Burn version this crate is built against.
pub use burn;
