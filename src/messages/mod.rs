//! The messages API: accept a send request and answer its status (the ledger and delivery are
//! the outbox's, `crate::outbox`).
mod routes;

pub use routes::configure;
pub(crate) use routes::{idempotency_key, replayed, validate_content};
