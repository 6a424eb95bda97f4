//! The `subscriptions` table.
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    Set,
    sea_query::{Expr, ExprTrait},
};

use crate::domain::{ChannelId, UserId};
use crate::entities::subscriptions;

pub use subscriptions::Model as SubscriptionRow;

/// What a new subscription holds.
pub struct NewSubscription<'a> {
    pub owner_id: &'a UserId,
    pub channel_id: &'a ChannelId,
    pub events: &'a [String],
    pub source_channel_id: Option<&'a ChannelId>,
}

/// Inserts a subscription.
pub async fn insert(
    db: &impl ConnectionTrait,
    new: NewSubscription<'_>,
    now: DateTime<Utc>,
) -> Result<SubscriptionRow, DbErr> {
    subscriptions::ActiveModel {
        id: Set(uuid::Uuid::now_v7().to_string()),
        owner_id: Set(new.owner_id.clone()),
        channel_id: Set(new.channel_id.clone()),
        events: Set(new.events.join(",")),
        source_channel_id: Set(new.source_channel_id.cloned()),
        sequence: Set(0),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(db)
    .await
}

/// An owner's subscriptions, oldest first.
pub async fn list_for(
    db: &impl ConnectionTrait,
    owner_id: &UserId,
) -> Result<Vec<SubscriptionRow>, DbErr> {
    subscriptions::Entity::find()
        .filter(subscriptions::Column::OwnerId.eq(owner_id))
        .order_by_asc(subscriptions::Column::Id)
        .all(db)
        .await
}

/// One page of the owner's subscriptions, oldest first.
pub async fn page_for(
    db: &impl ConnectionTrait,
    owner_id: &UserId,
    page: &crate::page::PageRequest,
) -> Result<crate::page::Page<SubscriptionRow>, DbErr> {
    let q = subscriptions::Entity::find().filter(subscriptions::Column::OwnerId.eq(owner_id));
    crate::page::fetch(
        db,
        q,
        subscriptions::Column::Id,
        sea_orm::Order::Asc,
        page,
        |s| s.id.clone(),
    )
    .await
}

/// One subscription whose owner `may_see` accepts.
pub async fn find_visible(
    db: &impl ConnectionTrait,
    id: &str,
    may_see: impl FnOnce(&UserId) -> bool,
) -> Result<Option<SubscriptionRow>, DbErr> {
    Ok(subscriptions::Entity::find_by_id(id.to_owned())
        .one(db)
        .await?
        .filter(|s| may_see(&s.owner_id)))
}

/// Deletes a subscription (its events already written stay in the ledger).
pub async fn delete(db: &impl ConnectionTrait, id: &str) -> Result<(), DbErr> {
    subscriptions::Entity::delete_by_id(id.to_owned())
        .exec(db)
        .await?;
    Ok(())
}

/// Takes the subscription's next sequence number. In the caller's transaction: the row stays
/// locked until it ends, so numbers follow commit order and none is skipped by a rollback.
pub async fn next_sequence(db: &impl ConnectionTrait, id: &str) -> Result<Option<i64>, DbErr> {
    let updated = subscriptions::Entity::update_many()
        .col_expr(
            subscriptions::Column::Sequence,
            Expr::col(subscriptions::Column::Sequence).add(1),
        )
        .filter(subscriptions::Column::Id.eq(id))
        .exec(db)
        .await?;
    if updated.rows_affected == 0 {
        return Ok(None);
    }
    Ok(subscriptions::Entity::find_by_id(id.to_owned())
        .one(db)
        .await?
        .map(|s| s.sequence))
}
