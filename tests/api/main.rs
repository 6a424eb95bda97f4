//! Integration tests: the whole server on a random port, a fresh database per test (SQLite and
//! PostgreSQL), and the stateful fake Telegram Bot API from the `fakes` crate.
mod helpers;

mod alerts;
mod auth;
mod campaigns;
mod contacts;
mod crash;
mod dashboard;
mod delivery;
mod errors;
mod events;
mod idempotency;
mod isolation;
mod limits;
mod live;
mod media;
mod openapi;
mod operations;
mod pacing;
mod pingui_import;
mod replicas;
mod resilience;
mod rules;
mod signals;
mod snapshots;
mod subscriptions;
mod templates;
mod wa_server;
mod webhook_channel;
mod whatsapp_web;
