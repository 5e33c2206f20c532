//! The CLIP BPE tokenizer: the checkpoint's `tokenizer.json` through the `tokenizers` crate, or,
//! when a checkpoint ships none, the real OpenAI CLIP BPE built into this crate and assembled
//! exactly as HF's `CLIPTokenizerFast` assembles it (NFC, whitespace collapse, lowercase, the
//! CLIP split regex, byte-level BPE with a `</w>` word suffix, `<|startoftext|>` /
//! `<|endoftext|>` around every text, truncation keeping `<|endoftext|>` last).

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use tokenizers::{Tokenizer, TruncationParams};

use crate::error::{Error, Result};

/// The first 48 894 merges of OpenAI's `bpe_simple_vocab_16e6.txt` (all that CLIP uses),
/// gzipped. Source: PyPI `open_clip_torch` 3.3.0, `open_clip/bpe_simple_vocab_16e6.txt.gz`
/// (MIT, see `assets/LICENSE-clip-bpe.txt`).
static MERGES_GZ: &[u8] = include_bytes!("../assets/clip_merges_48894.txt.gz");

/// Number of merges CLIP uses: `49152 - 256 - 2`.
pub const NUM_MERGES: usize = 48_894;
/// Size of the OpenAI CLIP vocabulary.
pub const VOCAB_SIZE: usize = 49_408;
/// Id of `<|startoftext|>` in the OpenAI vocabulary.
pub const BOS_TOKEN_ID: u32 = 49_406;
/// Id of `<|endoftext|>` in the OpenAI vocabulary.
pub const EOS_TOKEN_ID: u32 = 49_407;
/// CLIP's context length.
pub const CONTEXT_LENGTH: usize = 77;

/// The pre-tokenizer split of CLIP (`CLIPConverter`).
const CLIP_SPLIT: &str = r"'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

/// A CLIP tokenizer producing ids with BOS/EOS, truncated to the context length.
#[derive(Debug, Clone)]
pub struct ClipTokenizer {
    inner: Tokenizer,
    context_length: usize,
    source: Option<PathBuf>,
}

impl ClipTokenizer {
    /// The checkpoint's tokenizer: `dir/tokenizer.json` when present, else the built-in one.
    pub fn from_dir(dir: impl AsRef<Path>, context_length: usize) -> Result<Self> {
        let path = dir.as_ref().join("tokenizer.json");
        if path.is_file() {
            Self::from_file(path, context_length)
        } else {
            Self::builtin(context_length)
        }
    }

    /// Loads a `tokenizer.json`.
    pub fn from_file(path: impl AsRef<Path>, context_length: usize) -> Result<Self> {
        let path = path.as_ref();
        let inner = Tokenizer::from_file(path).map_err(|e| Error::Tokenizer {
            path: Some(path.to_path_buf()),
            message: e.to_string(),
        })?;
        Self::with_tokenizer(inner, context_length, Some(path.to_path_buf()))
    }

    /// The built-in OpenAI CLIP tokenizer (49 408 tokens), identical to HF `CLIPTokenizerFast`
    /// for openai/clip-vit-* checkpoints.
    pub fn builtin(context_length: usize) -> Result<Self> {
        let json = builtin_tokenizer_json()?;
        let inner: Tokenizer =
            json.to_string()
                .parse()
                .map_err(|e: tokenizers::Error| Error::Tokenizer {
                    path: None,
                    message: e.to_string(),
                })?;
        Self::with_tokenizer(inner, context_length, None)
    }

    /// Wraps an existing `tokenizers` tokenizer; padding is removed and truncation set to
    /// `context_length` (the post-processor's special tokens are kept).
    pub fn with_tokenizer(
        mut inner: Tokenizer,
        context_length: usize,
        source: Option<PathBuf>,
    ) -> Result<Self> {
        inner.with_padding(None);
        inner
            .with_truncation(Some(TruncationParams {
                max_length: context_length,
                ..Default::default()
            }))
            .map_err(|e| Error::Tokenizer {
                path: source.clone(),
                message: e.to_string(),
            })?;
        Ok(Self {
            inner,
            context_length,
            source,
        })
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }

