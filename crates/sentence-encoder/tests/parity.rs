//! Parity with Python's sentence-transformers on the real all-MiniLM-L6-v2 checkpoint.

mod common;

use common::*;
use sentence_encoder::SentenceEncoder;

#[test]
fn token_ids_match_reference_including_truncation() {
    let encoder = SentenceEncoder::load(minilm_dir(), &cpu_device()).expect("load");
    assert_eq!(encoder.tokenizer().max_length(), 256);
    let texts = fixture_texts();
    let expected = fixture_token_ids();
    assert!(texts.len() >= 100);
    assert!(
        expected.iter().any(|ids| ids.len() == 256),
        "the fixture must contain a truncated text"
    );
    for (i, (text, want)) in texts.iter().zip(&expected).enumerate() {
        let got = encoder.tokenizer().encode(text).expect("tokenize");
        assert_eq!(&got.ids, want, "text {i}: {text:?}");
    }
}

#[test]
fn embeddings_match_sentence_transformers() {
    let encoder = SentenceEncoder::load(minilm_dir(), &cpu_device()).expect("load");
    let texts = fixture_texts();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let expected = fixture_embeddings();
    let got = encoder.encode_vecs(&refs).expect("encode");
    assert_eq!(got.len(), expected.len());
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(g.len(), 384);
        let cos = cosine(g, e);
        assert!(cos >= 0.9999, "text {i} {:?}: cosine {cos}", texts[i]);
        let norm: f32 = g.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!(
            (norm - 1.0).abs() < 1e-4,
            "text {i}: Normalize module not applied ({norm})"
        );
    }
}

#[test]
fn batching_and_order_do_not_change_results() {
    let texts = fixture_texts();
    let refs: Vec<&str> = texts.iter().take(24).map(String::as_str).collect();
    let device = cpu_device();
    let batched = SentenceEncoder::load(minilm_dir(), &device)
        .expect("load")
        .with_batch_size(7);
    let single = SentenceEncoder::load(minilm_dir(), &device)
        .expect("load")
        .with_batch_size(1);
    let a = batched.encode_vecs(&refs).expect("encode batched");
    let b = single.encode_vecs(&refs).expect("encode one by one");
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(
            cosine(x, y) >= 0.99999,
            "text {i} differs between padded and unpadded runs"
        );
    }
    // Reversed input gives reversed output.
    let reversed: Vec<&str> = refs.iter().rev().copied().collect();
    let c = batched.encode_vecs(&reversed).expect("encode reversed");
    for (i, row) in c.iter().enumerate() {
        assert!(cosine(row, &a[refs.len() - 1 - i]) >= 0.99999);
    }
}

#[test]
fn empty_input_gives_empty_output() {
    let encoder = SentenceEncoder::load(minilm_dir(), &cpu_device()).expect("load");
    let out = encoder.encode(&[]).expect("encode nothing");
    assert_eq!(out.dims(), [0, 384]);
}

#[test]
fn encoder_is_send_and_sync_and_serves_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<SentenceEncoder>();

    let encoder = SentenceEncoder::load(minilm_dir(), &cpu_device()).expect("load");
    let texts = fixture_texts();
    let expected = fixture_embeddings();
    std::thread::scope(|scope| {
        for t in 0..2 {
            let encoder = &encoder;
            let texts = &texts;
            let expected = &expected;
            scope.spawn(move || {
                let idx = [t, t + 2, t + 4];
                let refs: Vec<&str> = idx.iter().map(|&i| texts[i].as_str()).collect();
                let got = encoder.encode_vecs(&refs).expect("encode in thread");
                for (row, &i) in got.iter().zip(&idx) {
                    assert!(cosine(row, &expected[i]) >= 0.9999);
                }
            });
        }
    });
}

