//! The HTTP side of `serve`: routes, request parsing and limits, JSON errors, metrics.
//!
//! Every error is `{"error": "..."}` with a 4xx for the client's mistakes (400 bad input, 404,
//! 405, 408 slow body, 413 too large, 415 not an image) and a 5xx for the server's (500, 503
//! busy or loading, with `Retry-After`).

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use img2prompt::PredictedNeighbour;
use img2prompt::prompt_fusion::FusionConfig;
use img2prompt::tuned_fusion::FusionSource;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::{Deserialize, Serialize};
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use tracing::Level;

use super::engine::{Engine, JobError, Output, TextTower, Work};
use crate::cli::predict::PredictionLine;

/// The web page at `/`: one self-contained file (no CDN), embedded in the binary.
const PAGE: &str = include_str!("page.html");

/// What the server accepts.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Request body bytes, at most.
    pub body_bytes: usize,
    /// Time to read a request and answer it.
    pub timeout: Duration,
    /// Texts in one `/v1/embed/text` request, at most.
    pub max_texts: usize,
    /// Characters in one text, at most.
    pub max_text_chars: usize,
    /// Pixels of one image, at most (checked from its header, before decoding).
    pub max_pixels: u64,
    /// Longer side over shorter side, at most: CLIP resizes the shorter side to 224, so a
    /// 100000x1 image would be stretched beyond any use (and, unbounded, beyond memory).
    pub max_aspect_ratio: u32,
}

/// What every handler shares.
pub struct AppState {
    /// The engine, once the models are loaded (until then the model routes answer 503).
    pub engine: OnceLock<Engine>,
    /// The limits.
    pub limits: Limits,
    /// The Prometheus registry's renderer.
    pub metrics: PrometheusHandle,
    /// The index directory served (for `/readyz`).
    pub index: String,
}

type Shared = Arc<AppState>;

/// The routes.
pub fn router(state: Shared) -> Router {
    let body_limit = state.limits.body_bytes;
    Router::new()
        .route("/", get(page))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/v1/predict", post(predict))
        .route("/v1/embed/image", post(embed_image))
        .route("/v1/embed/text", post(embed_text))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn(json_errors))
        .layer(middleware::from_fn(record_metrics))
        // 5xx are logged where they arise (inference failures); the trace says each at debug.
        .layer(TraceLayer::new_for_http().on_failure(DefaultOnFailure::new().level(Level::DEBUG)))
        .with_state(state)
}

/// An error answer: `{"error": message}` with its status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error_response(self.status, &self.message)
    }
}

/// `{"error": message}` with `status`; 503s say when to retry.
fn error_response(status: StatusCode, message: &str) -> Response {
    let mut response = (status, Json(ErrorBody { error: message })).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// Turns every error answer that is not already JSON (axum's own rejections, 404, 405) into
/// `{"error": ...}`, keeping its status and its text.
async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let text = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    };
    error_response(status, &message)
}

/// The route label of a path: the served routes by name, anything else `other` (so that
/// scanning for URLs cannot grow the metrics without bound).
fn route_label(path: &str) -> &'static str {
    match path {
        "/" => "/",
        "/healthz" => "/healthz",
        "/readyz" => "/readyz",
        "/metrics" => "/metrics",
        "/v1/predict" => "/v1/predict",
        "/v1/embed/image" => "/v1/embed/image",
        "/v1/embed/text" => "/v1/embed/text",
        _ => "other",
    }
}

/// Counts requests by route and status and records their latency.
async fn record_metrics(request: Request, next: Next) -> Response {
    let route = route_label(request.uri().path());
    let start = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("img2prompt_http_requests_total", "route" => route, "status" => status)
        .increment(1);
    metrics::histogram!("img2prompt_http_request_duration_seconds", "route" => route)
        .record(start.elapsed().as_secs_f64());
    response
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

async fn not_found(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no route {} {}", request.method(), request.uri().path()),
    )
}

#[derive(Serialize)]
struct Status<'a> {
    status: &'a str,
}

async fn healthz() -> Json<Status<'static>> {
    Json(Status { status: "ok" })
}

#[derive(Serialize)]
struct Ready<'a> {
    status: &'a str,
    index: &'a str,
    key_model: String,
    target_model: String,
    prompts: usize,
    k: usize,
    fusion: FusionConfig,
    fusion_source: FusionSource,
    text: &'static str,
}

async fn readyz(State(state): State<Shared>) -> Response {
    match state.engine.get() {
        None => error_response(StatusCode::SERVICE_UNAVAILABLE, "models are loading"),
        Some(engine) => {
            let models = engine.models();
            let index = models.predictor.index();
            Json(Ready {
                status: "ready",
                index: &state.index,
                key_model: models.predictor.image_encoder().model_id().to_string(),
                target_model: models.sentence.model_id().to_string(),
                prompts: index.len(),
                k: models.fusion.k,
                fusion: models.fusion,
                fusion_source: models.fusion_source,
                text: models.predictor.text_mode(),
            })
            .into_response()
        }
    }
}

