//! The file sink: every batch as one OTLP-JSON `ExportTraceServiceRequest` per line (the format
//! the OpenTelemetry Collector's file exporter writes and its OTLP-JSON file receiver reads).

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use futures_util::future::BoxFuture;
use inferscope_core::SpanRecord;

use crate::exporter::{Accepted, ExportError, SpanExporter};
use crate::otlp::{BuildError, Encoder};

/// Appends OTLP-JSON lines to a file.
pub struct FileExporter {
    path: PathBuf,
    encoder: Encoder,
    out: Mutex<BufWriter<File>>,
}

impl std::fmt::Debug for FileExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileExporter")
            .field("path", &self.path)
            .finish()
    }
}

impl FileExporter {
    /// Opens (creating or appending to) `path`.
    pub fn open(path: &Path, encoder: Encoder) -> Result<FileExporter, BuildError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| BuildError::File {
                path: path.display().to_string(),
                source,
            })?;
        Ok(FileExporter {
            path: path.to_owned(),
            encoder,
            out: Mutex::new(BufWriter::new(file)),
        })
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl SpanExporter for FileExporter {
    fn name(&self) -> &'static str {
        "file"
    }

    fn export<'a>(
        &'a self,
        batch: &'a [SpanRecord],
        _deadline: Instant,
    ) -> BoxFuture<'a, Result<Accepted, ExportError>> {
        let result = (|| {
            let mut line = serde_json::to_vec(&self.encoder.request(batch))
                .map_err(|e| ExportError::permanent(format!("file: cannot encode: {e}")))?;
            line.push(b'\n');
            let mut out = self
                .out
                .lock()
                .map_err(|_| ExportError::permanent("file: writer poisoned"))?;
            out.write_all(&line)
                .and_then(|()| out.flush())
                .map_err(|e| ExportError::permanent(format!("file {}: {e}", self.path.display())))
        })();
        Box::pin(async move { result.map(|()| Accepted::default()) })
    }
}