    /// The context length texts are truncated to.
    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// The `tokenizer.json` this was loaded from (`None` for the built-in tokenizer).
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    /// Token ids of one text, with BOS and EOS, at most [`Self::context_length`] long.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, true).map_err(|e| self.err(e))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Token ids of many texts (tokenized in parallel).
    pub fn encode_batch(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        let inputs: Vec<&str> = texts.to_vec();
        let encs = self
            .inner
            .encode_batch(inputs, true)
            .map_err(|e| self.err(e))?;
        Ok(encs.into_iter().map(|e| e.get_ids().to_vec()).collect())
    }

    fn err(&self, e: tokenizers::Error) -> Error {
        Error::Tokenizer {
            path: self.source.clone(),
            message: e.to_string(),
        }
    }
}

/// GPT-2's byte -> printable-char table, in the order CLIP lists it in its vocabulary.
fn bytes_to_unicode() -> Vec<(u8, char)> {
    let mut bs: Vec<u32> = (u32::from(b'!')..=u32::from(b'~'))
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    bs.into_iter()
        .zip(cs)
        .map(|(b, c)| (b as u8, char::from_u32(c).expect("valid code point")))
        .collect()
}

/// The merges (first line is the `#version` header and is skipped).
fn builtin_merges() -> Result<Vec<(String, String)>> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(MERGES_GZ)
        .read_to_string(&mut text)
        .map_err(|e| Error::Tokenizer {
            path: None,
            message: format!("built-in BPE merges: {e}"),
        })?;
    let merges: Vec<(String, String)> = text
        .split('\n')
        .skip(1)
        .take(NUM_MERGES)
        .filter_map(|l| {
            let mut it = l.split(' ');
            Some((it.next()?.to_string(), it.next()?.to_string()))
        })
        .collect();
    if merges.len() != NUM_MERGES {
        return Err(Error::Tokenizer {
            path: None,
            message: format!(
                "built-in BPE has {} merges, expected {NUM_MERGES}",
                merges.len()
            ),
        });
    }
    Ok(merges)
}

/// The `tokenizer.json` document HF writes for openai/clip-vit-* checkpoints.
pub fn builtin_tokenizer_json() -> Result<Value> {
    let merges = builtin_merges()?;
    let mut vocab = serde_json::Map::with_capacity(VOCAB_SIZE);
    let mut next = 0u32;
    let mut push = |tok: String, vocab: &mut serde_json::Map<String, Value>| {
        vocab.insert(tok, json!(next));
        next += 1;
    };
    let table = bytes_to_unicode();
    for (_, c) in &table {
        push(c.to_string(), &mut vocab);
    }
    for (_, c) in &table {
        push(format!("{c}</w>"), &mut vocab);
    }
    for (a, b) in &merges {
        push(format!("{a}{b}"), &mut vocab);
    }
    push("<|startoftext|>".into(), &mut vocab);
    push("<|endoftext|>".into(), &mut vocab);
    if vocab.len() != VOCAB_SIZE {
        return Err(Error::Tokenizer {
            path: None,
            message: format!(
                "built-in vocabulary has {} entries, expected {VOCAB_SIZE}",
                vocab.len()
            ),
        });
    }
    let merges: Vec<Value> = merges.into_iter().map(|(a, b)| json!([a, b])).collect();
    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [
            {"id": BOS_TOKEN_ID, "content": "<|startoftext|>", "single_word": false,
             "lstrip": false, "rstrip": false, "normalized": false, "special": true},
            {"id": EOS_TOKEN_ID, "content": "<|endoftext|>", "single_word": false,
             "lstrip": false, "rstrip": false, "normalized": false, "special": true}
        ],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "NFC"},
            {"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "},
            {"type": "Lowercase"}
        ]},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": CLIP_SPLIT}, "behavior": "Removed", "invert": true},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}
        ]},
        "post_processor": {"type": "RobertaProcessing",
            "sep": ["<|endoftext|>", EOS_TOKEN_ID], "cls": ["<|startoftext|>", BOS_TOKEN_ID],
            "trim_offsets": false, "add_prefix_space": false},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": "<|endoftext|>",
            "continuing_subword_prefix": "", "end_of_word_suffix": "</w>", "fuse_unk": false,
            "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": merges}
    }))
}
