//! `serve`: the predictor as an HTTP service (axum on tokio).
//!
//! - [`engine`]: the models, the bounded queue and the batching workers (inference never runs
//!   on the async runtime's threads).
//! - [`http`]: routes, limits, JSON errors, Prometheus metrics, the embedded web page.
//!
//! The server listens at once (`/healthz` answers), loads the models in the background
//! (`/readyz` answers 503 until they are loaded), and on SIGTERM or ctrl-c stops accepting,
//! answers the requests in flight, drains the queue and exits 0.

mod engine;
mod http;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use clap::Args;
use img2prompt::compose::ComposeOptions;
use img2prompt::{ClipTextEmbedder, Error, Predictor, Result, SentenceTextEmbedder};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

use self::engine::{Engine, EngineOptions, Models as EngineModels};
use self::http::{AppState, Limits};
use crate::cli::{FusionArgs, at_least_one, parse_backend, parse_precision, positive};
use crate::models::Models;

/// `serve` arguments.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Index directory (from `index build`; `head.safetensors` is used when present).
    #[arg(long)]
    pub index: PathBuf,
    /// Address to listen on (port 0 picks a free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Neighbours and blend weights (a request's `?k=` may ask for fewer neighbours).
    #[command(flatten)]
    pub fusion: FusionArgs,
    /// Compose the prompt text from the neighbours' phrases (as `predict --compose`).
    #[arg(long)]
    pub compose: bool,
    /// Backend: ndarray, flex, cpu, wgpu or cuda (default: the fastest CPU backend compiled in).
    #[arg(long, value_parser = parse_backend)]
    pub backend: Option<img2prompt::Backend>,
    /// Arithmetic of the encoders' dense layers: f32, bf16x3 or bf16 (the last two on Intel AMX
    /// CPUs only; see `embed-image --help`).
    #[arg(long, default_value = "f32", value_parser = parse_precision)]
    pub precision: img2prompt::Precision,
    /// Images run through the image tower at once, at most (dynamic batching; 1 turns it off).
    #[arg(long, default_value_t = 16, value_parser = at_least_one)]
    pub max_batch: usize,
    /// Milliseconds a worker waits for more images once it holds one.
    #[arg(long, default_value_t = 5)]
    pub max_wait_ms: u64,
    /// Requests waiting for a worker, at most; beyond it requests get 503 with Retry-After.
    #[arg(long, default_value_t = 64, value_parser = at_least_one)]
    pub queue: usize,
    /// Inference worker threads (each runs one batch at a time).
    #[arg(long, default_value_t = 1, value_parser = at_least_one)]
    pub workers: usize,
    /// Request body limit in MiB (larger bodies get 413).
    #[arg(long, default_value_t = 20.0, value_parser = positive)]
    pub body_limit_mib: f64,
    /// Decoded pixels per image, at most (larger images get 400 before they are decoded).
    #[arg(long, default_value_t = 16_777_216, value_parser = at_least_one)]
    pub max_pixels: usize,
    /// Longer side over shorter side of an image, at most (more extreme images get 400).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_aspect_ratio: u32,
    /// Seconds to read a request and answer it (slow bodies get 408, slow answers 503).
    #[arg(long, default_value_t = 30.0, value_parser = positive)]
    pub timeout_s: f64,
    /// Texts in one `/v1/embed/text` request, at most.
    #[arg(long, default_value_t = 256, value_parser = at_least_one)]
    pub max_texts: usize,
    /// Log each request (method, path, status, latency) on stderr.
    #[arg(long)]
    pub verbose: bool,
}