#[test]
fn worker_threads_give_the_serial_results_in_input_order() {
    let texts = fixture_texts();
    let refs: Vec<&str> = texts.iter().take(60).map(String::as_str).collect();
    let device = cpu_device();
    let load = |threads| {
        SentenceEncoder::load(minilm_dir(), &device)
            .expect("load")
            .with_batch_size(7)
            .with_threads(threads)
    };
    let serial = load(1).encode_flat(&refs).expect("encode on one thread");
    let parallel = load(3);
    assert_eq!(parallel.threads(), 3);
    let threaded = parallel
        .encode_flat(&refs)
        .expect("encode on three threads");
    assert_eq!(serial.len(), refs.len() * 384);
    let worst = serial
        .iter()
        .zip(&threaded)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        worst <= 1e-6,
        "threaded rows differ from serial ones by {worst}"
    );
    // The tensor API takes the same path and keeps input order.
    let tensor = parallel.encode(&refs).expect("encode to a tensor");
    assert_eq!(tensor.dims(), [refs.len(), 384]);
    let from_tensor: Vec<f32> = tensor.into_data().try_into_vec().expect("f32 data");
    assert_eq!(from_tensor, threaded);
}

#[test]
fn host_kernels_and_burn_ops_both_match_sentence_transformers() {
    let device = cpu_device();
    let host = SentenceEncoder::load(minilm_dir(), &device).expect("load");
    assert!(
        host.uses_host_kernels(),
        "CPU devices default to the host kernels"
    );
    let burn = SentenceEncoder::load(minilm_dir(), &device)
        .expect("load")
        .with_host_kernels(false)
        .expect("burn ops");
    assert!(!burn.uses_host_kernels());
    let texts = fixture_texts();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let expected = fixture_embeddings();
    let (a, b) = (
        host.encode_vecs(&refs).expect("host"),
        burn.encode_vecs(&refs).expect("burn"),
    );
    for (i, ((a, b), e)) in a.iter().zip(&b).zip(&expected).enumerate() {
        assert!(cosine(a, e) >= 0.9999, "host, text {i}: {}", cosine(a, e));
        assert!(cosine(b, e) >= 0.9999, "burn, text {i}: {}", cosine(b, e));
        assert!(
            cosine(a, b) >= 0.99999,
            "text {i}: host vs burn {}",
            cosine(a, b)
        );
    }
    // Switching back on rebuilds the same host weights.
    let again = burn.with_host_kernels(true).expect("host again");
    assert_eq!(again.encode_vecs(&refs).expect("host again"), a);
}

#[test]
fn bf16_dense_layers_match_sentence_transformers_where_the_cpu_has_amx() {
    use sentence_encoder::Precision;
    let device = cpu_device();
    let texts = fixture_texts();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let expected = fixture_embeddings();
    let f32_encoder = SentenceEncoder::load(minilm_dir(), &device).expect("load");
    assert_eq!(
        f32_encoder.precision(),
        Precision::F32,
        "f32 is the default"
    );
    let exact = f32_encoder.encode_vecs(&refs).expect("f32 encode");
    // bf16x3 keeps f32's bound; bf16 (8 significant bits) has its own.
    for (precision, bound) in [(Precision::Bf16x3, 0.9999), (Precision::Bf16, 0.9998)] {
        let encoder = SentenceEncoder::load(minilm_dir(), &device).expect("load");
        if !precision.is_available() {
            let err = encoder.with_precision(precision).expect_err("no AMX");
            assert!(err.to_string().contains("AMX"), "{err}");
            eprintln!("{precision} parity skipped: this CPU has no AMX-BF16");
            return;
        }
        let encoder = encoder.with_precision(precision).expect("precision");
        assert_eq!(encoder.precision(), precision);
        let got = encoder.encode_vecs(&refs).expect("encode");
        let mut differs = false;
        let mut worst = 1f64;
        for (i, ((g, x), e)) in got.iter().zip(&exact).zip(&expected).enumerate() {
            let cos = cosine(g, e);
            worst = worst.min(cos);
            assert!(
                cos >= bound,
                "{precision}, text {i} {:?}: cosine {cos}",
                texts[i]
            );
            differs |= g != x;
        }
        eprintln!("{precision}: cosine min {worst:.7}");
        assert!(
            differs,
            "{precision} gave the f32 results bit for bit: not in use"
        );
        // Back to f32: the f32 results again.
        let back = encoder.with_precision(Precision::F32).expect("f32");
        assert_eq!(back.encode_vecs(&refs).expect("f32 again"), exact);
        // Burn's ops have no bf16 path: a clear error, not a silent f32.
        let burn = back.with_host_kernels(false).expect("burn ops");
        let err = burn
            .with_precision(precision)
            .expect_err("bf16 on burn's ops");
        assert!(err.to_string().contains("host kernels"), "{err}");
    }
}
