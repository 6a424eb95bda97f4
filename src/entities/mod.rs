//! sea-orm entities, one per table; only `repo` modules use them.
pub mod alert_rules;
pub mod api_keys;
pub mod audit_log;
pub mod channel_accounts;
pub mod events;
pub mod integration_tokens;
pub mod integrations;
pub mod leases;
pub mod media;
pub mod message_events;
pub mod messages;
pub mod oidc_logins;
pub mod scheduled_runs;
pub mod sessions;
pub mod users;
