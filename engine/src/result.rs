//! Query results.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;

/// The answer to a query: Arrow record batches and their schema.
#[derive(Debug, Clone)]
pub struct QueryResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl QueryResult {
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }

    /// A text table, as a terminal shows it.
    pub fn to_table(&self) -> Result<String, ArrowError> {
        if self.batches.is_empty() {
            let names: Vec<&str> = self
                .schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect();
            return Ok(format!("{}\n(0 rows)", names.join(" | ")));
        }
        Ok(arrow::util::pretty::pretty_format_batches(&self.batches)?.to_string())
    }

    /// One JSON object per row.
    pub fn to_json_rows(&self) -> Result<Vec<serde_json::Value>, ArrowError> {
        let mut buf = Vec::new();
        {
            let mut w = arrow::json::ArrayWriter::new(&mut buf);
            for b in &self.batches {
                w.write(b)?;
            }
            w.finish()?;
        }
        if buf.is_empty() {
            return Ok(Vec::new());
        }
        serde_json::from_slice(&buf).map_err(|e| ArrowError::JsonError(e.to_string()))
    }
}
