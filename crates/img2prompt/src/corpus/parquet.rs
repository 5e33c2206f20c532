//! `.parquet`: one row group at a time, only the prompt column (DiffusionDB / LAION metadata).

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;
use parquet::record::reader::{ReaderIter, TreeBuilder};
use parquet::schema::types::{SchemaDescPtr, SchemaDescriptor, Type};

use super::{CorpusOptions, Position, RawPrompt, find_column, input_error, missing_column};
use crate::error::{Error, Result};

/// Rows of a Parquet file, from its footer.
pub(super) fn count_rows(path: &Path) -> Result<u64> {
    Ok(open_parquet(path)?
        .metadata()
        .row_groups()
        .iter()
        .map(|g| u64::try_from(g.num_rows()).unwrap_or(0))
        .sum())
}

pub(super) fn open_parquet(path: &Path) -> Result<SerializedFileReader<File>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    SerializedFileReader::new(file)
        .map_err(|e| input_error(path, None, format!("not a readable Parquet file: {e}")))
}

/// `.parquet`: one row group at a time, only the prompt column.
pub(super) struct ParquetSource {
    path: Arc<Path>,
    reader: SerializedFileReader<File>,
    descr: SchemaDescPtr,
    next_group: usize,
    rows: Option<ReaderIter>,
    row: u64,
}

impl ParquetSource {
    pub(super) fn open(path: &Path, options: &CorpusOptions) -> Result<Self> {
        let reader = open_parquet(path)?;
        let schema = reader.metadata().file_metadata().schema_descr_ptr();
        let fields = schema.root_schema().get_fields();
        let names: Vec<&str> = fields.iter().map(|f| f.name()).collect();
        let index = find_column(names.iter().copied(), options)
            .ok_or_else(|| missing_column(path, options, &names))?;
        let field = &fields[index];
        if !field.is_primitive() {
            return Err(input_error(
                path,
                None,
                format!("column {:?} is not a string column (nested)", field.name()),
            ));
        }
        let physical = field.get_physical_type();
        if physical != parquet::basic::Type::BYTE_ARRAY {
            return Err(input_error(
                path,
                None,
                format!(
                    "column {:?} is not a string column (physical type {physical})",
                    field.name()
                ),
            ));
        }
        let projection = Type::group_type_builder(schema.root_schema().name())
            .with_fields(vec![field.clone()])
            .build()
            .map_err(|e| input_error(path, None, e.to_string()))?;
        Ok(Self {
            path: Arc::from(path),
            reader,
            descr: Arc::new(SchemaDescriptor::new(Arc::new(projection))),
            next_group: 0,
            rows: None,
            row: 0,
        })
    }

    pub(super) fn next_record(&mut self) -> Option<Result<RawPrompt>> {
        loop {
            if let Some(rows) = &mut self.rows {
                match rows.next() {
                    Some(Ok(row)) => {
                        self.row += 1;
                        let position = Position::Row(self.row);
                        let text = match row.into_columns().into_iter().next() {
                            Some((_, Field::Str(s))) => s,
                            Some((_, Field::Null)) | None => String::new(),
                            Some((name, Field::Bytes(b))) => match b.as_utf8() {
                                Ok(s) => s.to_owned(),
                                Err(_) => {
                                    return Some(Err(input_error(
                                        &self.path,
                                        Some(position),
                                        format!("column {name:?}: not valid UTF-8"),
                                    )));
                                }
                            },
                            Some((name, other)) => {
                                return Some(Err(input_error(
                                    &self.path,
                                    Some(position),
                                    format!("column {name:?}: expected a string, found {other}"),
                                )));
                            }
                        };
                        return Some(Ok(RawPrompt {
                            text,
                            source: self.path.clone(),
                            position,
                        }));
                    }
                    Some(Err(e)) => {
                        return Some(Err(input_error(
                            &self.path,
                            Some(Position::Row(self.row + 1)),
                            e.to_string(),
                        )));
                    }
                    None => self.rows = None,
                }
            }
            if self.next_group >= self.reader.num_row_groups() {
                return None;
            }
            let group = self.next_group;
            self.next_group += 1;
            let rows = self
                .reader
                .get_row_group(group)
                .and_then(|g| TreeBuilder::new().as_iter(self.descr.clone(), &*g));
            match rows {
                Ok(rows) => self.rows = Some(rows),
                Err(e) => {
                    return Some(Err(input_error(
                        &self.path,
                        None,
                        format!("row group {group}: {e}"),
                    )));
                }
            }
        }
    }
}
