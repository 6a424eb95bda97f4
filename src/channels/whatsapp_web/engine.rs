//! The seam between a session and the WhatsApp Web protocol: an [`Engine`] starts one connection
//! run over a session's [`DbStore`] and reports what happens as [`WaEvent`]s; the [`Link`] it
//! returns sends and ends the run. [`WhatsAppRust`] is the engine the server runs (the
//! `whatsapp-rust` library); tests plug in a scripted phone (`tests/api/whatsapp_web.rs`).
//!
//! Tests use this seam for the session's own logic; `real.rs` and the library itself are tested
//! one level lower, at the library's transport, against a local WhatsApp server
//! (`tests/api/wa_server.rs`).
use std::{sync::Arc, time::Duration};

use futures::future::BoxFuture;
use tokio::sync::mpsc::UnboundedSender;

use super::store::DbStore;
use crate::channels::{ChannelError, OutboundMessage};

/// How far a receipt says a message got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// On the recipient's phone (two ticks).
    Delivered,
    /// Opened (blue ticks; `played` for voice notes counts too).
    Read,
}

/// What a connection run reports.
#[derive(Debug, Clone, PartialEq)]
pub enum WaEvent {
    /// A QR code to show: scan it on the phone within `timeout`.
    Qr { code: String, timeout: Duration },
    /// The 8-character code to type on the phone under "Link with phone number".
    PairCode { code: String, timeout: Duration },
    /// Every QR ref expired without a scan: the run ends.
    QrExhausted,
    /// The pairing code is no longer valid (WhatsApp asked for a new one): start over.
    PairCodeExpired,
    /// WhatsApp refused to pair by code (a wrong number, too many tries).
    PairCodeFailed { detail: String },
    /// The phone linked this device.
    Paired { phone: String },
    /// Logged in and ready to send.
    Connected,
    /// The connection dropped; the library reconnects by itself (515 after pairing, network).
    Disconnected { detail: String },
    /// 401: the device was removed on the phone. Needs a new pairing.
    LoggedOut { detail: String },
    /// 440: another client took this session over.
    Replaced,
    /// WhatsApp barred the number from sending for `expire` (code 101–106).
    TemporaryBan { code: u16, expire: Duration },
    /// The login was refused for another reason (the run ends).
    ConnectFailure { detail: String },
    /// The server took (or, with `error`, refused: 463, 479, …) a sent message: one tick.
    ServerAck { id: String, error: Option<String> },
    /// The recipient's phone reported the messages delivered or read.
    Receipt { ids: Vec<String>, seen: Seen },
    /// A text from `from` (E.164; hidden ids mapped to the phone number where the protocol
    /// gave the mapping).
    Inbound { from: String, text: String },
    /// The run ended (after an exhausted QR, a logout or a stop).
    Ended,
}

/// Starts connection runs.
pub trait Engine: Send + Sync + 'static {
    /// Connects with the session in `store` (pairing when it holds none: by QR, or by code for
    /// `pair_phone`) and reports to `events` until the run ends.
    fn start(
        &self,
        store: DbStore,
        pair_phone: Option<String>,
        events: UnboundedSender<WaEvent>,
    ) -> BoxFuture<'static, anyhow::Result<Arc<dyn Link>>>;
}

/// A running connection.
pub trait Link: Send + Sync {
    /// Sends `msg` to `to` (E.164); returns the message id that acks and receipts name.
    fn send<'a>(
        &'a self,
        to: &'a str,
        msg: &'a OutboundMessage,
    ) -> BoxFuture<'a, Result<String, ChannelError>>;

    /// Ends the run (the device stays linked).
    fn stop(&self) -> BoxFuture<'_, ()>;

    /// Unlinks the device from the phone and ends the run.
    fn logout(&self) -> BoxFuture<'_, ()>;
}
