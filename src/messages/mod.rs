//! Messages: accept a send request, keep its ledger row and history, answer its status.
pub mod repo;
mod routes;

pub use routes::configure;
