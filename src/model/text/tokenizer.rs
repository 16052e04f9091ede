//! CLIP's byte-level BPE tokenizer: text -> 77 token ids with the start and
//! end tokens, read from OpenAI's `bpe_simple_vocab_16e6.txt.gz` (the file
//! OpenAI's and OpenCLIP's packages ship; a copy is built in) or from the
//! `tokenizer.json` of a Hugging Face CLIP repository.
//!
//! The pieces: clean-up ([`super::clean`]), the regex split into words,
//! each word's UTF-8 bytes mapped to printable characters (GPT-2's
//! `bytes_to_unicode`), `</w>` on the word's last symbol, then the
//! lowest-ranked merge applied until none is left.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::sync::Mutex;

use regex::Regex;
use serde_json::Value;

use super::clean::{clean, CleanMode};
use crate::error::{Error, Result};

/// OpenAI's vocabulary file (MIT licence, Copyright (c) 2021 OpenAI), as
/// shipped by `openai/CLIP` and `open_clip`.
const BUILT_IN_VOCAB: &[u8] = include_bytes!("bpe_simple_vocab_16e6.txt.gz");

/// The merges OpenAI's tokenizer reads from its file (49152 - 256 - 2).
const OPENAI_MERGES: usize = 48_894;

const START: &str = "<|startoftext|>";
const END: &str = "<|endoftext|>";
const SPLIT: &str = r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

pub struct ClipTokenizer {
    encoder: HashMap<String, u32>,
    ranks: HashMap<(String, String), usize>,
    byte_chars: [char; 256],
    split: Regex,
    mode: CleanMode,
    start: u32,
    end: u32,
    /// Words seen before: prompts repeat them.
    cache: Mutex<HashMap<String, Vec<u32>>>,
}

impl std::fmt::Debug for ClipTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClipTokenizer({} tokens, {} merges, {:?})", self.encoder.len(), self.ranks.len(), self.mode)
    }
}

/// GPT-2's reversible map from bytes to printable characters: printable
/// bytes stand for themselves, the others for 256, 257, ... in byte order.
fn bytes_to_unicode() -> [char; 256] {
    let mut map = ['\0'; 256];
    let mut extra = 0;
    for b in 0..256u32 {
        let c = if is_printable(b) {
            b
        } else {
            extra += 1;
            255 + extra
        };
        map[b as usize] = char::from_u32(c).unwrap_or('\u{FFFD}');
    }
    map
}

fn is_printable(b: u32) -> bool {
    (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b)
}

/// The byte symbols in vocabulary order: the printable bytes first (in
/// byte order), then the others, as `bytes_to_unicode()`'s dict lists them.
fn byte_symbols_in_vocab_order() -> Vec<char> {
    let map = bytes_to_unicode();
    let printable = (0..256u32).filter(|&b| is_printable(b));
    let others = (0..256u32).filter(|&b| !is_printable(b));
    printable.chain(others).map(|b| map[b as usize]).collect()
}

fn vocab_error(path: &Path, message: impl Into<String>) -> Error {
    Error::Config { path: path.to_owned(), message: message.into() }
}

impl ClipTokenizer {
    /// The built-in copy of OpenAI's vocabulary.
    pub fn openai() -> Self {
        Self::from_bpe_gz_bytes(BUILT_IN_VOCAB).unwrap_or_else(|e| unreachable!("the built-in vocabulary is valid: {e}"))
    }

