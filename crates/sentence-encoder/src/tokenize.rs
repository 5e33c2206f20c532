//! Word-piece tokenisation with the checkpoint's own `tokenizer.json`, truncated at the model's
//! `max_seq_length` and left unpadded (batches are padded to their own longest text).

use std::path::{Path, PathBuf};

use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::error::{Error, Result};

/// One tokenised text: its ids, special tokens included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizedText {
    /// Token ids (`[CLS] ... [SEP]` for BERT).
    pub ids: Vec<u32>,
}

/// A `tokenizers` tokenizer configured the way sentence-transformers calls it.
#[derive(Debug, Clone)]
pub struct SentenceTokenizer {
    inner: Tokenizer,
    path: PathBuf,
    max_length: usize,
}

impl SentenceTokenizer {
    /// Loads `tokenizer.json`, truncating every text to `max_length` tokens.
    pub fn from_file(path: &Path, max_length: usize) -> Result<Self> {
        if !path.is_file() {
            return Err(Error::MissingFile {
                path: path.to_owned(),
                what: "tokenizer",
            });
        }
        let tokenizer_error = |message: String| Error::Tokenizer {
            path: path.to_owned(),
            message,
        };
        let mut inner = Tokenizer::from_file(path).map_err(|e| tokenizer_error(e.to_string()))?;
        inner
            .with_truncation(Some(TruncationParams {
                max_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| tokenizer_error(e.to_string()))?;
        inner.with_padding(None);
        Ok(Self {
            inner,
            path: path.to_owned(),
            max_length,
        })
    }

    /// The truncation length in tokens, special tokens included.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// Tokenises one text.
    pub fn encode(&self, text: &str) -> Result<TokenizedText> {
        let encoding = self
            .inner
            .encode(text, true)
            .map_err(|e| Error::Tokenizer {
                path: self.path.clone(),
                message: e.to_string(),
            })?;
        Ok(TokenizedText {
            ids: encoding.get_ids().to_vec(),
        })
    }

    /// Tokenises many texts, in order.
    pub fn encode_all(&self, texts: &[&str]) -> Result<Vec<TokenizedText>> {
        texts.iter().map(|text| self.encode(text)).collect()
    }
}
