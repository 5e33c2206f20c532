//! Prompt corpora: streaming readers (.txt, .jsonl, .csv, .parquet) and cleaning.
//!
//! [`Corpus`] opens one or more files (a directory stands for its corpus files, sorted by name)
//! and yields their records in order as [`RawPrompt`]s, one at a time: memory stays flat however
//! large the corpus (a Parquet file is read one row group at a time). Formats, by extension:
//!
//! | extension | one prompt per | where the text is |
//! | --- | --- | --- |
//! | `.txt` | line (`\n` or `\r\n`) | the whole line |
//! | `.jsonl` | non-blank line, a JSON object | a string field |
//! | `.csv` | record after the header row | a named column |
//! | `.parquet` | row | a named string column (DiffusionDB / LAION metadata) |
//!
//! The field or column is [`CorpusOptions::column`], else the first of [`DEFAULT_COLUMNS`]
//! present (`prompt`, then `text`; a column name that only differs in case is accepted when no
//! exact match exists). A JSON `null` or Parquet null reads as an empty prompt.
//!
//! [`Cleaner`] then applies the paper's cleaning: trim, collapse internal whitespace runs to one
//! space, drop empty prompts and exact duplicates (after normalisation), counting each in
//! [`CleanStats`]. Duplicates are found with a set of xxh3-128 hashes of the cleaned texts
//! (16 bytes per distinct prompt: ~2 GB for 100M prompts).
//!
//! Every text read is checked by one rule ([`check_text`]): a text holding a NUL byte is an
//! error naming its file and line, whichever the format (a `.txt` whose first 64 KiB hold one
//! is refused as a binary file when opened). `.csv` and `.parquet` need the crate features of
//! the same names.
//!
//! Errors name the file and the line (or Parquet row), and the iterator stops after the first.

mod clean;
#[cfg(feature = "csv")]
mod csv;
mod lines;
#[cfg(feature = "parquet")]
mod parquet;

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use clean::{CleanStats, Cleaned, Cleaner, normalize};
#[cfg(feature = "csv")]
pub(crate) use csv::unclosed_quote as unclosed_csv_quote;

use crate::error::{Error, Result};

/// The fields / columns tried, in order, when none is named.
pub const DEFAULT_COLUMNS: [&str; 2] = ["prompt", "text"];

/// Bytes of a `.txt` file checked for NUL bytes when it is opened (a binary file is refused).
const BINARY_PROBE: usize = 64 * 1024;

/// The corpus file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CorpusFormat {
    /// One prompt per line.
    Txt,
    /// One JSON object per non-blank line; the prompt is a string field.
    Jsonl,
    /// Comma-separated values with a header row; the prompt is a named column.
    Csv,
    /// Apache Parquet; the prompt is a named string column.
    Parquet,
}

impl CorpusFormat {
    /// The format of `path`, from its extension (case-insensitive).
    pub fn from_path(path: &Path) -> Result<Self> {
        match extension(path).as_deref() {
            Some("txt") => Ok(CorpusFormat::Txt),
            Some("jsonl") => Ok(CorpusFormat::Jsonl),
            Some("csv") => Ok(CorpusFormat::Csv),
            Some("parquet") => Ok(CorpusFormat::Parquet),
            _ => Err(Error::Input {
                path: path.to_owned(),
                line: None,
                message: "not a prompt corpus (expected a .txt, .jsonl, .csv or .parquet file)"
                    .to_owned(),
            }),
        }
    }
}

fn extension(path: &Path) -> Option<String> {
    path.extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
}

/// Where a record is in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// 1-based line (`.txt`, `.jsonl`; for `.csv` the line the record starts on).
    Line(u64),
    /// 1-based row (`.parquet`), counted over the whole file.
    Row(u64),
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Line(n) => write!(f, "line {n}"),
            Position::Row(n) => write!(f, "row {n}"),
        }
    }
}

/// One record of a corpus, before cleaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawPrompt {
    /// The prompt text as stored (a null reads as `""`).
    pub text: String,
    /// The file it came from.
    pub source: Arc<Path>,
    /// Where in that file.
    pub position: Position,
}

impl AsRef<str> for RawPrompt {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

/// How to read a corpus.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CorpusOptions {
    /// The JSON field / CSV column / Parquet column holding the prompt; `None`: the first of
    /// [`DEFAULT_COLUMNS`] present. Ignored for `.txt`.
    pub column: Option<String>,
}

