//! Every enabled backend gives the same embeddings (within 1e-4 cosine).

mod common;

use common::*;
use sentence_encoder::SentenceEncoder;

#[test]
fn all_enabled_backends_agree() {
    let devices = enabled_devices();
    assert!(!devices.is_empty());
    let texts = fixture_texts();
    // A handful of texts incl. an empty string and a long one: wgpu runs on lavapipe here.
    let picks = [0usize, 1, 22, 36, 80, texts.len() - 1];
    let refs: Vec<&str> = picks.iter().map(|&i| texts[i].as_str()).collect();
    let expected = fixture_embeddings();
    for (name, device) in devices {
        let encoder = SentenceEncoder::load(minilm_dir(), &device).expect("load");
        let got = encoder.encode_vecs(&refs).expect("encode");
        for (row, &i) in got.iter().zip(&picks) {
            let cos = cosine(row, &expected[i]);
            assert!(
                cos >= 1.0 - 1e-4,
                "backend {name}, text {i}: cosine to reference {cos}"
            );
        }
    }
}
