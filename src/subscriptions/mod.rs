//! Status-event subscriptions: an owner's delivery outcomes posted to one of their webhook
//! channels, each with a sequence number of its subscription.
//!
//! An event is a message on that webhook channel, addressed to the subscription (recipient =
//! its id) and written in the same transaction as the outcome it reports, so no outcome is
//! lost and none is reported that did not happen. From there the outbox delivers it like any
//! message: signed, paced, retried with backoff on 5xx and timeouts, failed at once on other
//! 4xx. An event that failed is a dead letter: the API lists them and replays them.
//!
//! Layout: `listener` (outcomes → events), `service` (what the routes ask for), `repo` (SQL),
//! `routes` (HTTP), `error` (this feature's errors and their stable codes).
mod error;
mod listener;
mod repo;
mod routes;
mod service;

pub use error::SubscriptionError;
pub use listener::SubscriptionsListener;
pub use routes::configure;

/// The events a subscription can ask for.
pub const EVENTS: [&str; 5] = ["sent", "delivered", "read", "failed", "skipped"];

/// The `parse_mode` that marks a message as a status event: the webhook kind posts its body
/// as it is (a JSON document), and events about events are never made.
pub const EVENT_FORMAT: &str = crate::channels::webhook::RAW_JSON;
