//! BERT's WordPiece tokenizer (`bert-base-uncased`, as BLIP-2's Q-Former
//! reads text): text -> `[CLS] ... [SEP]` ids, from a `vocab.txt` (one
//! token a line, the id its line number; a copy of bert-base-uncased's is
//! built in) or a Hugging Face `tokenizer.json` (its `model.vocab`).
//!
//! The pieces, as BERT's basic tokenizer: special tokens kept whole; the
//! text cleaned (NUL, U+FFFD and control characters dropped, white space
//! made a space), CJK ideographs set apart, NFC, split on white space; each
//! word lowercased, its accents stripped (NFD, combining marks dropped) and
//! split at punctuation; then each piece matched greedily, longest first,
//! continuation pieces with a `##` prefix, a word with no match (or longer
//! than 100 characters) one `[UNK]`.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use regex::Regex;
use serde_json::Value;
use unicode_normalization::UnicodeNormalization;

use crate::error::{Error, Result};

/// bert-base-uncased's `vocab.txt` (Apache-2.0, Google Research's BERT
/// release, as the Hugging Face hub serves it).
const BUILT_IN_VOCAB: &[u8] = include_bytes!("bert_base_uncased_vocab.txt.gz");

/// Words longer than this (in characters) are one `[UNK]`, as BERT's.
const MAX_WORD_CHARS: usize = 100;

/// Special tokens kept whole wherever they appear; `[DEC]` is the one
/// LAVIS adds to BLIP-2's tokenizer (id = vocabulary size).
const SPECIALS: [&str; 6] = ["[CLS]", "[SEP]", "[MASK]", "[UNK]", "[PAD]", "[DEC]"];

pub struct BertTokenizer {
    vocab: HashMap<String, u32>,
    lowercase: bool,
    cls: u32,
    sep: u32,
    unk: u32,
    /// Unicode categories BERT's tests read from `unicodedata`.
    punctuation: Regex,
    control: Regex,
    mark: Regex,
    space: Regex,
}

impl std::fmt::Debug for BertTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BertTokenizer({} tokens, lowercase {})", self.vocab.len(), self.lowercase)
    }
}

fn tokenizer_error(path: &Path, message: impl Into<String>) -> Error {
    Error::Config { path: path.to_owned(), message: message.into() }
}

impl BertTokenizer {
    /// The built-in bert-base-uncased vocabulary, with LAVIS's `[DEC]`.
    pub fn bert_base_uncased() -> Self {
        let mut text = String::new();
        let decoded = flate2::read::GzDecoder::new(BUILT_IN_VOCAB).read_to_string(&mut text);
        debug_assert!(decoded.is_ok(), "the built-in vocabulary is valid gzip");
        Self::from_vocab_lines(&text, true).unwrap_or_else(|e| unreachable!("the built-in vocabulary is valid: {e}"))
    }

