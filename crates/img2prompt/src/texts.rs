//! Reading text inputs: `.txt` (one text per line) and `.jsonl` (a string field per line).

use std::io::{BufRead, BufReader};
use std::path::Path;

use crate::error::{Error, Result};

/// The input formats the CLI reads texts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextFormat {
    /// One text per line; a trailing newline does not add an empty text; `\r\n` is accepted.
    Txt,
    /// One JSON object per line with a string field; blank lines are skipped.
    Jsonl,
}

impl TextFormat {
    /// Picks the format from the file extension.
    pub fn from_path(path: &Path) -> Result<Self> {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("txt") => Ok(TextFormat::Txt),
            Some("jsonl") => Ok(TextFormat::Jsonl),
            _ => Err(Error::Input {
                path: path.to_owned(),
                line: None,
                message: "unsupported input format (expected a .txt or .jsonl file)".to_owned(),
            }),
        }
    }
}

/// Reads every text of `path`, in order. For `.jsonl`, the first of `fields` present on a line
/// is taken (e.g. `["text"]`, or `["text", "prompt"]`).
pub fn read_texts(path: &Path, fields: &[&str]) -> Result<Vec<String>> {
    let format = TextFormat::from_path(path)?;
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let reader = BufReader::new(file);
    let mut texts = Vec::new();
    for (index, line) in reader.split(b'\n').enumerate() {
        let number = index + 1;
        let bytes = line.map_err(|e| Error::io(path, e))?;
        let line = String::from_utf8(bytes).map_err(|_| Error::Input {
            path: path.to_owned(),
            line: Some(number),
            message: "not valid UTF-8".to_owned(),
        })?;
        let line = line.strip_suffix('\r').unwrap_or(&line);
        match format {
            TextFormat::Txt => texts.push(line.to_owned()),
            TextFormat::Jsonl => {
                if line.trim().is_empty() {
                    continue;
                }
                texts.push(json_text(path, number, line, fields)?);
            }
        }
    }
    Ok(texts)
}

fn json_text(path: &Path, number: usize, line: &str, fields: &[&str]) -> Result<String> {
    let bad = |message: String| Error::Input {
        path: path.to_owned(),
        line: Some(number),
        message,
    };
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    let object = value
        .as_object()
        .ok_or_else(|| bad("expected a JSON object".to_owned()))?;
    for field in fields {
        match object.get(*field) {
            Some(serde_json::Value::String(text)) => return Ok(text.clone()),
            Some(other) => {
                return Err(bad(format!(
                    "field {field:?} must be a string, found {}",
                    json_kind(other)
                )));
            }
            None => {}
        }
    }
    Err(bad(format!(
        "missing string field {}",
        fields
            .iter()
            .map(|f| format!("{f:?}"))
            .collect::<Vec<_>>()
            .join(" or ")
    )))
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, content: &[u8]) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    #[test]
    fn txt_lines_keep_empty_texts_but_not_the_final_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "a.txt",
            "one\r\n\n  three \nvier ü\n".as_bytes(),
        );
        assert_eq!(
            read_texts(&path, &["text"]).unwrap(),
            vec!["one", "", "  three ", "vier ü"]
        );
        let path = write(dir.path(), "b.txt", b"no newline");
        assert_eq!(read_texts(&path, &["text"]).unwrap(), vec!["no newline"]);
    }

    #[test]
    fn jsonl_reads_the_field_and_names_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "a.jsonl",
            "{\"text\": \"a \\\"quoted\\\" 猫\"}\n\n{\"text\": \"\", \"x\": 1}\n".as_bytes(),
        );
        assert_eq!(
            read_texts(&path, &["text"]).unwrap(),
            vec!["a \"quoted\" 猫", ""]
        );

        let path = write(dir.path(), "bad.jsonl", b"{\"text\": \"ok\"}\n{oops\n");
        let err = read_texts(&path, &["text"]).unwrap_err().to_string();
        assert!(err.contains("bad.jsonl:2: invalid JSON"), "{err}");

        let path = write(dir.path(), "missing.jsonl", b"{\"prompt\": \"p\"}\n");
        let err = read_texts(&path, &["text"]).unwrap_err().to_string();
        assert!(
            err.contains("missing.jsonl:1: missing string field \"text\""),
            "{err}"
        );
        assert_eq!(read_texts(&path, &["text", "prompt"]).unwrap(), vec!["p"]);

        let path = write(dir.path(), "num.jsonl", b"{\"text\": 3}\n");
        let err = read_texts(&path, &["text"]).unwrap_err().to_string();
        assert!(
            err.contains("num.jsonl:1: field \"text\" must be a string"),
            "{err}"
        );
    }

    #[test]
    fn bad_utf8_missing_file_and_unknown_extension() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "bin.txt", b"ok\n\xff\xfe\n");
        let err = read_texts(&path, &["text"]).unwrap_err().to_string();
        assert!(err.contains("bin.txt:2: not valid UTF-8"), "{err}");

        let err = read_texts(&dir.path().join("nope.txt"), &["text"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope.txt"), "{err}");

        let path = write(dir.path(), "a.csv", b"x");
        let err = read_texts(&path, &["text"]).unwrap_err().to_string();
        assert!(err.contains("a.csv: unsupported input format"), "{err}");
    }
}
