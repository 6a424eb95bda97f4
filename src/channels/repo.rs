//! Channel accounts in the database; credentials are encrypted before they get here.
use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, Order, QueryFilter,
    QueryOrder, Set, sea_query::Expr,
};

use crate::domain::{ChannelId, ChannelStatus, UserId};
use crate::entities::channel_accounts;
use crate::page::{Page, PageRequest};

pub use channel_accounts::Model as ChannelRow;

/// A new account row.
pub struct NewChannel<'a> {
    /// Owner.
    pub owner_id: &'a UserId,
    /// `telegram`.
    pub kind: &'a str,
    /// Display name.
    pub name: &'a str,
    /// Encrypted credentials.
    pub credentials: String,
    /// Provider id (bot user id).
    pub external_id: Option<String>,
    /// Provider username (bot @username).
    pub username: Option<String>,
    /// Pacing overrides as JSON.
    pub limits: Option<String>,
}

/// Inserts an active account.
pub async fn insert(db: &DatabaseConnection, new: NewChannel<'_>) -> Result<ChannelRow, DbErr> {
    let now = Utc::now();
    channel_accounts::ActiveModel {
        id: Set(ChannelId::generate()),
        owner_id: Set(new.owner_id.clone()),
        kind: Set(new.kind.to_owned()),
        name: Set(new.name.to_owned()),
        credentials: Set(new.credentials),
        external_id: Set(new.external_id),
        username: Set(new.username),
        limits: Set(new.limits),
        status: Set(ChannelStatus::Active.as_str().into()),
        status_detail: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        update_offset: Set(None),
    }
    .insert(db)
    .await
}

/// Every account (for starting actors at boot).
pub async fn all(db: &DatabaseConnection) -> Result<Vec<ChannelRow>, DbErr> {
    channel_accounts::Entity::find().all(db).await
}

/// The accounts of one owner, oldest first.
pub async fn list_for(
    db: &DatabaseConnection,
    owner_id: &UserId,
) -> Result<Vec<ChannelRow>, DbErr> {
    channel_accounts::Entity::find()
        .filter(channel_accounts::Column::OwnerId.eq(owner_id))
        .order_by_asc(channel_accounts::Column::CreatedAt)
        .all(db)
        .await
}

/// One page of the owner's accounts, oldest first.
pub async fn page_for(
    db: &DatabaseConnection,
    owner_id: &UserId,
    page: &PageRequest,
) -> Result<Page<ChannelRow>, DbErr> {
    let q = channel_accounts::Entity::find().filter(channel_accounts::Column::OwnerId.eq(owner_id));
    crate::page::fetch(db, q, channel_accounts::Column::Id, Order::Asc, page, |c| {
        c.id.to_string()
    })
    .await
}

/// One account if `owner_id` owns it.
pub async fn find_owned(
    db: &DatabaseConnection,
    owner_id: &UserId,
    id: &ChannelId,
) -> Result<Option<ChannelRow>, DbErr> {
    Ok(channel_accounts::Entity::find_by_id(id.to_owned())
        .one(db)
        .await?
        .filter(|c| &c.owner_id == owner_id))
}

/// One account if its owner is one `may_see` accepts (the caller, or anyone for an admin).
pub async fn find_visible(
    db: &DatabaseConnection,
    id: &ChannelId,
    may_see: impl FnOnce(&UserId) -> bool,
) -> Result<Option<ChannelRow>, DbErr> {
    Ok(channel_accounts::Entity::find_by_id(id.to_owned())
        .one(db)
        .await?
        .filter(|c| may_see(&c.owner_id)))
}

/// Deletes an account.
pub async fn delete(db: &DatabaseConnection, id: &ChannelId) -> Result<(), DbErr> {
    channel_accounts::Entity::delete_by_id(id.to_owned())
        .exec(db)
        .await?;
    RECENT.clear();
    // A WhatsApp Web number's session keys go with it.
    crate::entities::wa_session_store::Entity::delete_many()
        .filter(crate::entities::wa_session_store::Column::ChannelId.eq(id.as_str()))
        .exec(db)
        .await?;
    Ok(())
}

/// Sets `status` (`active`, `unauthorized`, …) with a reason.
pub async fn set_status(
    db: &DatabaseConnection,
    id: &ChannelId,
    status: ChannelStatus,
    detail: &str,
) -> Result<(), DbErr> {
    channel_accounts::Entity::update_many()
        .col_expr(
            channel_accounts::Column::Status,
            Expr::value(status.as_str()),
        )
        .col_expr(channel_accounts::Column::StatusDetail, Expr::value(detail))
        .col_expr(channel_accounts::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(channel_accounts::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// Replaces an account's encrypted credentials (re-encryption after a key rotation).
pub async fn set_credentials(
    db: &DatabaseConnection,
    id: &ChannelId,
    credentials: &str,
) -> Result<(), DbErr> {
    channel_accounts::Entity::update_many()
        .col_expr(
            channel_accounts::Column::Credentials,
            Expr::value(credentials),
        )
        .filter(channel_accounts::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// Counts accounts by status (for `/health`).
pub async fn count_by_status(db: &DatabaseConnection) -> Result<Vec<(String, i64)>, DbErr> {
    use sea_orm::QuerySelect;
    channel_accounts::Entity::find()
        .select_only()
        .column(channel_accounts::Column::Status)
        .column_as(channel_accounts::Column::Id.count(), "n")
        .group_by(channel_accounts::Column::Status)
        .into_tuple::<(String, i64)>()
        .all(db)
        .await
}

/// Remembers the next `getUpdates` offset of a bot, so a restart neither replays nor skips updates.
pub async fn set_update_offset(
    db: &impl sea_orm::ConnectionTrait,
    id: &ChannelId,
    offset: i64,
) -> Result<(), DbErr> {
    channel_accounts::Entity::update_many()
        .col_expr(channel_accounts::Column::UpdateOffset, Expr::value(offset))
        .filter(channel_accounts::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// One account by id.
pub async fn find(db: &DatabaseConnection, id: &ChannelId) -> Result<Option<ChannelRow>, DbErr> {
    channel_accounts::Entity::find_by_id(id.to_owned())
        .one(db)
        .await
}

/// Accounts read by [`find_recent`], each kept for a second.
static RECENT: std::sync::LazyLock<crate::cache::TtlCache<ChannelId, ChannelRow>> =
    std::sync::LazyLock::new(|| {
        crate::cache::TtlCache::new(std::time::Duration::from_secs(1), 10_000)
    });

/// [`find`] for provider webhooks: a campaign's number gets three per message, and reading the
/// row for each was a third of the statements of a delivery (`bench/replicas.sh`). A row read
/// less than a second ago is answered from memory; [`delete`] on this node forgets it at once,
/// other replicas within the second. Credentials only change by re-encryption (same secrets).
pub async fn find_recent(
    db: &DatabaseConnection,
    id: &ChannelId,
) -> Result<Option<ChannelRow>, DbErr> {
    if let Some(row) = RECENT.get(id) {
        return Ok(Some(row));
    }
    let row = find(db, id).await?;
    if let Some(row) = &row {
        RECENT.put(id.clone(), row.clone());
    }
    Ok(row)
}

/// The pacing overrides stored with an account (none if absent or unreadable).
pub fn stored_limits(row: &ChannelRow) -> super::adapter::LimitsInput {
    row.limits
        .as_deref()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_default()
}