    /// A `vocab.txt` (one token a line) or a Hugging Face `tokenizer.json`
    /// (a WordPiece model), told apart by the first character.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_owned(), source })?;
        if text.trim_start().starts_with('{') {
            Self::from_tokenizer_json(&text).map_err(|m| tokenizer_error(path, m))
        } else {
            Self::from_vocab_lines(&text, true).map_err(|m| tokenizer_error(path, m))
        }
    }

    /// One token a line; `[DEC]` added after the last when absent.
    pub fn from_vocab_lines(text: &str, lowercase: bool) -> std::result::Result<Self, String> {
        let mut vocab = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let token = line.trim_end_matches(['\r', '\n']);
            if token.is_empty() {
                continue;
            }
            vocab.entry(token.to_string()).or_insert(i as u32);
        }
        let next = text.lines().count() as u32;
        vocab.entry("[DEC]".to_string()).or_insert(next);
        Self::new(vocab, lowercase)
    }

    /// A Hugging Face `tokenizer.json` with a WordPiece model (its vocab,
    /// its added tokens, and its normalizer's `lowercase`).
    pub fn from_tokenizer_json(text: &str) -> std::result::Result<Self, String> {
        let root: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
        let model = root.get("model").ok_or("tokenizer.json has no model")?;
        if let Some(kind) = model.get("type").and_then(Value::as_str) {
            if kind != "WordPiece" {
                return Err(format!("tokenizer.json holds a {kind} model: BLIP-2's Q-Former needs BERT's WordPiece"));
            }
        }
        let entries = model.get("vocab").and_then(Value::as_object).ok_or("tokenizer.json has no model.vocab")?;
        let mut vocab = HashMap::with_capacity(entries.len() + 1);
        for (token, id) in entries {
            let id = id.as_u64().ok_or_else(|| format!("model.vocab[{token:?}] is not an id"))?;
            vocab.insert(token.clone(), id as u32);
        }
        for added in root.get("added_tokens").and_then(Value::as_array).into_iter().flatten() {
            if let (Some(token), Some(id)) = (added.get("content").and_then(Value::as_str), added.get("id").and_then(Value::as_u64)) {
                vocab.insert(token.to_string(), id as u32);
            }
        }
        if !vocab.contains_key("[DEC]") {
            let next = vocab.values().copied().max().map_or(0, |m| m + 1);
            vocab.insert("[DEC]".to_string(), next);
        }
        let lowercase = root
            .get("normalizer")
            .and_then(|n| n.get("lowercase"))
            .and_then(Value::as_bool)
            .unwrap_or(true);
        Self::new(vocab, lowercase)
    }

    fn new(vocab: HashMap<String, u32>, lowercase: bool) -> std::result::Result<Self, String> {
        let id = |t: &str| vocab.get(t).copied().ok_or_else(|| format!("the vocabulary has no {t} token: not a BERT vocabulary"));
        let (cls, sep, unk) = (id("[CLS]")?, id("[SEP]")?, id("[UNK]")?);
        let re = |p: &str| Regex::new(p).map_err(|e| e.to_string());
        Ok(Self {
            cls,
            sep,
            unk,
            lowercase,
            punctuation: re(r"^\p{P}$")?,
            control: re(r"^\p{C}$")?,
            mark: re(r"^\p{Mn}$")?,
            space: re(r"^\p{Zs}$")?,
            vocab,
        })
    }

    /// Tokens in the vocabulary (with `[DEC]`): the Q-Former's word
    /// embeddings must have at least as many rows.
    pub fn vocab_size(&self) -> usize {
        self.vocab.values().copied().max().map_or(0, |m| m as usize + 1)
    }

    /// `[CLS] pieces [SEP]`.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut ids = vec![self.cls];
        for (segment, special) in split_specials(text) {
            match special {
                Some(token) => ids.push(self.vocab.get(token).copied().unwrap_or(self.unk)),
                None => {
                    for word in self.basic_tokens(segment) {
                        self.word_pieces(&word, &mut ids);
                    }
                }
            }
        }
        ids.push(self.sep);
        ids
    }

    fn is_char(&self, re: &Regex, c: char) -> bool {
        let mut buf = [0u8; 4];
        re.is_match(c.encode_utf8(&mut buf))
    }

    fn is_whitespace(&self, c: char) -> bool {
        matches!(c, ' ' | '\t' | '\n' | '\r') || self.is_char(&self.space, c)
    }

    fn is_control(&self, c: char) -> bool {
        !matches!(c, '\t' | '\n' | '\r') && self.is_char(&self.control, c)
    }

    fn is_punctuation(&self, c: char) -> bool {
        let cp = c as u32;
        (33..=47).contains(&cp) || (58..=64).contains(&cp) || (91..=96).contains(&cp) || (123..=126).contains(&cp) || self.is_char(&self.punctuation, c)
    }

    /// BERT's basic tokenizer on a text without special tokens.
    fn basic_tokens(&self, text: &str) -> Vec<String> {
        let mut cleaned = String::with_capacity(text.len() + 8);
        for c in text.chars() {
            if c == '\0' || c == '\u{fffd}' || self.is_control(c) {
                continue;
            }
            if self.is_whitespace(c) {
                cleaned.push(' ');
            } else if is_cjk(c) {
                cleaned.push(' ');
                cleaned.push(c);
                cleaned.push(' ');
            } else {
                cleaned.push(c);
            }
        }
        let cleaned: String = cleaned.nfc().collect();
        let mut out = Vec::new();
        for word in cleaned.split_whitespace() {
            let word = if self.lowercase {
                word.to_lowercase().nfd().filter(|c| !self.is_char(&self.mark, *c)).collect::<String>()
            } else {
                word.to_string()
            };
            let mut current = String::new();
            for c in word.chars() {
                if self.is_punctuation(c) {
                    if !current.is_empty() {
                        out.push(std::mem::take(&mut current));
                    }
                    out.push(c.to_string());
                } else {
                    current.push(c);
                }
            }
            if !current.is_empty() {
                out.push(current);
            }
        }
        out
    }

    /// Greedy longest-match-first pieces of one word.
    fn word_pieces(&self, word: &str, ids: &mut Vec<u32>) {
        let chars: Vec<char> = word.chars().collect();
        if chars.len() > MAX_WORD_CHARS {
            ids.push(self.unk);
            return;
        }
        let mut pieces = Vec::new();
        let mut start = 0;
        while start < chars.len() {
            let mut end = chars.len();
            let mut found = None;
            while start < end {
                let mut piece: String = chars[start..end].iter().collect();
                if start > 0 {
                    piece.insert_str(0, "##");
                }
                if let Some(&id) = self.vocab.get(&piece) {
                    found = Some(id);
                    break;
                }
                end -= 1;
            }
            match found {
                Some(id) => pieces.push(id),
                None => {
                    ids.push(self.unk);
                    return;
                }
            }
            start = end;
        }
        ids.extend(pieces);
    }
}

