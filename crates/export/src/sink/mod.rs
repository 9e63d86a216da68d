//! Local sinks: the console and an OTLP-JSON lines file.

pub mod console;
pub mod file;

pub use console::ConsoleExporter;
pub use file::FileExporter;
