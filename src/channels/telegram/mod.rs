//! Telegram Bot API adapter: a thin client over `reqwest` with error classification, and the
//! incoming `Update` types.
mod adapter;
mod client;
mod updates;

pub use adapter::{KIND, TelegramAdapter};
pub use client::{BotUser, TelegramClient};
pub use updates::{Chat, ChatMember, ChatMemberUpdated, IncomingMessage, Update};
