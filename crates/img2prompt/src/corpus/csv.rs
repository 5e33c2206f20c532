//! `.csv` with a header row; the prompt is a named column.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use super::{CorpusOptions, Position, RawPrompt, find_column, input_error, missing_column};
use crate::error::{Error, Result};

/// `.csv` with a header row.
pub(super) struct CsvSource {
    path: Arc<Path>,
    reader: csv::Reader<File>,
    column: usize,
    record: csv::StringRecord,
    /// Byte offset and line where the last record read starts.
    last_start: Option<(u64, u64)>,
}

impl CsvSource {
    pub(super) fn open(path: &Path, options: &CorpusOptions) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(file);
        let headers = reader
            .headers()
            .map_err(|e| input_error(path, Some(Position::Line(1)), csv_message(&e)))?
            .clone();
        let names: Vec<&str> = headers.iter().collect();
        let column = find_column(names.iter().copied(), options)
            .ok_or_else(|| missing_column(path, options, &names))?;
        Ok(Self {
            path: Arc::from(path),
            reader,
            column,
            record: csv::StringRecord::new(),
            last_start: None,
        })
    }

    pub(super) fn next_record(&mut self) -> Option<Result<RawPrompt>> {
        match self.reader.read_record(&mut self.record) {
            Ok(false) => match self.last_start {
                // The csv crate ends a quoted field at the end of the file without a word:
                // an unclosed quote would swallow every line after it into one prompt.
                Some((byte, line)) => match unclosed_quote(&self.path, byte) {
                    Ok(false) => None,
                    Ok(true) => Some(Err(input_error(
                        &self.path,
                        Some(Position::Line(line)),
                        "a quoted field is never closed (its quote runs to the end of the file)",
                    ))),
                    Err(e) => Some(Err(e)),
                },
                None => None,
            },
            Ok(true) => {
                let line = self.record.position().map_or(0, |p| p.line());
                self.last_start = self.record.position().map(|p| (p.byte(), p.line()));
                match self.record.get(self.column) {
                    Some(text) => Some(Ok(RawPrompt {
                        text: text.to_owned(),
                        source: self.path.clone(),
                        position: Position::Line(line),
                    })),
                    None => Some(Err(input_error(
                        &self.path,
                        Some(Position::Line(line)),
                        format!("record has no field {}", self.column + 1),
                    ))),
                }
            }
            Err(e) => {
                let line = e
                    .position()
                    .map_or_else(|| self.reader.position().line(), |p| p.line());
                Some(Err(input_error(
                    &self.path,
                    Some(Position::Line(line)),
                    csv_message(&e),
                )))
            }
        }
    }
}

/// A csv error without the position the crate puts in its own message (we name the line).
fn csv_message(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".to_owned(),
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("record has {len} fields, the header {expected_len}"),
        csv::ErrorKind::Io(io) => io.to_string(),
        _ => e.to_string(),
    }
}

/// Whether the record starting at byte `start` of `path` (the last one) ends inside a quoted
/// field, following the csv crate's defaults (`"` quotes, `""` escapes, `,` separates).
pub(crate) fn unclosed_quote(path: &Path, start: u64) -> Result<bool> {
    use std::io::{BufRead, BufReader, Seek, SeekFrom};
    #[derive(PartialEq)]
    enum State {
        FieldStart,
        Unquoted,
        Quoted,
        QuoteInQuoted,
    }
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    file.seek(SeekFrom::Start(start))
        .map_err(|e| Error::io(path, e))?;
    let mut reader = BufReader::new(file);
    let mut state = State::FieldStart;
    loop {
        let buf = reader.fill_buf().map_err(|e| Error::io(path, e))?;
        if buf.is_empty() {
            return Ok(state == State::Quoted);
        }
        for &b in buf {
            state = match (state, b) {
                (State::FieldStart, b'"') => State::Quoted,
                (State::FieldStart | State::Unquoted | State::QuoteInQuoted, b',') => {
                    State::FieldStart
                }
                // A record ends outside quotes: whatever follows is another record, which the
                // reader would have returned; the last one ended cleanly.
                (State::FieldStart | State::Unquoted | State::QuoteInQuoted, b'\n' | b'\r') => {
                    return Ok(false);
                }
                (State::Quoted, b'"') => State::QuoteInQuoted,
                (State::Quoted, _) => State::Quoted,
                (State::QuoteInQuoted, b'"') => State::Quoted,
                (_, _) => State::Unquoted,
            };
        }
        let n = buf.len();
        reader.consume(n);
    }
}
