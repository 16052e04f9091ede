//! CLIP's BPE tokenizer token for token against the reference tokenizers on
//! a list of sentences (the DepthCLIP prompts, punctuation, contractions,
//! numbers, accents, Greek, Cyrillic, CJK, Hangul, Arabic, emoji, full-width
//! forms, curly quotes, ligatures, HTML entities, decomposed accents):
//! OpenCLIP's `SimpleTokenizer` for OpenAI's vocabulary file (built in), and
//! transformers' tokenizer for a Hugging Face `tokenizer.json`.

mod common;

use std::path::PathBuf;

use clip_depth_ros::model::text::ClipTokenizer;
use serde_json::Value;

fn dir() -> PathBuf {
    common::fixtures().join("depthclip").join("tokenizer")
}

fn sentences(file: &str) -> Vec<(String, Vec<u32>)> {
    let text = std::fs::read_to_string(dir().join(file)).unwrap();
    let root: Value = serde_json::from_str(&text).unwrap();
    root["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let ids = s["ids"].as_array().unwrap().iter().map(|i| i.as_u64().unwrap() as u32).collect();
            (s["text"].as_str().unwrap().to_string(), ids)
        })
        .collect()
}

fn check(tokenizer: &ClipTokenizer, cases: &[(String, Vec<u32>)]) {
    let mut wrong = Vec::new();
    for (text, reference) in cases {
        let mut ours = vec![tokenizer.start_token()];
        ours.extend(tokenizer.encode(text));
        ours.push(tokenizer.end_token());
        if &ours != reference {
            wrong.push(format!("{text:?}: ours {ours:?}, reference {reference:?}"));
        }
    }
    assert!(wrong.is_empty(), "{} of {} sentences differ:\n{}", wrong.len(), cases.len(), wrong.join("\n"));
}

#[test]
fn openai_vocabulary_matches_open_clip_on_every_sentence() {
    let cases = sentences("sentences.json");
    assert!(cases.len() >= 30);
    check(&ClipTokenizer::openai(), &cases);
}

#[test]
fn the_vocabulary_file_reads_like_the_built_in_copy() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/model/text/bpe_simple_vocab_16e6.txt.gz");
    check(&ClipTokenizer::from_file(&path).unwrap(), &sentences("sentences.json"));
}

#[test]
fn hugging_face_tokenizer_json_matches_transformers() {
    let tokenizer = ClipTokenizer::from_file(&dir().join("tokenizer.json")).unwrap();
    assert_eq!(tokenizer.vocab_size(), 2514);
    check(&tokenizer, &sentences("tokenizer_json_ids.json"));
}

#[test]
fn padding_and_bad_vocabularies() {
    let t = ClipTokenizer::openai();
    let ids = t.tokenize("far", 77).unwrap();
    assert_eq!(ids.len(), 77);
    assert_eq!(&ids[..3], &[49406, 2384, 49407]);
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("tokenizer.json");
    std::fs::write(&bad, r#"{"model": {"type": "WordPiece", "vocab": {}}}"#).unwrap();
    let err = ClipTokenizer::from_file(&bad).unwrap_err().to_string();
    assert!(err.contains("not a BPE") && err.contains("tokenizer.json"), "{err}");
    std::fs::write(&bad, "not a vocabulary").unwrap();
    assert!(ClipTokenizer::from_file(&bad).is_err());
}
