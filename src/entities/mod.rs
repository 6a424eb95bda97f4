//! sea-orm entities, one per table; only `repo` modules use them.
pub mod api_keys;
pub mod channel_accounts;
pub mod media;
pub mod message_events;
pub mod messages;
pub mod users;