/// Runs `serve` until SIGTERM or ctrl-c.
pub(crate) fn run(models: &Models, args: &ServeArgs) -> Result<()> {
    let level = if args.verbose {
        tracing::Level::DEBUG
    } else {
        tracing::Level::INFO
    };
    // Another subscriber already set (never, in the binary) only means logs go there.
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .try_init();
    let metrics = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("img2prompt_batch_size".into()),
            &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0],
        )
        .and_then(|b| {
            b.set_buckets(&[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ])
        })
        .map_err(|e| Error::Backend(format!("metrics: {e}")))?
        .install_recorder()
        .map_err(|e| Error::Backend(format!("metrics: {e}")))?;

    // Everything the models need is checked before listening: a bad index or checkpoint is a
    // one-line error and exit 1, not a server that never gets ready.
    let (options, fusion, source) = args
        .fusion
        .open_options(&args.index, args.compose.then(ComposeOptions::default))?;
    let options = options.with_precision(args.precision);
    let device = args.backend.unwrap_or_default().device()?;
    let checkpoints = args.fusion.index_models(models, &args.index, true)?;
    let engine_options = EngineOptions {
        max_batch: args.max_batch,
        max_wait: Duration::from_millis(args.max_wait_ms),
        queue: args.queue,
        workers: args.workers,
        max_pixels: args.max_pixels as u64,
    };
    let limits = Limits {
        body_bytes: (args.body_limit_mib * 1024.0 * 1024.0) as usize,
        timeout: Duration::from_secs_f64(args.timeout_s),
        max_texts: args.max_texts,
        max_text_chars: 20_000,
        max_pixels: args.max_pixels as u64,
        max_aspect_ratio: args.max_aspect_ratio,
    };
    let state = Arc::new(AppState {
        engine: OnceLock::new(),
        limits,
        metrics: metrics.clone(),
        index: args.index.display().to_string(),
    });

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("img2prompt-http")
        .build()
        .map_err(|e| Error::Backend(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .map_err(|e| Error::invalid("addr", format!("cannot listen on {}: {e}", args.addr)))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Backend(format!("listener address: {e}")))?;
        // The one line a script (or a test) waits for.
        println!("listening on http://{addr}");
        use std::io::Write as _;
        let _ = std::io::stdout().flush();

        // Histograms are drained into their buckets by upkeep: bounded memory under load.
        let upkeep = metrics.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                upkeep.run_upkeep();
            }
        });

        // A model that fails to load stops the server with its error (exit 1).
        let failure = Arc::new(std::sync::Mutex::new(None::<Error>));
        let failed = Arc::new(tokio::sync::Notify::new());
        let loader_state = Arc::clone(&state);
        let (loader_failure, loader_failed) = (Arc::clone(&failure), Arc::clone(&failed));
        let index = args.index.clone();
        tokio::task::spawn_blocking(move || {
            let loaded = (|| -> Result<Engine> {
                let predictor = Predictor::open(&index, &checkpoints, &options, &device)?;
                let sentence_dir = checkpoints.sentence_dir("embedding texts")?;
                let sentence = Arc::new(
                    SentenceTextEmbedder::load(sentence_dir, &device)?
                        .with_precision(options.precision)?,
                );
                let clip_text = Arc::new(
                    ClipTextEmbedder::load(&checkpoints.clip, &device)?
                        .with_precision(options.precision)?,
                );
                let models = EngineModels {
                    predictor,
                    fusion,
                    fusion_source: source,
                    sentence,
                    clip_text,
                };
                Engine::start(models, engine_options)
                    .map_err(|e| Error::Backend(format!("cannot start inference workers: {e}")))
            })();
            match loaded {
                Ok(engine) => {
                    let text = engine.models().predictor.text_mode();
                    let _ = loader_state.engine.set(engine);
                    tracing::info!(
                        text,
                        fusion = source.describe(),
                        k = fusion.k,
                        w_knn = fusion.weights.knn,
                        w_clip = fusion.weights.clip,
                        "models loaded; ready"
                    );
                }
                Err(e) => {
                    *loader_failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    loader_failed.notify_one();
                }
            }
        });

        let app = http::router(Arc::clone(&state));
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                tokio::select! {
                    _ = shutdown_signal() => {
                        tracing::info!("shutting down: answering the requests in flight");
                    }
                    _ = failed.notified() => {}
                }
            })
            .await
            .map_err(|e| Error::Backend(format!("server: {e}")))?;
        match failure.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    })?;
    runtime.shutdown_timeout(Duration::from_secs(5));
    // The last requests are answered; the queue is empty or holds abandoned jobs.
    if let Some(state) = Arc::into_inner(state)
        && let Some(engine) = state.engine.into_inner()
    {
        engine.shutdown();
    }
    Ok(())
}

/// Resolves on SIGTERM or ctrl-c (SIGINT).
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