impl CorpusOptions {
    /// Options reading the given column (or the default ones when `None`).
    pub fn with_column(column: Option<&str>) -> Self {
        Self {
            column: column.map(str::to_owned),
        }
    }

    fn candidates(&self) -> Vec<&str> {
        match &self.column {
            Some(c) => vec![c.as_str()],
            None => DEFAULT_COLUMNS.to_vec(),
        }
    }

    #[cfg(any(feature = "csv", feature = "parquet"))]
    fn describe(&self) -> String {
        self.candidates()
            .iter()
            .map(|c| format!("{c:?}"))
            .collect::<Vec<_>>()
            .join(" or ")
    }
}

/// A validated corpus file, not yet being read.
#[derive(Debug, Clone)]
struct CorpusFile {
    path: Arc<Path>,
    format: CorpusFormat,
}

/// A streaming reader over the records of one or more corpus files, in order.
///
/// [`Corpus::open`] checks every file up front (it exists, its format is known, it holds the
/// column), so that a bad input fails before any model is loaded. Iterating yields
/// `Result<RawPrompt>`; after an error the iterator ends.
pub struct Corpus {
    files: Vec<CorpusFile>,
    options: CorpusOptions,
    next_file: usize,
    current: Option<Source>,
    done: bool,
}

impl fmt::Debug for Corpus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Corpus")
            .field("files", &self.files)
            .field("options", &self.options)
            .field("next_file", &self.next_file)
            .finish_non_exhaustive()
    }
}

