//! Outcomes → status events: in the outcome's transaction, one event message per subscription
//! that asked for it; after the commit, their delivery jobs.
use std::{sync::Arc, time::Duration};

use chrono::{SecondsFormat, Utc};
use futures::future::BoxFuture;
use sea_orm::{DatabaseTransaction, DbErr};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{
    EVENT_FORMAT,
    repo::{self, SubscriptionRow},
};
use crate::{
    cache::TtlCache,
    domain::{MessageId, UserId},
    outbox::{
        Outbox,
        hooks::{Listener, Outcome},
        repo::{MessageRow, NewMessage, exists, insert_in},
    },
};

/// How long an owner's subscriptions are read from memory (a change made on this node is seen
/// at once; one made on another, within this).
const CACHE_TTL: Duration = Duration::from_secs(1);

/// The subscriptions listener.
#[derive(Clone)]
pub struct SubscriptionsListener {
    /// Owner → their subscriptions.
    cache: Arc<TtlCache<UserId, Arc<Vec<SubscriptionRow>>>>,
}

impl Default for SubscriptionsListener {
    fn default() -> Self {
        Self {
            cache: Arc::new(TtlCache::new(CACHE_TTL, 10_000)),
        }
    }
}

impl SubscriptionsListener {
    /// Forgets what it read (a subscription was created or deleted here).
    pub fn forget(&self) {
        self.cache.clear();
    }

    async fn of(
        &self,
        db: &impl sea_orm::ConnectionTrait,
        owner_id: &UserId,
    ) -> Result<Arc<Vec<SubscriptionRow>>, DbErr> {
        if let Some(subs) = self.cache.get(owner_id) {
            return Ok(subs);
        }
        let subs = Arc::new(repo::list_for(db, owner_id).await?);
        self.cache.put(owner_id.clone(), subs.clone());
        Ok(subs)
    }
}

/// Whether `sub` wants `event` of `msg`.
fn wants(sub: &SubscriptionRow, msg: &MessageRow, event: &str) -> bool {
    sub.events.split(',').any(|e| e == event)
        && sub
            .source_channel_id
            .as_ref()
            .is_none_or(|c| c == &msg.channel_id)
}

/// The event message's id: the same for the same (subscription, message, event), so a report
/// heard twice cannot make two events, and the follow-up can find it without being told.
fn event_id(sub: &SubscriptionRow, msg: &MessageRow, event: &str) -> MessageId {
    let digest = Sha256::digest(format!("{}\n{}\n{event}", sub.id, msg.id));
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
        .into()
}

/// Whether a message is itself a status event (events about events are never made).
fn is_event(msg: &MessageRow) -> bool {
    msg.parse_mode.as_deref() == Some(EVENT_FORMAT)
}

/// The document posted to the subscriber.
fn document(sub: &SubscriptionRow, sequence: i64, msg: &MessageRow, outcome: &Outcome) -> String {
    let (error, at) = match outcome {
        Outcome::Failed { code, detail } => (Some(json!({"code": code, "detail": detail})), None),
        Outcome::Skipped { code } => (Some(json!({"code": code, "detail": null})), None),
        Outcome::Delivered { at } | Outcome::Read { at } => (None, Some(*at)),
        _ => (None, None),
    };
    let provider_message_id = match outcome {
        Outcome::Sent {
            provider_message_id,
        } => Some(provider_message_id.as_str()),
        _ => msg.provider_message_id.as_deref(),
    };
    json!({
        "type": "message.status",
        "subscription_id": sub.id,
        "sequence": sequence,
        "event": outcome.event(),
        "occurred_at": at.unwrap_or_else(Utc::now).to_rfc3339_opts(SecondsFormat::Millis, true),
        "message": {
            "id": msg.id,
            "channel_id": msg.channel_id,
            "recipient": msg.recipient,
            "campaign_id": msg.campaign_id,
            "contact_id": msg.contact_id,
            "integration_id": msg.integration_id,
            "provider_message_id": provider_message_id,
        },
        "error": error,
    })
    .to_string()
}

impl Listener for SubscriptionsListener {
    fn name(&self) -> &'static str {
        "subscriptions"
    }

    fn record<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        msg: &'a MessageRow,
        outcome: &'a Outcome,
    ) -> BoxFuture<'a, Result<(), DbErr>> {
        Box::pin(async move {
            let Some(event) = outcome.event() else {
                return Ok(());
            };
            if is_event(msg) {
                return Ok(());
            }
            let subs = self.of(txn, &msg.owner_id).await?;
            for sub in subs.iter().filter(|s| wants(s, msg, event)) {
                let id = event_id(sub, msg, event);
                if exists(txn, &id).await? {
                    continue; // the same report heard again
                }
                // Deleted meanwhile (on another node): nothing to number.
                let Some(sequence) = repo::next_sequence(txn, &sub.id).await? else {
                    continue;
                };
                let mut row = NewMessage {
                    owner_id: sub.owner_id.clone(),
                    channel_id: sub.channel_id.clone(),
                    recipient: sub.id.clone(),
                    body: document(sub, sequence, msg, outcome),
                    parse_mode: Some(EVENT_FORMAT.to_owned()),
                    media_id: None,
                    idempotency_key: None,
                    request_hash: None,
                    integration_id: None,
                }
                .into_row(Utc::now());
                row.id = sea_orm::Set(id);
                insert_in(txn, row).await?;
            }
            Ok(())
        })
    }

    fn after<'a>(
        &'a self,
        outbox: &'a Outbox,
        msg: &'a MessageRow,
        outcome: &'a Outcome,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let Some(event) = outcome.event() else {
                return Ok(());
            };
            if is_event(msg) {
                return Ok(());
            }
            let subs = self.of(&outbox.db, &msg.owner_id).await?;
            for sub in subs.iter().filter(|s| wants(s, msg, event)) {
                // A job for a row that was not written (a subscription created in between)
                // finds nothing and ends.
                crate::outbox::dispatch(&outbox.db, &outbox.queue, &event_id(sub, msg, event))
                    .await;
            }
            Ok(())
        })
    }
}