async fn metrics_text(State(state): State<Shared>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// `?k=` (neighbours fused, at most the server's `--k`) and `?neighbors=` (neighbours listed).
#[derive(Debug, Deserialize)]
struct PredictQuery {
    k: Option<usize>,
    neighbors: Option<usize>,
}

async fn predict(
    State(state): State<Shared>,
    query: Result<Query<PredictQuery>, axum::extract::rejection::QueryRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    let deadline = Instant::now() + state.limits.timeout;
    // The body is read before any refusal: a server that answers and closes with an unread body
    // in its socket makes the kernel reset the connection, and the client may lose the answer.
    let upload = read_image(request, &state, deadline).await;
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let engine = ready(&state)?;
    let max_k = engine.models().fusion.k;
    let k = match query.k {
        None => max_k,
        Some(k) if (1..=max_k).contains(&k) => k,
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "k must be between 1 and the server's k ({max_k}), got {k}"
            )));
        }
    };
    let (image, name) = upload?;
    let output = run(
        engine,
        Work::Predict {
            image,
            name: name.clone(),
            k,
        },
        deadline,
    )
    .await?;
    let Output::Prediction(prediction) = output else {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "unexpected answer",
        ));
    };
    let listed = query.neighbors.unwrap_or(usize::MAX);
    let neighbours: &[PredictedNeighbour] =
        &prediction.neighbours[..listed.min(prediction.neighbours.len())];
    Ok(Json(PredictionLine {
        image: name,
        embedding: &prediction.embedding,
        prompt: &prediction.prompt,
        neighbors: neighbours,
    })
    .into_response())
}

#[derive(Serialize)]
struct ImageEmbedding<'a> {
    image: String,
    model: String,
    embedding: &'a [f32],
}

async fn embed_image(State(state): State<Shared>, request: Request) -> Result<Response, ApiError> {
    let deadline = Instant::now() + state.limits.timeout;
    // Read first, then refuse (see `predict`).
    let upload = read_image(request, &state, deadline).await;
    let engine = ready(&state)?;
    let (image, name) = upload?;
    let output = run(
        engine,
        Work::EmbedImage {
            image,
            name: name.clone(),
        },
        deadline,
    )
    .await?;
    let Output::Embedding(embedding) = output else {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "unexpected answer",
        ));
    };
    Ok(Json(ImageEmbedding {
        image: name,
        model: engine
            .models()
            .predictor
            .image_encoder()
            .model_id()
            .to_string(),
        embedding: &embedding,
    })
    .into_response())
}

/// `/v1/embed/text`'s body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TextRequest {
    texts: Vec<String>,
    /// `sentence` (default: the index's sentence model) or `clip` (its CLIP text tower).
    #[serde(default)]
    model: Option<String>,
}

#[derive(Serialize)]
struct TextEmbeddings {
    model: String,
    dim: usize,
    embeddings: Vec<Vec<f32>>,
}

async fn embed_text(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let deadline = Instant::now() + state.limits.timeout;
    let engine = ready(&state)?;
    let content_type = content_type(&headers);
    if !content_type.is_empty() && !content_type.starts_with("application/json") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("expected application/json, got {content_type}"),
        ));
    }
    let request: TextRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    let tower = match request.model.as_deref() {
        None | Some("sentence") => TextTower::Sentence,
        Some("clip") => TextTower::Clip,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "model must be \"sentence\" or \"clip\", got {other:?}"
            )));
        }
    };
    check_texts(&request.texts, &state.limits)?;
    let models = engine.models();
    let embedder = match tower {
        TextTower::Sentence => &models.sentence,
        TextTower::Clip => &models.clip_text,
    };
    let (model, dim) = (embedder.model_id().to_string(), embedder.dim());
    let output = run(
        engine,
        Work::EmbedText {
            texts: request.texts,
            tower,
        },
        deadline,
    )
    .await?;
    let Output::Embeddings(embeddings) = output else {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "unexpected answer",
        ));
    };
    Ok(Json(TextEmbeddings {
        model,
        dim,
        embeddings,
    })
    .into_response())
}

/// The texts rule `embed-text` and `index build` apply (no empty text, no NUL byte), plus the
/// server's count and length limits.
fn check_texts(texts: &[String], limits: &Limits) -> Result<(), ApiError> {
    if texts.is_empty() {
        return Err(ApiError::bad_request("texts is empty"));
    }
    if texts.len() > limits.max_texts {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{} texts in one request; at most {}",
                texts.len(),
                limits.max_texts
            ),
        ));
    }
    for (i, text) in texts.iter().enumerate() {
        if text.trim().is_empty() {
            return Err(ApiError::bad_request(format!("texts[{i}] is empty")));
        }
        if text.contains('\0') {
            return Err(ApiError::bad_request(format!(
                "texts[{i}] contains a NUL byte"
            )));
        }
        if text.chars().count() > limits.max_text_chars {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "texts[{i}] has more than {} characters",
                    limits.max_text_chars
                ),
            ));
        }
    }
    Ok(())
}