impl Corpus {
    /// Opens `paths` (files, or directories standing for their `.txt`/`.jsonl`/`.csv`/`.parquet`
    /// files sorted by name) and checks each: readable, a known format, holding the column.
    pub fn open(paths: &[PathBuf], options: CorpusOptions) -> Result<Self> {
        if paths.is_empty() {
            return Err(Error::invalid("paths", "no corpus file given"));
        }
        let mut files = Vec::new();
        for path in paths {
            let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
            if meta.is_dir() {
                let mut found = Vec::new();
                for entry in std::fs::read_dir(path).map_err(|e| Error::io(path, e))? {
                    let entry = entry.map_err(|e| Error::io(path, e))?;
                    let p = entry.path();
                    if p.is_file() && CorpusFormat::from_path(&p).is_ok() {
                        found.push(p);
                    }
                }
                if found.is_empty() {
                    return Err(Error::Input {
                        path: path.clone(),
                        line: None,
                        message: "directory holds no .txt, .jsonl, .csv or .parquet file"
                            .to_owned(),
                    });
                }
                found.sort();
                files.extend(found);
            } else {
                files.push(path.clone());
            }
        }
        let files = files
            .into_iter()
            .map(|path| {
                let format = CorpusFormat::from_path(&path)?;
                // Opening runs every check a reader makes before its first record.
                Source::open(&path, format, &options)?;
                Ok(CorpusFile {
                    path: Arc::from(path.as_path()),
                    format,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            files,
            options,
            next_file: 0,
            current: None,
            done: false,
        })
    }

    /// The files read, in order (directories expanded).
    pub fn paths(&self) -> Vec<&Path> {
        self.files.iter().map(|f| &*f.path).collect()
    }

    /// The files read, for messages: `a.txt, b.parquet`.
    pub fn label(&self) -> String {
        self.files
            .iter()
            .map(|f| f.path.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// An upper bound on the number of records, found cheaply: line counts of the text formats
    /// (a byte scan), row counts from Parquet footers. Used for progress and to pick an index
    /// spec; reads the text files once.
    pub fn count_records(&self) -> Result<u64> {
        let mut total = 0u64;
        for file in &self.files {
            total += match file.format {
                CorpusFormat::Txt | CorpusFormat::Jsonl => count_lines(&file.path)?,
                CorpusFormat::Csv => count_lines(&file.path)?.saturating_sub(1),
                #[cfg(feature = "parquet")]
                CorpusFormat::Parquet => parquet::count_rows(&file.path)?,
                #[cfg(not(feature = "parquet"))]
                CorpusFormat::Parquet => return Err(not_compiled(&file.path, file.format)),
            };
        }
        Ok(total)
    }

    /// A new reader over the same files, from the start.
    pub fn reopen(&self) -> Corpus {
        Corpus {
            files: self.files.clone(),
            options: self.options.clone(),
            next_file: 0,
            current: None,
            done: false,
        }
    }

    /// Fails unless some record survives cleaning (reads up to the first that does, so it is
    /// cheap for any corpus but an empty one): the empty-corpus check, before loading models.
    pub fn ensure_prompt(&self) -> Result<()> {
        let mut cleaner = Cleaner::new();
        for record in self.reopen() {
            if cleaner.clean(&record?.text).is_some() {
                return Ok(());
            }
        }
        Err(empty_corpus(&self.label(), cleaner.stats()))
    }

    fn advance(&mut self) -> Option<Result<RawPrompt>> {
        loop {
            if let Some(source) = &mut self.current {
                match source.next_record() {
                    Some(Ok(record)) => {
                        return Some(
                            check_text(&record.source, record.position, &record.text)
                                .map(|()| record),
                        );
                    }
                    Some(Err(e)) => return Some(Err(e)),
                    None => self.current = None,
                }
            }
            let file = self.files.get(self.next_file)?.clone();
            self.next_file += 1;
            match Source::open(&file.path, file.format, &self.options) {
                Ok(source) => self.current = Some(source),
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

impl Iterator for Corpus {
    type Item = Result<RawPrompt>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = self.advance();
        if !matches!(item, Some(Ok(_))) {
            self.done = true;
            self.current = None;
        }
        item
    }
}

/// The error for a corpus with no prompt left after cleaning, naming its inputs.
pub(crate) fn empty_corpus(label: &str, stats: CleanStats) -> Error {
    Error::Input {
        path: PathBuf::from(label),
        line: None,
        message: format!(
            "no prompt left after cleaning ({} records read: {} empty, {} duplicates)",
            stats.read, stats.empty, stats.duplicates
        ),
    }
}

/// Counts records of a line-based file: `\n` bytes, plus one for a last line without one.
fn count_lines(path: &Path) -> Result<u64> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut count = 0u64;
    let mut last = b'\n';
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        count += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        last = buf[n - 1];
    }
    Ok(count + u64::from(last != b'\n'))
}

fn input_error(path: &Path, position: Option<Position>, message: impl Into<String>) -> Error {
    let message = message.into();
    match position {
        Some(Position::Line(line)) => Error::Input {
            path: path.to_owned(),
            line: usize::try_from(line).ok(),
            message,
        },
        Some(Position::Row(row)) => Error::Input {
            path: path.to_owned(),
            line: None,
            message: format!("row {row}: {message}"),
        },
        None => Error::Input {
            path: path.to_owned(),
            line: None,
            message,
        },
    }
}

/// An open reader over one file.
enum Source {
    Lines(lines::LineSource),
    #[cfg(feature = "csv")]
    Csv(csv::CsvSource),
    #[cfg(feature = "parquet")]
    Parquet(parquet::ParquetSource),
}

impl Source {
    fn open(path: &Path, format: CorpusFormat, options: &CorpusOptions) -> Result<Self> {
        Ok(match format {
            CorpusFormat::Txt | CorpusFormat::Jsonl => {
                Source::Lines(lines::LineSource::open(path, format, options)?)
            }
            #[cfg(feature = "csv")]
            CorpusFormat::Csv => Source::Csv(csv::CsvSource::open(path, options)?),
            #[cfg(feature = "parquet")]
            CorpusFormat::Parquet => Source::Parquet(parquet::ParquetSource::open(path, options)?),
            #[allow(unreachable_patterns)]
            other => return Err(not_compiled(path, other)),
        })
    }

    fn next_record(&mut self) -> Option<Result<RawPrompt>> {
        match self {
            Source::Lines(s) => s.next_record(),
            #[cfg(feature = "csv")]
            Source::Csv(s) => s.next_record(),
            #[cfg(feature = "parquet")]
            Source::Parquet(s) => s.next_record(),
        }
    }
}

/// A format this build cannot read (its cargo feature is off).
#[allow(dead_code)]
fn not_compiled(path: &Path, format: CorpusFormat) -> Error {
    let feature = match format {
        CorpusFormat::Csv => "csv",
        CorpusFormat::Parquet => "parquet",
        CorpusFormat::Txt | CorpusFormat::Jsonl => "default",
    };
    input_error(
        path,
        None,
        format!("reading this format needs img2prompt's cargo feature `{feature}`"),
    )
}

/// The one rule every text read obeys: no NUL byte (a text that holds one is most likely
/// binary data, and tokenizers and files of prompts cannot carry it). `position` is where the
/// text is, for the error.
pub fn check_text(path: &Path, position: Position, text: &str) -> Result<()> {
    match text.find('\0') {
        None => Ok(()),
        Some(at) => Err(nul_error(path, position, at)),
    }
}

/// The error of [`check_text`]: a NUL byte at byte `at` of the text at `position`.
fn nul_error(path: &Path, position: Position, at: usize) -> Error {
    input_error(
        path,
        Some(position),
        format!("holds a NUL byte (at byte {at}): not text"),
    )
}

/// Picks the column among `names`: the first candidate present, exactly, else ignoring case.
#[cfg(any(feature = "csv", feature = "parquet"))]
fn find_column<'a>(
    names: impl Iterator<Item = &'a str> + Clone,
    options: &CorpusOptions,
) -> Option<usize> {
    let candidates = options.candidates();
    for c in &candidates {
        if let Some(i) = names.clone().position(|n| n == *c) {
            return Some(i);
        }
    }
    for c in &candidates {
        if let Some(i) = names.clone().position(|n| n.eq_ignore_ascii_case(c)) {
            return Some(i);
        }
    }
    None
}

#[cfg(any(feature = "csv", feature = "parquet"))]
fn missing_column(path: &Path, options: &CorpusOptions, names: &[&str]) -> Error {
    const SHOWN: usize = 20;
    let mut list = names
        .iter()
        .take(SHOWN)
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        list.push_str(", ...");
    }
    input_error(
        path,
        None,
        format!(
            "no column {} (columns: {list}): name the prompt column",
            options.describe()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/corpus")
    }

    fn write(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    fn texts(paths: &[PathBuf], column: Option<&str>) -> Vec<String> {
        Corpus::open(paths, CorpusOptions::with_column(column))
            .unwrap()
            .map(|r| r.unwrap().text)
            .collect()
    }

    fn error(paths: &[PathBuf], column: Option<&str>) -> String {
        match Corpus::open(paths, CorpusOptions::with_column(column)) {
            Err(e) => e.to_string(),
            Ok(corpus) => corpus
                .filter_map(|r| r.err())
                .map(|e| e.to_string())
                .next()
                .expect("an error"),
        }
    }

    /// The prompts every fixture holds, in order (see tests/fixtures/corpus/README.md).
    const FIXTURE: [&str; 6] = [
        "a photo of a cat",
        "  oil painting,\tdramatic   lighting ",
        "",
        "a photo of a cat",
        "a photo  of a cat",
        "héron bleu, 水彩",
    ];

    #[test]
    fn normalize_trims_and_collapses_whitespace() {
        assert_eq!(normalize("  a \t b\n\nc  "), "a b c");
        assert_eq!(normalize("x\u{a0}\u{a0}y"), "x y");
        assert_eq!(normalize(" \t\r\n "), "");
        assert_eq!(normalize("already clean"), "already clean");
    }

    #[test]
    fn cleaner_drops_empty_and_duplicates_and_counts() {
        let mut cleaner = Cleaner::new();
        let kept: Vec<String> = FIXTURE.iter().filter_map(|t| cleaner.clean(t)).collect();
        assert_eq!(
            kept,
            [
                "a photo of a cat",
                "oil painting, dramatic lighting",
                "héron bleu, 水彩"
            ]
        );
        assert_eq!(
            cleaner.stats(),
            CleanStats {
                read: 6,
                kept: 3,
                empty: 1,
                duplicates: 2
            }
        );
        // Case differences are not duplicates: only exact matches after normalisation are.
        assert_eq!(
            cleaner.clean("A photo of a cat").as_deref(),
            Some("A photo of a cat")
        );
    }

    #[test]
    #[cfg(all(feature = "csv", feature = "parquet"))]
    fn every_format_reads_the_same_records() {
        for name in [
            "prompts.txt",
            "prompts.jsonl",
            "prompts.csv",
            "prompts.parquet",
        ] {
            let got = texts(&[fixtures().join(name)], None);
            assert_eq!(got, FIXTURE, "{name}");
        }
    }

    #[test]
    #[cfg(all(feature = "csv", feature = "parquet"))]
    fn positions_name_lines_and_rows() {
        let records: Vec<RawPrompt> = Corpus::open(
            &[fixtures().join("prompts.jsonl")],
            CorpusOptions::default(),
        )
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
        // prompts.jsonl has a blank line 3, skipped.
        let lines: Vec<Position> = records.iter().map(|r| r.position).collect();
        assert_eq!(
            lines,
            [1, 2, 4, 5, 6, 7].map(Position::Line),
            "blank line 3 is skipped"
        );
        let records: Vec<RawPrompt> = Corpus::open(
            &[fixtures().join("prompts.parquet")],
            CorpusOptions::default(),
        )
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
        assert_eq!(records[5].position, Position::Row(6));
        assert!(records[0].source.ends_with("prompts.parquet"));
    }

    #[test]
    #[cfg(feature = "parquet")]
    fn parquet_reads_across_row_groups_and_columns() {
        // The fixture has row groups of 4 rows and the prompt in column "prompt" after others.
        let path = fixtures().join("prompts.parquet");
        let reader = parquet::open_parquet(&path).unwrap();
        assert!(
            ::parquet::file::reader::FileReader::num_row_groups(&reader) >= 2,
            "fixture should span row groups"
        );
        let other = texts(std::slice::from_ref(&path), Some("seed_text"));
        assert_eq!(other.len(), FIXTURE.len());
        assert_eq!(other[0], "s0");
        let err = error(&[path], Some("seed"));
        assert!(err.contains("not a string column"), "{err}");
    }

    #[test]
    #[cfg(feature = "parquet")]
    fn parquet_written_by_the_parquet_crate() {
        use ::parquet::data_type::{ByteArray, ByteArrayType};
        use ::parquet::file::properties::WriterProperties;
        use ::parquet::file::writer::SerializedFileWriter;
        use ::parquet::schema::parser::parse_message_type;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("laion.parquet");
        let schema = Arc::new(
            parse_message_type("message schema { OPTIONAL BYTE_ARRAY TEXT (UTF8); }").unwrap(),
        );
        let props = Arc::new(WriterProperties::builder().build());
        let file = File::create(&path).unwrap();
        let mut writer = SerializedFileWriter::new(file, schema, props).unwrap();
        for group in [["one", "two"], ["three", "four"]] {
            let mut rg = writer.next_row_group().unwrap();
            let mut col = rg.next_column().unwrap().unwrap();
            let values: Vec<ByteArray> = group.iter().map(|s| ByteArray::from(*s)).collect();
            // Rows: value, null, value (definition levels 1, 0, 1).
            col.typed::<ByteArrayType>()
                .write_batch(&values, Some(&[1, 0, 1]), None)
                .unwrap();
            col.close().unwrap();
            rg.close().unwrap();
        }
        writer.close().unwrap();

        // "TEXT" matches the default "text" ignoring case; nulls read as empty.
        let corpus = Corpus::open(std::slice::from_ref(&path), CorpusOptions::default()).unwrap();
        assert_eq!(corpus.count_records().unwrap(), 6);
        let got: Vec<String> = corpus.map(|r| r.unwrap().text).collect();
        assert_eq!(got, ["one", "", "two", "three", "", "four"]);
    }

    #[test]
    #[cfg(feature = "csv")]
    fn csv_column_option_and_quoted_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "c.csv",
            b"id,caption\n1,\"multi\nline, quoted\"\n2,plain\n",
        );
        assert_eq!(
            texts(std::slice::from_ref(&path), Some("caption")),
            ["multi\nline, quoted", "plain"]
        );
        let err = error(&[path], None);
        assert!(err.contains("c.csv"), "{err}");
        assert!(err.contains("no column \"prompt\" or \"text\""), "{err}");
        assert!(err.contains("\"caption\""), "lists the columns: {err}");
    }

    #[test]
    #[cfg(all(feature = "csv", feature = "parquet"))]
    fn errors_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let jsonl = write(
            dir.path(),
            "a.jsonl",
            b"{\"prompt\": \"ok\"}\n\n{\"prompt\": 3}\n",
        );
        let err = error(&[jsonl], None);
        assert!(err.contains("a.jsonl:3:"), "{err}");
        assert!(err.contains("not a string"), "{err}");

        let first_bad = write(dir.path(), "b.jsonl", b"{\"caption\": \"x\"}\n");
        let err = error(&[first_bad], None);
        assert!(
            err.contains("b.jsonl:1:") && err.contains("no field"),
            "{err}"
        );

        let bom = write(dir.path(), "bom.jsonl", b"\xef\xbb\xbf{\"text\": \"x\"}\n");
        assert_eq!(texts(&[bom], None), ["x"]);

        let txt = write(dir.path(), "c.txt", b"fine\nbad \xff byte\n");
        let err = error(&[txt], None);
        assert!(err.contains("c.txt:2: not valid UTF-8"), "{err}");

        let csv = write(dir.path(), "d.csv", b"prompt,x\nok,1\nragged\n");
        let err = error(&[csv], None);
        assert!(err.contains("d.csv:3:"), "{err}");

        let parquet = write(dir.path(), "e.parquet", b"definitely not parquet");
        let err = error(&[parquet], None);
        assert!(
            err.contains("e.parquet") && err.contains("Parquet"),
            "{err}"
        );

        let binary = write(dir.path(), "f.txt", b"\x89PNG\r\n\x1a\n\0\0\0");
        let err = error(&[binary], None);
        assert!(
            err.contains("f.txt:3:") && err.contains("holds a NUL byte"),
            "{err}"
        );

        let other = write(dir.path(), "g.bin", b"whatever");
        let err = error(&[other], None);
        assert!(
            err.contains("g.bin") && err.contains("not a prompt corpus"),
            "{err}"
        );

        let err = error(&[dir.path().join("missing.txt")], None);
        assert!(err.contains("missing.txt"), "{err}");
    }

    #[test]
    #[cfg(feature = "csv")]
    fn an_unclosed_csv_quote_is_an_error_naming_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let bad = write(
            dir.path(),
            "q.csv",
            b"prompt\nfine\n\"never closed, a cat\nswallowed line\nand another\n",
        );
        let items: Vec<Result<RawPrompt>> =
            Corpus::open(std::slice::from_ref(&bad), CorpusOptions::default())
                .unwrap()
                .collect();
        let err = items.last().unwrap().as_ref().unwrap_err().to_string();
        assert!(
            err.contains("q.csv:3:") && err.contains("never closed"),
            "{err}"
        );
        // Closed quotes spanning lines, and a final record without a newline, are fine.
        let good = write(
            dir.path(),
            "r.csv",
            b"prompt,n\n\"two\nlines, \"\"quoted\"\"\",1\nlast,2",
        );
        assert_eq!(texts(&[good], None), ["two\nlines, \"quoted\"", "last"]);
    }

    #[test]
    fn nul_bytes_are_refused_anywhere_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        // Past the 64 KiB probe of a .txt, and as a JSON escape.
        let mut late = b"ok\n".repeat(30_000);
        late.extend_from_slice(b"bad\0line\n");
        let txt = write(dir.path(), "late.txt", &late);
        let err = error(&[txt], None);
        assert!(
            err.contains("late.txt:30001:") && err.contains("NUL"),
            "{err}"
        );
        let jsonl = write(
            dir.path(),
            "nul.jsonl",
            b"{\"text\": \"ok\"}\n{\"text\": \"a\\u0000b\"}\n",
        );
        let err = error(&[jsonl], None);
        assert!(err.contains("nul.jsonl:2:") && err.contains("NUL"), "{err}");
    }

