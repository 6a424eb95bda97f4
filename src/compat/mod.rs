//! The seed systems' routes, each a thin translation onto the native services, so their clients
//! switch by changing a base URL: Pingui Alert (`pingui`) and the WhatsApp Message Sender
//! (`wa_sender`). The event-ingestion MVP's routes are the native `/events` ones.
pub mod pingui;
pub mod wa_sender;