/// The engine, or 503 while the models load.
fn ready(state: &AppState) -> Result<&Engine, ApiError> {
    state
        .engine
        .get()
        .ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "models are loading"))
}

/// Queues `work` and waits for its answer until `deadline`.
async fn run(engine: &Engine, work: Work, deadline: Instant) -> Result<Output, ApiError> {
    let answer = engine.submit(work).map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is busy (queue full); retry shortly",
        )
    })?;
    let left = deadline.saturating_duration_since(Instant::now());
    match tokio::time::timeout(left, answer).await {
        Err(_) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timed out waiting for inference; retry shortly",
        )),
        Ok(Err(_)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down",
        )),
        Ok(Ok(Err(JobError::BadInput(message)))) => Err(ApiError::bad_request(message)),
        Ok(Ok(Err(JobError::Internal(message)))) => {
            tracing::error!("inference failed: {message}");
            Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message))
        }
        Ok(Ok(Ok(output))) => Ok(output),
    }
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// The uploaded image and a name for it: a raw body (any `image/*` type or
/// `application/octet-stream`; no type is taken as raw too) or the `image` field of a
/// multipart form. Read within the body limit and before `deadline`; the content must look like
/// a known image format (else 415).
async fn read_image(
    request: Request,
    state: &Shared,
    deadline: Instant,
) -> Result<(Bytes, String), ApiError> {
    let content_type = content_type(request.headers());
    // A declared length over the limit is refused before a byte of the body is read.
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared
        && len > state.limits.body_bytes as u64
    {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the body is {len} bytes; the limit is {} bytes",
                state.limits.body_bytes
            ),
        ));
    }
    let left = deadline.saturating_duration_since(Instant::now());
    let read = async {
        if content_type.starts_with("multipart/form-data") {
            read_multipart(request, state).await
        } else if content_type.is_empty()
            || content_type.starts_with("image/")
            || content_type.starts_with("application/octet-stream")
        {
            let bytes = Bytes::from_request(request, state)
                .await
                .map_err(|e| ApiError::new(e.status(), e.body_text()))?;
            Ok((bytes, "upload".to_owned()))
        } else {
            // Drained (within the limit) so that the refusal reaches the client.
            let _ = axum::body::to_bytes(request.into_body(), state.limits.body_bytes).await;
            Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "expected an image body (image/* or application/octet-stream) or a \
                     multipart form with an `image` field, got {content_type}"
                ),
            ))
        }
    };
    let (bytes, name) = tokio::time::timeout(left, read).await.map_err(|_| {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "timed out reading the request body",
        )
    })??;
    if bytes.is_empty() {
        return Err(ApiError::bad_request(format!("{name}: empty body")));
    }
    if img2prompt::image::guess_format(&bytes).is_err() {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("{name}: not a recognised image format"),
        ));
    }
    check_dimensions(&bytes, &name, &state.limits)?;
    Ok((bytes, name))
}

/// Refuses, from the image's header alone, an image with too many pixels or too extreme an
/// aspect ratio (a 375-byte 100000x1 PNG is a valid image that no CLIP can use).
fn check_dimensions(bytes: &[u8], name: &str, limits: &Limits) -> Result<(), ApiError> {
    let (w, h) = img2prompt::image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ApiError::bad_request(format!("{name}: {e}")))?
        .into_dimensions()
        .map_err(|e| ApiError::bad_request(format!("{name}: {e}")))?;
    if w == 0 || h == 0 {
        return Err(ApiError::bad_request(format!(
            "{name}: the image is {w}x{h}"
        )));
    }
    if u64::from(w) * u64::from(h) > limits.max_pixels {
        return Err(ApiError::bad_request(format!(
            "{name}: {w}x{h} is more than {} pixels",
            limits.max_pixels
        )));
    }
    let (long, short) = (w.max(h), w.min(h));
    if u64::from(long) > u64::from(short) * u64::from(limits.max_aspect_ratio) {
        return Err(ApiError::bad_request(format!(
            "{name}: {w}x{h} has an aspect ratio beyond {}:1",
            limits.max_aspect_ratio
        )));
    }
    Ok(())
}

/// The `image` field of a multipart form (other fields are skipped).
async fn read_multipart(
    request: Request<Body>,
    state: &Shared,
) -> Result<(Bytes, String), ApiError> {
    let mut form = Multipart::from_request(request, state)
        .await
        .map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| ApiError::new(e.status(), e.body_text()))?
    {
        if field.name() == Some("image") {
            let name = field.file_name().unwrap_or("image").to_owned();
            let bytes = field
                .bytes()
                .await
                .map_err(|e| ApiError::new(e.status(), e.body_text()))?;
            return Ok((bytes, name));
        }
    }
    Err(ApiError::bad_request(
        "the multipart form has no `image` field",
    ))
}
