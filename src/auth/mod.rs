//! Who is calling: API keys (hashed at rest) and the bootstrap admin.
mod extractor;
pub mod repo;

pub use extractor::{Caller, bearer_token, require_api_key};
