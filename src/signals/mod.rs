//! Trading signals: each user's indicators post alerts to their own webhook
//! (`POST /webhook/u/{token}`, the trading-alerts microservice's route); each alert is read
//! (`parse`), stored once per dedup window within the plan's quota, and delivered through the
//! outbox to the channel and recipient of the user's profile; with a chart, after its snapshot
//! (`snapshot`: headless Chromium; `queue`: the snapshot queue, by plan priority).
//!
//! Layout: `parse` (alert texts and JSON), `service` (what the routes ask for), `repo` (SQL),
//! `routes` (the `/api/v1` surface), `error` (this feature's errors and their stable codes).
//! The seed's own routes are in `compat::trading`.
mod error;
pub mod parse;
pub mod queue;
pub mod repo;
pub mod routes;
pub mod service;
pub mod snapshot;

pub use error::SignalError;
pub use routes::configure;
