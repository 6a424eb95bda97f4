//! The seed systems' routes, each a thin translation onto the native services, so their clients
//! switch by changing a base URL: Pingui Alert (`pingui`), the event-ingestion MVP (`events`),
//! the WhatsApp Message Sender (`wa_sender`) and the trading-alerts microservice (`trading`).
pub mod events;
pub mod pingui;
pub mod trading;
pub mod wa_sender;
