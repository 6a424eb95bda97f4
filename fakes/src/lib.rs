//! Stateful fakes of messaging provider APIs (the Telegram Bot API for now), following the shared
//! `CHANNELS.md` protocol notes, for Pregonero's tests and benchmarks.

pub mod telegram;

pub use telegram::{
    FakeTelegram, FakeTelegramConfig, FileRef, Limits, MAX_DOCUMENT_UPLOAD, MAX_PHOTO_UPLOAD,
    SentMessage,
};
