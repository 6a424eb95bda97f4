//! The seed systems' routes, each a thin translation onto the native services, so their clients
//! switch by changing a base URL: Pingui Alert (`pingui`). The WhatsApp sender's routes are in
//! `dashboard.rs` and the event-ingestion MVP's are the native `/events` ones.
pub mod pingui;