    /// A vocabulary file: `*.txt.gz` / `*.txt` (OpenAI's merges list) or
    /// `tokenizer.json` (Hugging Face), told apart by content.
    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.to_owned(), source })?;
        let text = if bytes.starts_with(&[0x1f, 0x8b]) {
            let mut s = String::new();
            flate2::read::GzDecoder::new(&bytes[..])
                .read_to_string(&mut s)
                .map_err(|e| vocab_error(path, format!("not a valid gzipped text file: {e}")))?;
            s
        } else {
            String::from_utf8(bytes).map_err(|_| vocab_error(path, "not UTF-8 text"))?
        };
        if text.trim_start().starts_with('{') {
            Self::from_tokenizer_json(&text).map_err(|m| vocab_error(path, m))
        } else {
            Self::from_merges_text(&text).map_err(|m| vocab_error(path, m))
        }
    }

    fn from_bpe_gz_bytes(bytes: &[u8]) -> Result<Self, String> {
        let mut text = String::new();
        flate2::read::GzDecoder::new(bytes).read_to_string(&mut text).map_err(|e| e.to_string())?;
        Self::from_merges_text(&text)
    }

    /// OpenAI's layout: a version line, then one merge (`a b`) per line. The
    /// vocabulary is the 256 byte symbols, the same with `</w>`, one token
    /// per merge, then the start and end tokens.
    fn from_merges_text(text: &str) -> Result<Self, String> {
        let merges: Vec<(String, String)> = text
            .split('\n')
            .skip(1)
            .take(OPENAI_MERGES)
            .map(|line| {
                let mut parts = line.split_whitespace();
                match (parts.next(), parts.next(), parts.next()) {
                    (Some(a), Some(b), None) => Ok((a.to_string(), b.to_string())),
                    _ => Err(format!("merge line {line:?} is not two symbols")),
                }
            })
            .collect::<Result<_, _>>()?;
        if merges.len() < OPENAI_MERGES {
            return Err(format!("has {} merges, CLIP's vocabulary has {OPENAI_MERGES}", merges.len()));
        }
        let symbols = byte_symbols_in_vocab_order();
        let mut vocab: Vec<String> = symbols.iter().map(|c| c.to_string()).collect();
        vocab.extend(symbols.iter().map(|c| format!("{c}</w>")));
        vocab.extend(merges.iter().map(|(a, b)| format!("{a}{b}")));
        vocab.push(START.into());
        vocab.push(END.into());
        let encoder = vocab.into_iter().enumerate().map(|(i, t)| (t, i as u32)).collect();
        Self::build(encoder, merges, CleanMode::OpenAi)
    }

    /// A Hugging Face `tokenizer.json` of a CLIP model (a BPE with the
    /// `</w>` end-of-word suffix).
    fn from_tokenizer_json(text: &str) -> Result<Self, String> {
        let root: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
        let model = root.get("model").ok_or("has no \"model\" (not a tokenizer.json)")?;
        if model.get("type").and_then(Value::as_str) != Some("BPE") {
            return Err("its model is not a BPE".into());
        }
        if model.get("end_of_word_suffix").and_then(Value::as_str) != Some("</w>") {
            return Err("its BPE has no \"</w>\" end-of-word suffix: not a CLIP tokenizer".into());
        }
        let mut encoder: HashMap<String, u32> = model
            .get("vocab")
            .and_then(Value::as_object)
            .ok_or("its model has no vocab")?
            .iter()
            .map(|(k, v)| v.as_u64().map(|id| (k.clone(), id as u32)).ok_or_else(|| format!("token {k:?} has no integer id")))
            .collect::<Result<_, _>>()?;
        for added in root.get("added_tokens").and_then(Value::as_array).into_iter().flatten() {
            if let (Some(content), Some(id)) = (added.get("content").and_then(Value::as_str), added.get("id").and_then(Value::as_u64)) {
                encoder.insert(content.to_string(), id as u32);
            }
        }
        let merges = model
            .get("merges")
            .and_then(Value::as_array)
            .ok_or("its model has no merges")?
            .iter()
            .map(|m| match m {
                Value::String(s) => match s.split_once(' ') {
                    Some((a, b)) => Ok((a.to_string(), b.to_string())),
                    None => Err(format!("merge {s:?} is not two symbols")),
                },
                Value::Array(pair) => match (pair.first().and_then(Value::as_str), pair.get(1).and_then(Value::as_str), pair.len()) {
                    (Some(a), Some(b), 2) => Ok((a.to_string(), b.to_string())),
                    _ => Err(format!("merge {m} is not two symbols")),
                },
                other => Err(format!("merge {other} is not two symbols")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::build(encoder, merges, CleanMode::HuggingFace)
    }

    fn build(encoder: HashMap<String, u32>, merges: Vec<(String, String)>, mode: CleanMode) -> Result<Self, String> {
        let start = *encoder.get(START).ok_or("has no <|startoftext|> token")?;
        let end = *encoder.get(END).ok_or("has no <|endoftext|> token")?;
        let byte_chars = bytes_to_unicode();
        for c in byte_chars {
            for token in [c.to_string(), format!("{c}</w>")] {
                if !encoder.contains_key(&token) {
                    return Err(format!("lacks the byte symbol {token:?}"));
                }
            }
        }
        let ranks = merges.into_iter().enumerate().map(|(i, m)| (m, i)).collect();
        let split = Regex::new(SPLIT).map_err(|e| e.to_string())?;
        Ok(Self { encoder, ranks, byte_chars, split, mode, start, end, cache: Mutex::new(HashMap::new()) })
    }

    pub fn vocab_size(&self) -> usize {
        self.encoder.values().map(|&id| id as usize + 1).max().unwrap_or(0)
    }

    pub fn start_token(&self) -> u32 {
        self.start
    }

    pub fn end_token(&self) -> u32 {
        self.end
    }

    /// The ids of `text` without the start and end tokens.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let cleaned = clean(text, self.mode);
        let mut ids = Vec::new();
        for word in self.split.find_iter(&cleaned) {
            let word = word.as_str();
            if word == START {
                ids.push(self.start);
                continue;
            }
            if word == END {
                ids.push(self.end);
                continue;
            }
            if let Some(hit) = self.cache.lock().ok().and_then(|c| c.get(word).cloned()) {
                ids.extend(hit);
                continue;
            }
            let symbols: String = word.bytes().map(|b| self.byte_chars[b as usize]).collect();
            let word_ids: Vec<u32> = self
                .bpe(&symbols)
                .iter()
                .map(|s| self.encoder.get(s).copied().unwrap_or(self.end))
                .collect();
            if let Ok(mut cache) = self.cache.lock() {
                cache.insert(word.to_string(), word_ids.clone());
            }
            ids.extend(word_ids);
        }
        ids
    }

    /// Start token, the text's ids, end token, zero padding to
    /// `context_length`; an error when the text does not fit (OpenAI's
    /// `clip.tokenize` refuses too rather than cutting a prompt short).
    pub fn tokenize(&self, text: &str, context_length: usize) -> Result<Vec<u32>, String> {
        let mut ids = vec![self.start];
        ids.extend(self.encode(text));
        ids.push(self.end);
        if ids.len() > context_length {
            return Err(format!("{text:?} is {} tokens long, more than the context length {context_length}", ids.len()));
        }
        ids.resize(context_length, 0);
        Ok(ids)
    }

    /// One word's BPE symbols.
    fn bpe(&self, symbols: &str) -> Vec<String> {
        let chars: Vec<char> = symbols.chars().collect();
        let Some((last, head)) = chars.split_last() else {
            return Vec::new();
        };
        let mut word: Vec<String> = head.iter().map(|c| c.to_string()).collect();
        word.push(format!("{last}</w>"));
        while word.len() > 1 {
            let best = word
                .windows(2)
                .filter_map(|pair| self.ranks.get(&(pair[0].clone(), pair[1].clone())).map(|&r| (r, pair)))
                .min_by_key(|(r, _)| *r);
            let Some((_, pair)) = best else { break };
            let (first, second) = (pair[0].clone(), pair[1].clone());
            let mut merged = Vec::with_capacity(word.len());
            let mut i = 0;
            while i < word.len() {
                if i + 1 < word.len() && word[i] == first && word[i + 1] == second {
                    merged.push(format!("{first}{second}"));
                    i += 2;
                } else {
                    merged.push(word[i].clone());
                    i += 1;
                }
            }
            word = merged;
        }
        word
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_release_prompts_tokenise_as_clip_does() {
        let t = ClipTokenizer::openai();
        assert_eq!(t.vocab_size(), 49408);
        assert_eq!((t.start_token(), t.end_token()), (49406, 49407));
        let ids = t.tokenize("This object is giant", 77).unwrap();
        assert_eq!(&ids[..6], &[49406, 589, 14115, 533, 4687, 49407]);
        // Single bytes: "a</w>" is 320 (the printable bytes come first).
        assert_eq!(t.encode("a"), vec![320]);
        assert_eq!(t.encode("!"), vec![256]);
        assert!(ids[6..].iter().all(|&i| i == 0));
    }

    #[test]
    fn too_long_prompts_are_refused() {
        let t = ClipTokenizer::openai();
        let long = "far ".repeat(80);
        assert!(t.tokenize(&long, 77).unwrap_err().contains("context length 77"));
    }
}
