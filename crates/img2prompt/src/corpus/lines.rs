//! `.txt` (a record per line) and `.jsonl` (a record per non-blank line, a string field).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::Arc;

use super::{
    BINARY_PROBE, CorpusFormat, CorpusOptions, Position, RawPrompt, input_error, nul_error,
};
use crate::error::{Error, Result};

/// `.txt` and `.jsonl`.
pub(super) struct LineSource {
    path: Arc<Path>,
    jsonl: bool,
    fields: Vec<String>,
    reader: BufReader<File>,
    line: u64,
    buf: Vec<u8>,
}

impl LineSource {
    pub(super) fn open(path: &Path, format: CorpusFormat, options: &CorpusOptions) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let mut source = LineSource {
            path: Arc::from(path),
            jsonl: format == CorpusFormat::Jsonl,
            fields: options
                .candidates()
                .into_iter()
                .map(str::to_owned)
                .collect(),
            reader: BufReader::with_capacity(1 << 16, file),
            line: 0,
            buf: Vec::new(),
        };
        source.probe()?;
        Ok(source)
    }

    /// Refuses a binary `.txt` and checks the first record of a `.jsonl`, without consuming.
    fn probe(&mut self) -> Result<()> {
        if !self.jsonl {
            let head = self
                .reader
                .fill_buf()
                .map_err(|e| Error::io(&*self.path, e))?;
            let head = &head[..head.len().min(BINARY_PROBE)];
            // A binary file fails here, before any model is loaded, with the message the
            // per-record check would give at that line.
            if let Some(at) = head.iter().position(|&b| b == 0) {
                let line_start = head[..at]
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |i| i + 1);
                let line = 1 + head[..at].iter().filter(|&&b| b == b'\n').count() as u64;
                return Err(nul_error(&self.path, Position::Line(line), at - line_start));
            }
            return Ok(());
        }
        let mut probe =
            BufReader::new(File::open(&*self.path).map_err(|e| Error::io(&*self.path, e))?);
        let mut buf = Vec::new();
        let mut line = 0u64;
        loop {
            buf.clear();
            let n = probe
                .read_until(b'\n', &mut buf)
                .map_err(|e| Error::io(&*self.path, e))?;
            if n == 0 {
                return Ok(());
            }
            line += 1;
            let text = decode_line(&self.path, line, &buf)?;
            if !text.trim().is_empty() {
                return json_prompt(&self.path, line, text, &self.fields).map(|_| ());
            }
        }
    }

    pub(super) fn next_record(&mut self) -> Option<Result<RawPrompt>> {
        loop {
            self.buf.clear();
            match self.reader.read_until(b'\n', &mut self.buf) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => return Some(Err(Error::io(&*self.path, e))),
            }
            self.line += 1;
            let text = match decode_line(&self.path, self.line, &self.buf) {
                Ok(t) => t,
                Err(e) => return Some(Err(e)),
            };
            let text = if self.jsonl {
                if text.trim().is_empty() {
                    continue;
                }
                match json_prompt(&self.path, self.line, text, &self.fields) {
                    Ok(t) => t,
                    Err(e) => return Some(Err(e)),
                }
            } else {
                text.to_owned()
            };
            return Some(Ok(RawPrompt {
                text,
                source: self.path.clone(),
                position: Position::Line(self.line),
            }));
        }
    }
}

/// The text of one line read with its terminator: UTF-8 checked, `\n` / `\r\n` stripped.
fn decode_line<'a>(path: &Path, line: u64, bytes: &'a [u8]) -> Result<&'a str> {
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    let text = std::str::from_utf8(bytes)
        .map_err(|_| input_error(path, Some(Position::Line(line)), "not valid UTF-8"))?;
    // A byte-order mark (as some Windows tools write) is not part of the first prompt.
    Ok(if line == 1 {
        text.strip_prefix('\u{feff}').unwrap_or(text)
    } else {
        text
    })
}

/// The prompt of one JSON line: the first of `fields` present (null reads as empty).
fn json_prompt(path: &Path, line: u64, text: &str, fields: &[String]) -> Result<String> {
    let bad = |message: String| input_error(path, Some(Position::Line(line)), message);
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    let object = value
        .as_object()
        .ok_or_else(|| bad("expected a JSON object".to_owned()))?;
    for field in fields {
        match object.get(field) {
            Some(serde_json::Value::String(s)) => return Ok(s.clone()),
            Some(serde_json::Value::Null) => return Ok(String::new()),
            Some(_) => return Err(bad(format!("field {field:?} is not a string"))),
            None => {}
        }
    }
    Err(bad(format!(
        "no field {}",
        fields
            .iter()
            .map(|f| format!("{f:?}"))
            .collect::<Vec<_>>()
            .join(" or ")
    )))
}
