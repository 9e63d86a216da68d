//! The OpenAI-compatible surface as vLLM 0.32 shapes it: request parsing and validation,
//! response and chunk rendering, errors.

pub mod error;
pub mod json;
pub mod render;
pub mod request;

pub use error::ApiError;
pub use request::{Endpoint, GenRequest};
