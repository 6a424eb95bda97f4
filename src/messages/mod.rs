//! The messages API: accept a send request and answer its status (the ledger and delivery are
//! the outbox's, `crate::outbox`).
mod error;
mod routes;
pub mod service;

pub use error::MessageError;
pub use routes::configure;
pub(crate) use routes::{idempotency_key, replayed};
pub use service::validate_content;
