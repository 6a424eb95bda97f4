//! `AppState`: what every route and job handler shares.
use std::{sync::Arc, time::Instant};

use actix::Addr;
use sea_orm::DatabaseConnection;

use crate::{
    auth::{lockout::Lockout, oidc::Oidc},
    channels::{ChannelRegistry, telegram::TelegramClient},
    clock::Clock,
    config::Settings,
    crypto::Cipher,
    domain::{ChannelId, UserId},
    events::{EventWriter, RuleEngine},
    integrations::{token_cache::TokenCache, tokens::TokenSigner},
    media::store::MediaStore,
    outbox::writer::LedgerWriter,
    outbox::{InFlight, Queue},
};

/// Shared handles: database, queue, actors, clients, settings.
#[derive(Clone)]
pub struct AppState {
    /// sea-orm connection (SQLite or PostgreSQL).
    pub db: DatabaseConnection,
    /// Whose events `POST /events` and `GET /events` without credentials are
    /// (`events.anonymous_owner`, resolved once its user exists); unset, they are refused.
    pub anonymous_events_owner: Arc<std::sync::OnceLock<UserId>>,
    /// Delivery queue.
    pub queue: Queue,
    /// Supervisor of the channel account actors.
    pub registry: Addr<ChannelRegistry>,
    /// Telegram Bot API client.
    pub telegram: TelegramClient,
    /// The channel kinds (one adapter each).
    pub adapters: crate::channels::Adapters,
    /// WhatsApp Web sessions this replica knows (`/channels/{id}/session`).
    pub web_sessions: crate::channels::whatsapp_web::Sessions,
    /// The outbox as WhatsApp Web sessions reach it (they hold it weakly; this keeps it).
    pub web_outbox: Arc<std::sync::OnceLock<crate::outbox::Outbox>>,
    /// Encrypts secrets at rest.
    pub cipher: Cipher,
    /// Where uploaded media lives.
    pub media: Arc<MediaStore>,
    /// Settings in force.
    pub settings: Arc<Settings>,
    /// Name of this process for leases and worker names (hostname-pid unless `PREGONERO_NODE_NAME`).
    pub node_name: String,
    /// When the process started.
    pub started_at: Instant,
    /// Deliveries running in this process.
    pub in_flight: InFlight,
    /// The store replicas share (Redis), when `redis_url` is set.
    pub shared: Option<crate::shared::Shared>,
    /// Live updates (`GET /api/v1/live`), shared by every replica through Redis.
    pub live: crate::live::Live,
    /// Set when shutdown begins: `/ready` answers 503 from then on, so a load balancer stops
    /// sending here before the listener closes.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
    /// The delivery core's handles (the same database, queue and registry as above).
    pub outbox: crate::outbox::Outbox,
    /// Whether this process runs delivery workers.
    pub workers_enabled: bool,
    /// "Now" for quotas, expiries and the scheduler (the system clock; tests move it).
    pub clock: Clock,
    /// Signs and verifies integration tokens.
    pub tokens: TokenSigner,
    /// Batched writes of new messages (alerts).
    pub ledger: LedgerWriter,
    /// API key hash → what its check found, for a second (revoking a key here clears it).
    pub api_keys: Arc<crate::cache::TtlCache<String, crate::auth::key_check::KeyCheck>>,
    /// (owner, channel id) → the account's row, for a second (deleting one here clears it).
    pub channel_rows:
        Arc<crate::cache::TtlCache<(UserId, ChannelId), crate::channels::repo::ChannelRow>>,
    /// Batching writer of the audit log.
    pub audit: crate::auth::audit_writer::AuditWriter,
    /// Recently verified integration tokens.
    pub token_cache: Arc<TokenCache>,
    /// Group commit of ingested events.
    pub events: EventWriter,
    /// Alert rules matched against committed events.
    pub rules: std::sync::Arc<RuleEngine>,
    /// The OpenID provider (Keycloak); `None` in local mode.
    pub oidc: Option<Oidc>,
    /// Failed local logins.
    pub lockout: Arc<Lockout>,
    /// Serialises refreshes of session tokens in this process.
    pub refresh_lock: Arc<tokio::sync::Mutex<()>>,
    /// Status-event subscriptions (its cache is cleared when one changes here).
    pub subscriptions: crate::subscriptions::SubscriptionsListener,
    /// Contact imports running in this process.
    pub imports: crate::contacts::imports::Imports,
    /// Chart snapshots of trading signals (headless Chromium).
    pub snapshots: crate::signals::snapshot::Snapshots,
    /// Proxies whose `X-Forwarded-For` is believed (`trusted_proxies`).
    pub trusted_proxies: Arc<[ipnet::IpNet]>,
}
