//! Stateful fakes of messaging provider APIs (the Telegram Bot API and the WhatsApp Business
//! Cloud API), following the shared `CHANNELS.md` protocol notes, for Pregonero's tests and
//! benchmarks.

pub mod telegram;
pub mod whatsapp;

pub use telegram::{
    Counting, FakeTelegram, FakeTelegramConfig, FileRef, Limits, MAX_DOCUMENT_UPLOAD,
    MAX_PHOTO_UPLOAD, SentMessage,
};
pub use whatsapp::{FakeWhatsApp, FakeWhatsAppConfig, WaLimits, WaSent, WaStats, WindowMode};
