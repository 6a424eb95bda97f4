//! The outgoing-webhook kind: each message is POSTed as signed JSON to the account's URL.
//!
//! Signature (the Stripe / Standard Webhooks convention): header
//! `X-Pregonero-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`.
//! A receiver recomputes `v1` over the raw body with the secret shown when the account was
//! created, compares in constant time, and refuses a `t` older than a few minutes.
mod adapter;
mod guard;
mod sign;

pub use adapter::{KIND, RAW_JSON, WebhookAdapter};
pub use sign::{SIGNATURE_HEADER, signature};
