//! WhatsApp Web multi-device: a number linked as a device of its owner's phone, by QR or by
//! pairing code (the seed sender's way of connecting). The protocol is `whatsapp-rust`; ours are
//! the session's state machine ([`session`]), its store in our database ([`store`]), the
//! adapter and the pacing of a careful human.
mod adapter;
pub mod engine;
mod qr;
mod real;
pub mod session;
pub mod store;

pub use adapter::{KIND, WhatsAppWebAdapter, pair_phone};
pub use engine::{Engine, Link, Seen, WaEvent};
pub use real::WhatsAppRust;
pub use session::{SessionState, SessionView, Sessions, WebContext, current_view};
pub use store::DbStore;
