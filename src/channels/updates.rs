//! Incoming Telegram updates for one bot: long polling (one poller per bot across the cluster,
//! by a database lease) or webhook registration. Owned by the bot's account actor: it starts with
//! the actor and is aborted when the actor stops.
use std::{sync::Arc, time::Duration};

use futures::future::BoxFuture;
use sea_orm::DatabaseConnection;
use secrecy::{ExposeSecret, SecretString};

use super::{ChannelError, repo, telegram::TelegramClient, telegram::Update};
use crate::domain::ChannelId;
use crate::{config::UpdatesMode, leases};

/// Something that acts on a bot's updates (the integrations' bot logic).
pub trait UpdateSink: Send + Sync + 'static {
    /// Handles one update of `channel_id`. An error means "not handled": the update is not
    /// confirmed and comes again.
    fn handle(
        &self,
        channel_id: ChannelId,
        update: Update,
    ) -> BoxFuture<'static, anyhow::Result<()>>;
}

/// How this process reads updates; shared by every account actor.
#[derive(Clone)]
pub struct UpdatesConfig {
    /// `Polling` or `Webhook` (`Off` and `Auto` never reach here).
    pub mode: UpdatesMode,
    /// Where updates go.
    pub sink: Arc<dyn UpdateSink>,
    /// For the polling lease and the stored offset.
    pub db: DatabaseConnection,
    /// This node's name (lease holder).
    pub node: String,
    /// Long-poll wait, seconds.
    pub poll_timeout: u64,
    /// `<public_url>` for webhooks.
    pub public_url: Option<String>,
    /// Key that webhook secrets are derived from.
    pub webhook_key: [u8; 32],
}

/// The `secret_token` Telegram echoes for bot `channel_id`: hex HMAC of the id under the
/// server's webhook key (64 chars of `0-9a-f`, allowed by `setWebhook`).
pub fn webhook_secret(key: &[u8; 32], channel_id: &ChannelId) -> String {
    hex::encode(crate::crypto::hmac_sha256(
        key,
        channel_id.as_str().as_bytes(),
    ))
}

/// The lease that makes one node the poller of a bot.
pub fn poll_lease(channel_id: &ChannelId) -> String {
    format!("telegram-poll:{channel_id}")
}

/// The end of the polling lease term this poller last set, for a release that cannot take a
/// newer term away.
pub type LeaseTerm = Arc<std::sync::Mutex<Option<chrono::DateTime<chrono::Utc>>>>;

/// Runs until aborted: registers the webhook, or polls and hands updates to the sink.
pub async fn run(
    channel_id: ChannelId,
    token: SecretString,
    client: TelegramClient,
    cfg: UpdatesConfig,
    term: LeaseTerm,
) {
    match cfg.mode {
        UpdatesMode::Webhook => register_webhook(&channel_id, &token, &client, &cfg).await,
        UpdatesMode::Polling => poll(&channel_id, &token, &client, &cfg, &term).await,
        UpdatesMode::Auto | UpdatesMode::Off => {}
    }
}

async fn register_webhook(
    channel_id: &ChannelId,
    token: &SecretString,
    client: &TelegramClient,
    cfg: &UpdatesConfig,
) {
    let Some(base) = &cfg.public_url else { return };
    let url = format!(
        "{}/telegram/webhook/{channel_id}",
        base.trim_end_matches('/')
    );
    let secret = webhook_secret(&cfg.webhook_key, channel_id);
    let mut delay = Duration::from_secs(1);
    loop {
        match client
            .set_webhook(token.expose_secret(), &url, &secret)
            .await
        {
            Ok(()) => {
                tracing::info!(%channel_id, "webhook registered");
                return;
            }
            Err(e) => {
                tracing::warn!(%channel_id, code = e.code(), error = %e, "setWebhook failed; retrying");
                if let ChannelError::RateLimited { retry_after } = e {
                    delay = delay.max(retry_after);
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(300));
            }
        }
    }
}

async fn poll(
    channel_id: &ChannelId,
    token: &SecretString,
    client: &TelegramClient,
    cfg: &UpdatesConfig,
    term: &LeaseTerm,
) {
    use chrono::SubsecRound;
    let lease = poll_lease(channel_id);
    let lease_for = chrono::Duration::seconds(i64::try_from(cfg.poll_timeout).unwrap_or(25) + 30);
    let mut offset = repo::find(&cfg.db, channel_id)
        .await
        .ok()
        .flatten()
        .and_then(|c| c.update_offset);
    let mut webhook_deleted = false;
    let mut backoff = Duration::from_secs(1);
    loop {
        let now = chrono::Utc::now();
        let until = (now + lease_for).trunc_subsecs(0);
        match leases::acquire(&cfg.db, &lease, &cfg.node, now, until).await {
            Ok(true) => {
                *term.lock().unwrap_or_else(|e| e.into_inner()) = Some(until);
            }
            Ok(false) => {
                // Another node polls this bot; stand by in case it dies.
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
            Err(e) => {
                tracing::warn!(%channel_id, error = %e, "polling lease unavailable");
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
        }
        if !webhook_deleted {
            // getUpdates answers 409 while a webhook is set (e.g. left by an earlier config).
            match client.delete_webhook(token.expose_secret()).await {
                Ok(()) => webhook_deleted = true,
                Err(e) => tracing::warn!(%channel_id, code = e.code(), "deleteWebhook failed"),
            }
        }
        match client
            .get_updates(token.expose_secret(), offset, cfg.poll_timeout)
            .await
        {
            Ok(updates) => {
                backoff = Duration::from_secs(1);
                let mut handled = offset;
                for update in updates {
                    let next = update.update_id + 1;
                    if let Err(e) = cfg.sink.handle(channel_id.clone(), update).await {
                        // Not confirmed: Telegram sends it again on the next call.
                        tracing::error!(%channel_id, error = ?e, "update not handled; will retry");
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        break;
                    }
                    handled = Some(next);
                }
                if handled != offset {
                    offset = handled;
                    if let Some(o) = offset
                        && let Err(e) = repo::set_update_offset(&cfg.db, channel_id, o).await
                    {
                        tracing::warn!(%channel_id, error = %e, "could not store the update offset");
                    }
                }
            }
            Err(e) => {
                let wait = match &e {
                    ChannelError::RateLimited { retry_after } => *retry_after,
                    ChannelError::Unauthorized { .. } => Duration::from_secs(60),
                    _ => backoff,
                };
                tracing::warn!(%channel_id, code = e.code(), error = %e, ?wait, "getUpdates failed");
                if e.code() == "conflict" {
                    webhook_deleted = false;
                }
                tokio::time::sleep(wait).await;
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
        }
    }
}
