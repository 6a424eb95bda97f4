//! Telegram Bot API adapter: a thin client over `reqwest` with error classification.
mod client;

pub use client::{BotUser, TelegramClient};