    #[test]
    fn several_files_and_directories_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("parts");
        std::fs::create_dir(&sub).unwrap();
        write(&sub, "part-1.txt", b"b1\nb2");
        write(&sub, "part-0.txt", b"a1\n");
        write(&sub, "notes.md", b"ignored");
        let first = write(dir.path(), "first.txt", b"x\r\ny\n");
        let corpus = Corpus::open(&[first.clone(), sub], CorpusOptions::default()).unwrap();
        assert_eq!(corpus.count_records().unwrap(), 5);
        assert_eq!(corpus.paths().len(), 3);
        let got: Vec<String> = corpus.map(|r| r.unwrap().text).collect();
        assert_eq!(got, ["x", "y", "a1", "b1", "b2"]);
    }

    #[test]
    fn iteration_stops_after_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let bad = write(
            dir.path(),
            "a.jsonl",
            b"{\"text\": \"one\"}\n{oops\n{\"text\": \"three\"}\n",
        );
        let good = write(dir.path(), "b.txt", b"four\n");
        let items: Vec<Result<RawPrompt>> = Corpus::open(&[bad, good], CorpusOptions::default())
            .unwrap()
            .collect();
        assert_eq!(items.len(), 2);
        assert!(items[0].is_ok());
        let err = items[1].as_ref().unwrap_err().to_string();
        assert!(err.contains("a.jsonl:2: invalid JSON"), "{err}");
    }

    #[test]
    fn cleaned_adapter_matches_the_cleaner() {
        let records = FIXTURE.iter().map(|t| Ok::<_, Error>(t.to_string()));
        let mut cleaned = Cleaned::new(records);
        let kept: Vec<String> = cleaned.by_ref().map(|r| r.unwrap()).collect();
        assert_eq!(kept.len(), 3);
        assert_eq!(cleaned.stats().dropped(), 3);
    }
}
