//! What the subscription routes ask for.
use serde::Deserialize;

use super::{
    EVENTS, SubscriptionError, SubscriptionsListener,
    repo::{self, NewSubscription, SubscriptionRow},
};
use crate::page::{Page, PageRequest};
use crate::{
    auth::Caller,
    channels::{repo as channels_repo, webhook},
    domain::{ChannelId, MessageId, UserId},
    outbox::{
        Outbox,
        repo::{self as ledger, MessageRow},
    },
};

/// Most dead letters listed or replayed by id at once.
pub const MAX_PAGE: usize = 500;

/// `POST /subscriptions`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewSubscription)]
pub struct Create {
    /// One of the owner's webhook channels.
    pub channel_id: ChannelId,
    /// Events wanted (`sent`, `delivered`, `read`, `failed`, `skipped`); all when left out.
    pub events: Option<Vec<String>>,
    /// Only messages sent on this channel.
    pub source_channel_id: Option<ChannelId>,
}

/// Creates a subscription for `owner_id`.
pub async fn create(
    outbox: &Outbox,
    listener: &SubscriptionsListener,
    owner_id: &UserId,
    req: Create,
) -> Result<SubscriptionRow, SubscriptionError> {
    let channel = channels_repo::find_owned(&outbox.db, owner_id, &req.channel_id)
        .await?
        .filter(|c| c.kind == webhook::KIND)
        .ok_or(SubscriptionError::NotAWebhookChannel)?;
    let mut events: Vec<String> = match req.events {
        None => EVENTS.iter().map(|e| (*e).to_owned()).collect(),
        Some(list) => list,
    };
    if let Some(bad) = events.iter().find(|e| !EVENTS.contains(&e.as_str())) {
        return Err(SubscriptionError::UnknownEvent(bad.clone()));
    }
    events.sort_by_key(|e| EVENTS.iter().position(|k| k == e));
    events.dedup();
    if events.is_empty() {
        return Err(SubscriptionError::UnknownEvent(String::new()));
    }
    if let Some(source) = &req.source_channel_id
        && channels_repo::find_owned(&outbox.db, owner_id, source)
            .await?
            .is_none()
    {
        return Err(SubscriptionError::UnknownSource);
    }
    let row = repo::insert(
        &outbox.db,
        NewSubscription {
            owner_id,
            channel_id: &channel.id,
            events: &events,
            source_channel_id: req.source_channel_id.as_ref(),
        },
        outbox.clock.now(),
    )
    .await?;
    listener.forget();
    tracing::info!(subscription_id = %row.id, channel_id = %row.channel_id, "status subscription created");
    Ok(row)
}

/// The owner's subscriptions.
pub async fn list(
    outbox: &Outbox,
    owner_id: &UserId,
    page: &PageRequest,
) -> Result<Page<SubscriptionRow>, SubscriptionError> {
    Ok(repo::page_for(&outbox.db, owner_id, page).await?)
}

/// A subscription `caller` may see (its own; any, for an admin).
pub async fn get(
    outbox: &Outbox,
    caller: &Caller,
    id: &str,
) -> Result<SubscriptionRow, SubscriptionError> {
    repo::find_visible(&outbox.db, id, |o| caller.can_access(o))
        .await?
        .ok_or(SubscriptionError::NotFound)
}

/// Deletes one; events already written are still delivered.
pub async fn delete(
    outbox: &Outbox,
    listener: &SubscriptionsListener,
    caller: &Caller,
    id: &str,
) -> Result<(), SubscriptionError> {
    let sub = get(outbox, caller, id).await?;
    repo::delete(&outbox.db, &sub.id).await?;
    listener.forget();
    Ok(())
}

/// Its events that exhausted their retries or were refused, oldest first.
pub async fn dead_letters(
    outbox: &Outbox,
    caller: &Caller,
    id: &str,
    page: &PageRequest,
) -> Result<Page<MessageRow>, SubscriptionError> {
    let sub = get(outbox, caller, id).await?;
    Ok(ledger::failed_to(&outbox.db, &sub.channel_id, &sub.id, page).await?)
}

/// Sends its dead letters (those of `ids`, or all) again, each with its first sequence number;
/// returns their ids.
pub async fn replay(
    outbox: &Outbox,
    caller: &Caller,
    id: &str,
    ids: Option<Vec<MessageId>>,
) -> Result<Vec<MessageId>, SubscriptionError> {
    if let Some(ids) = &ids
        && ids.len() > MAX_PAGE
    {
        return Err(SubscriptionError::TooMany(MAX_PAGE));
    }
    let sub = get(outbox, caller, id).await?;
    let requeued =
        ledger::requeue_failed(&outbox.db, &sub.channel_id, &sub.id, ids.as_deref()).await?;
    for chunk in requeued.chunks(MAX_PAGE) {
        if let Err(e) = outbox.queue.push_many(chunk).await {
            // Queued rows without a job: the sweep pushes them.
            tracing::warn!(error = ?e, "replay: enqueue failed; the sweep will retry");
            continue;
        }
        ledger::mark_enqueued(&outbox.db, chunk).await?;
    }
    tracing::info!(subscription_id = %sub.id, replayed = requeued.len(), "dead letters replayed");
    Ok(requeued)
}
