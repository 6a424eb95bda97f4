//! Pregonero: a self-hosted multi-channel messaging server.
pub mod auth;
pub mod channels;
pub mod config;
pub mod crypto;
pub mod db;
pub mod domain;
pub mod entities;
pub mod error;
pub mod jobs;
pub mod media;
pub mod messages;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod web;
