//! Model code against reference implementations: the real all-MiniLM-L6-v2 against
//! sentence-transformers, and random-weight BERT / XLM-R embedders and cross-encoders against
//! transformers (fixtures rebuilt by scripts/make_parity_fixtures.py).

use std::path::Path;

use mosaic::embed::{CrossEncoder, Purpose, TextEmbedder};
use mosaic::models::TextModelSpec;

use crate::common::{cosine, fixtures, floats, real_model, MINILM};

fn load_embedder(id: &str, dir: &Path) -> TextEmbedder {
    let spec = TextModelSpec::load(id, dir, None, None).unwrap();
    TextEmbedder::load(spec, dir, 8192).unwrap()
}

fn expected(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn minilm_reproduces_the_model_card_cosine() {
    let dir = real_model(MINILM);
    let embedder = load_embedder(MINILM, &dir);
    assert_eq!(embedder.spec().dims(), 384);
    assert_eq!(embedder.spec().max_tokens, 256);
    let v = embedder
        .embed(
            &[
                "A man is eating food.".into(),
                "A man is eating a piece of bread.".into(),
            ],
            Purpose::Passage,
        )
        .unwrap();
    let c = cosine(&v[0], &v[1]);
    assert!((c - 0.7553).abs() < 1e-3, "cosine {c}");
}

#[test]
fn minilm_matches_sentence_transformers() {
    let dir = real_model(MINILM);
    let embedder = load_embedder(MINILM, &dir);
    let reference = expected(&fixtures().join("models/minilm-reference.json"));
    let sentences = reference["sentences"].as_array().unwrap();
    let texts: Vec<String> = sentences
        .iter()
        .map(|s| s["text"].as_str().unwrap().to_string())
        .collect();
    let ids = embedder.tokenize(&texts, Purpose::Passage).unwrap();
    let vectors = embedder.embed(&texts, Purpose::Passage).unwrap();
    let mut truncated = 0;
    for (i, s) in sentences.iter().enumerate() {
        let want_ids: Vec<u32> = s["input_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(ids[i], want_ids, "token ids of sentence {i}");
        truncated += s["truncated"].as_bool().unwrap() as usize;
        let c = cosine(&vectors[i], &floats(&s["embedding"]));
        assert!(
            c >= 0.9999,
            "sentence {i}: cosine {c} against sentence-transformers"
        );
    }
    assert!(truncated >= 1, "the reference set exercises truncation");
}

fn embedder_parity(name: &str) {
    let dir = fixtures().join("models").join(name);
    let embedder = load_embedder(&format!("mosaic-test/{name}"), &dir);
    let reference = expected(&dir.join("expected.json"));
    let sentences = reference["sentences"].as_array().unwrap();
    let texts: Vec<String> = sentences
        .iter()
        .map(|s| s["text"].as_str().unwrap().to_string())
        .collect();
    let ids = embedder.tokenize(&texts, Purpose::Passage).unwrap();
    let vectors = embedder.embed(&texts, Purpose::Passage).unwrap();
    for (i, s) in sentences.iter().enumerate() {
        let want_ids: Vec<u32> = s["input_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(ids[i], want_ids, "{name}: token ids of sentence {i}");
        let want = floats(&s["embedding"]);
        let c = cosine(&vectors[i], &want);
        let max_abs = vectors[i]
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            c > 0.9999 && max_abs < 1e-4,
            "{name} sentence {i}: cosine {c}, max abs {max_abs}"
        );
    }
}

#[test]
fn bert_embedder_matches_sentence_transformers() {
    embedder_parity("tiny-bert-embedder");
}

#[test]
fn xlm_roberta_embedder_matches_sentence_transformers() {
    embedder_parity("tiny-xlmr-embedder");
}

fn cross_encoder_parity(name: &str) {
    let dir = fixtures().join("models").join(name);
    let reference = expected(&dir.join("expected.json"));
    let window = reference["encoding"]["max_length"].as_u64().unwrap() as usize;
    let model =
        CrossEncoder::load(&format!("mosaic-test/{name}"), &dir, Some(window), 8192).unwrap();
    for (i, pair) in reference["pairs"].as_array().unwrap().iter().enumerate() {
        let query = pair["query"].as_str().unwrap();
        let passage = pair["passage"].as_str().unwrap().to_string();
        let encoded = model
            .tokenize(query, std::slice::from_ref(&passage))
            .unwrap();
        let want_ids: Vec<u32> = pair["input_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(encoded[0].0, want_ids, "{name}: token ids of pair {i}");
        // XLM-R takes no token types (all zero); BERT's are recorded.
        let want_types: Vec<u32> = match pair["token_type_ids"].as_array() {
            Some(types) => types.iter().map(|x| x.as_u64().unwrap() as u32).collect(),
            None => vec![0; want_ids.len()],
        };
        assert_eq!(encoded[0].1, want_types, "{name}: type ids of pair {i}");
    }
    // Batched scoring (padding inside the batch) against the reference logits.
    let pairs = reference["pairs"].as_array().unwrap();
    let want: Vec<f32> = floats(&reference["logits"]);
    for (i, pair) in pairs.iter().enumerate() {
        let query = pair["query"].as_str().unwrap();
        let passages: Vec<String> = pairs
            .iter()
            .filter(|p| p["query"] == pair["query"])
            .map(|p| p["passage"].as_str().unwrap().to_string())
            .collect();
        let scores = model.score(query, &passages).unwrap();
        let mine = passages
            .iter()
            .position(|p| p == pair["passage"].as_str().unwrap())
            .unwrap();
        assert!(
            (scores[mine] - want[i]).abs() < 1e-4,
            "{name} pair {i}: {} vs {}",
            scores[mine],
            want[i]
        );
    }
}

#[test]
fn bert_cross_encoder_matches_transformers() {
    cross_encoder_parity("tiny-bert-cross-encoder");
}

#[test]
fn xlm_roberta_cross_encoder_matches_transformers() {
    cross_encoder_parity("tiny-xlmr-cross-encoder");
}
