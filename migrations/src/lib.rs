//! Database schema for Pregonero: one migration set for SQLite and PostgreSQL.
pub use sea_orm_migration::prelude::*;

mod m20261123_000001_foundation;
mod m20261123_000002_integrations;
mod m20261123_000003_events;
mod m20261123_000004_alert_rules;
mod m20261123_000005_auth;
mod m20261123_000006_contacts;
mod m20261123_000007_templates;
mod m20261123_000008_campaigns;
mod m20261123_000009_campaign_release_index;
mod m20261204_000010_subscriptions;
mod m20261206_000011_signals;
mod m20261206_000012_event_owners;
mod m20261206_000013_idempotency_keys;
mod m20261206_000014_legacy_tokens;
mod m20261206_000015_stats_deltas;
mod m20261206_000016_wa_session_store;

/// Runs every migration in order; `Migrator::up(&db, None)` at start-up.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261123_000001_foundation::Migration),
            Box::new(m20261123_000002_integrations::Migration),
            Box::new(m20261123_000003_events::Migration),
            Box::new(m20261123_000004_alert_rules::Migration),
            Box::new(m20261123_000005_auth::Migration),
            Box::new(m20261123_000006_contacts::Migration),
            Box::new(m20261123_000007_templates::Migration),
            Box::new(m20261123_000008_campaigns::Migration),
            Box::new(m20261123_000009_campaign_release_index::Migration),
            Box::new(m20261204_000010_subscriptions::Migration),
            Box::new(m20261206_000011_signals::Migration),
            Box::new(m20261206_000012_event_owners::Migration),
            Box::new(m20261206_000013_idempotency_keys::Migration),
            Box::new(m20261206_000014_legacy_tokens::Migration),
            Box::new(m20261206_000015_stats_deltas::Migration),
            Box::new(m20261206_000016_wa_session_store::Migration),
        ]
    }
}