/// The text cut at exact occurrences of the special tokens.
fn split_specials(text: &str) -> Vec<(&str, Option<&'static str>)> {
    let mut out = Vec::new();
    let mut rest = text;
    loop {
        let next = SPECIALS.iter().filter_map(|s| rest.find(s).map(|at| (at, *s))).min_by_key(|(at, s)| (*at, usize::MAX - s.len()));
        match next {
            Some((at, special)) => {
                out.push((&rest[..at], None));
                out.push(("", Some(special)));
                rest = &rest[at + special.len()..];
            }
            None => {
                out.push((rest, None));
                return out;
            }
        }
    }
}

/// The CJK ideograph blocks BERT sets apart (not Hangul, kana).
fn is_cjk(c: char) -> bool {
    let cp = c as u32;
    (0x4E00..=0x9FFF).contains(&cp)
        || (0x3400..=0x4DBF).contains(&cp)
        || (0x20000..=0x2A6DF).contains(&cp)
        || (0x2A700..=0x2B73F).contains(&cp)
        || (0x2B740..=0x2B81F).contains(&cp)
        || (0x2B820..=0x2CEAF).contains(&cp)
        || (0xF900..=0xFAFF).contains(&cp)
        || (0x2F800..=0x2FA1F).contains(&cp)
}

/// LAVIS's caption processor (`BlipCaptionProcessor`, no prompt): lower
/// case, `.!"()*#:;~` made spaces, runs of white space one space, trimmed,
/// at most `max_words` words.
pub fn pre_caption(caption: &str, max_words: usize) -> String {
    let lowered: String = caption
        .to_lowercase()
        .chars()
        .map(|c| if ".!\"()*#:;~".contains(c) { ' ' } else { c })
        .collect();
    // Python's \s{2,} -> " " (any run of two or more white space characters).
    let mut collapsed = String::with_capacity(lowered.len());
    let chars: Vec<char> = lowered.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_whitespace() {
            let mut j = i;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            if j - i >= 2 {
                collapsed.push(' ');
            } else {
                collapsed.push(chars[i]);
            }
            i = j;
        } else {
            collapsed.push(chars[i]);
            i += 1;
        }
    }
    let trimmed = collapsed.trim_end_matches('\n').trim_matches(' ');
    let words: Vec<&str> = trimmed.split(' ').collect();
    if words.len() > max_words {
        words[..max_words].join(" ")
    } else {
        trimmed.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_vocabulary_is_bert_base_uncased() {
        let t = BertTokenizer::bert_base_uncased();
        assert_eq!(t.vocab_size(), 30523);
        assert_eq!(t.encode("this object is giant"), vec![101, 2023, 4874, 2003, 5016, 102]);
        assert_eq!(t.encode(""), vec![101, 102]);
    }

    #[test]
    fn captions_as_lavis() {
        assert_eq!(pre_caption("This object is  FAR.", 50), "this object is far");
        assert_eq!(pre_caption("a b c", 2), "a b");
    }
}
