//! Event ingestion (drop-in for the event-ingestion MVP): `POST /events` validates at the edge and
//! answers `202` only once the event is committed (group commit through [`EventWriter`]);
//! `GET /events` reads by service and time with keyset pagination; a scheduled job enforces
//! retention.
//!
//! The seed's routes (`POST /events`, `GET /events`) live in `compat::events` and translate onto
//! [`service`]; the native alert-rule routes are [`configure_rules`].
pub mod breaker;
mod error;
pub mod repo;
mod rule_routes;
pub mod rule_service;
pub mod rules;
pub mod service;
pub(crate) mod validate;
pub mod writer;

pub use error::EventError;
pub use repo::delete_older_than;
pub use rule_routes::configure as configure_rules;
pub use rules::RuleEngine;
pub use validate::{NewEvent, validate_body};
pub use writer::{EventWriter, WriterOptions};
