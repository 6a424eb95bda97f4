//! Integrations and their tokens in the database. Every status change is one conditional UPDATE,
//! so two replicas (or a webhook retry) racing on the same chat cannot both win.
use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QueryTrait, Set, Statement,
    sea_query::{Expr, ExprTrait},
};

use super::status::Status;
use crate::domain::{ChannelId, IntegrationId, UserId};
use crate::entities::{integration_tokens, integrations};

pub use integration_tokens::Model as TokenRow;
pub use integrations::Model as IntegrationRow;

/// A new integration.
pub struct NewIntegration {
    /// Owner (the bot's owner).
    pub owner_id: UserId,
    /// The bot that delivers its alerts.
    pub channel_id: ChannelId,
    /// Display name.
    pub name: String,
    /// Linked chat, if already known (chat-started integrations).
    pub chat_id: Option<String>,
    /// Scopes of its tokens, space-separated.
    pub scopes: String,
    /// Alerts per UTC day.
    pub daily_quota: i32,
    /// SHA-256 of the deep-link code and its expiry, for API-started integrations.
    pub link: Option<(String, DateTime<Utc>)>,
}

/// Inserts a `pending` integration.
pub async fn insert(
    db: &impl ConnectionTrait,
    new: NewIntegration,
    now: DateTime<Utc>,
) -> Result<IntegrationRow, DbErr> {
    let (link_code_hash, link_expires_at) = new.link.unzip();
    integrations::ActiveModel {
        id: Set(IntegrationId::generate()),
        owner_id: Set(new.owner_id),
        channel_id: Set(new.channel_id),
        name: Set(new.name),
        chat_id: Set(new.chat_id),
        status: Set(Status::Pending.as_str().into()),
        status_detail: Set(None),
        scopes: Set(new.scopes),
        daily_quota: Set(new.daily_quota),
        used_today: Set(0),
        quota_day: Set(None),
        link_code_hash: Set(link_code_hash),
        link_expires_at: Set(link_expires_at),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(db)
    .await
}

/// One integration.
pub async fn find(
    db: &impl ConnectionTrait,
    id: &IntegrationId,
) -> Result<Option<IntegrationRow>, DbErr> {
    integrations::Entity::find_by_id(id.to_owned())
        .one(db)
        .await
}

/// One integration if `owner_id` owns it.
pub async fn find_owned(
    db: &impl ConnectionTrait,
    owner_id: &UserId,
    id: &IntegrationId,
) -> Result<Option<IntegrationRow>, DbErr> {
    Ok(find(db, id).await?.filter(|i| &i.owner_id == owner_id))
}

/// An owner's integrations, oldest first; only those linked to `chat_id` when given.
pub async fn page_for(
    db: &impl ConnectionTrait,
    owner_id: &UserId,
    page: &crate::page::PageRequest,
) -> Result<crate::page::Page<IntegrationRow>, DbErr> {
    let q = integrations::Entity::find().filter(integrations::Column::OwnerId.eq(owner_id));
    crate::page::fetch(
        db,
        q,
        integrations::Column::Id,
        sea_orm::Order::Asc,
        page,
        |i| i.id.to_string(),
    )
    .await
}

/// The owner's integrations (those of `chat_id` only, when given), oldest first.
pub async fn list_for(
    db: &impl ConnectionTrait,
    owner_id: &UserId,
    chat_id: Option<&str>,
) -> Result<Vec<IntegrationRow>, DbErr> {
    let mut q = integrations::Entity::find().filter(integrations::Column::OwnerId.eq(owner_id));
    if let Some(chat) = chat_id {
        q = q.filter(integrations::Column::ChatId.eq(chat));
    }
    q.order_by_asc(integrations::Column::CreatedAt)
        .all(db)
        .await
}

/// The integrations of one bot in one chat.
pub async fn in_chat(
    db: &impl ConnectionTrait,
    channel_id: &ChannelId,
    chat_id: &str,
) -> Result<Vec<IntegrationRow>, DbErr> {
    integrations::Entity::find()
        .filter(integrations::Column::ChannelId.eq(channel_id))
        .filter(integrations::Column::ChatId.eq(chat_id))
        .order_by_asc(integrations::Column::CreatedAt)
        .all(db)
        .await
}

/// The integration a deep-link code belongs to, on this bot.
pub async fn by_link_code(
    db: &impl ConnectionTrait,
    channel_id: &ChannelId,
    code_hash: &str,
) -> Result<Option<IntegrationRow>, DbErr> {
    integrations::Entity::find()
        .filter(integrations::Column::ChannelId.eq(channel_id))
        .filter(integrations::Column::LinkCodeHash.eq(code_hash))
        .one(db)
        .await
}

/// `pending → active` bound to `chat_id`, consuming the deep-link code (once, and only before it
/// expires). False if the code was used, expired or replaced meanwhile.
pub async fn link_with_code(
    db: &impl ConnectionTrait,
    id: &IntegrationId,
    code_hash: &str,
    chat_id: &str,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let res = integrations::Entity::update_many()
        .col_expr(integrations::Column::ChatId, Expr::value(chat_id))
        .col_expr(
            integrations::Column::Status,
            Expr::value(Status::Active.as_str()),
        )
        .col_expr(
            integrations::Column::StatusDetail,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            integrations::Column::LinkCodeHash,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            integrations::Column::LinkExpiresAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(integrations::Column::UpdatedAt, Expr::value(now))
        .filter(integrations::Column::Id.eq(id))
        .filter(integrations::Column::Status.eq(Status::Pending.as_str()))
        .filter(integrations::Column::LinkCodeHash.eq(code_hash))
        .filter(integrations::Column::LinkExpiresAt.gt(now))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Renames an integration and/or changes its daily quota (not once revoked).
pub async fn update(
    db: &impl ConnectionTrait,
    id: &IntegrationId,
    name: Option<&str>,
    daily_quota: Option<i32>,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let mut q = integrations::Entity::update_many()
        .col_expr(integrations::Column::UpdatedAt, Expr::value(now))
        .filter(integrations::Column::Id.eq(id))
        .filter(integrations::Column::Status.ne(Status::Revoked.as_str()));
    if let Some(name) = name {
        q = q.col_expr(integrations::Column::Name, Expr::value(name));
    }
    if let Some(quota) = daily_quota {
        q = q.col_expr(integrations::Column::DailyQuota, Expr::value(quota));
    }
    Ok(q.exec(db).await?.rows_affected == 1)
}

/// Replaces the deep-link code of a pending integration.
pub async fn set_link(
    db: &impl ConnectionTrait,
    id: &IntegrationId,
    code_hash: &str,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let res = integrations::Entity::update_many()
        .col_expr(integrations::Column::LinkCodeHash, Expr::value(code_hash))
        .col_expr(integrations::Column::LinkExpiresAt, Expr::value(expires_at))
        .col_expr(integrations::Column::UpdatedAt, Expr::value(now))
        .filter(integrations::Column::Id.eq(id))
        .filter(integrations::Column::Status.eq(Status::Pending.as_str()))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Moves integration `id` from one of `from` to `to`; false if it was in none of them.
pub async fn transition(
    db: &impl ConnectionTrait,
    id: &IntegrationId,
    from: &[Status],
    to: Status,
    detail: Option<&str>,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let res = integrations::Entity::update_many()
        .col_expr(integrations::Column::Status, Expr::value(to.as_str()))
        .col_expr(integrations::Column::StatusDetail, Expr::value(detail))
        .col_expr(integrations::Column::UpdatedAt, Expr::value(now))
        .filter(integrations::Column::Id.eq(id))
        .filter(integrations::Column::Status.is_in(from.iter().map(|s| s.as_str())))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// A status change for every integration in one chat.
#[derive(Debug, Clone, Copy)]
pub struct ChatChange<'a> {
    /// Only integrations in this status change…
    pub from: Status,
    /// …and, when given, only those whose `status_detail` is this.
    pub only_detail: Option<&'a str>,
    /// New status.
    pub to: Status,
    /// New `status_detail`.
    pub detail: Option<&'a str>,
}

/// Applies `change` to the integrations of one bot in one chat; returns how many changed.
pub async fn transition_chat(
    db: &impl ConnectionTrait,
    channel_id: &ChannelId,
    chat_id: &str,
    change: ChatChange<'_>,
    now: DateTime<Utc>,
) -> Result<u64, DbErr> {
    let ChatChange {
        from,
        only_detail,
        to,
        detail,
    } = change;
    let mut q = integrations::Entity::update_many()
        .col_expr(integrations::Column::Status, Expr::value(to.as_str()))
        .col_expr(integrations::Column::StatusDetail, Expr::value(detail))
        .col_expr(integrations::Column::UpdatedAt, Expr::value(now))
        .filter(integrations::Column::ChannelId.eq(channel_id))
        .filter(integrations::Column::ChatId.eq(chat_id))
        .filter(integrations::Column::Status.eq(from.as_str()));
    if let Some(d) = only_detail {
        q = q.filter(integrations::Column::StatusDetail.eq(d));
    }
    Ok(q.exec(db).await?.rows_affected)
}

/// A Telegram group became a supergroup: its integrations follow the new chat id.
pub async fn move_chat(
    db: &impl ConnectionTrait,
    channel_id: &ChannelId,
    from: &str,
    to: &str,
) -> Result<u64, DbErr> {
    let res = integrations::Entity::update_many()
        .col_expr(integrations::Column::ChatId, Expr::value(to))
        .filter(integrations::Column::ChannelId.eq(channel_id))
        .filter(integrations::Column::ChatId.eq(from))
        .exec(db)
        .await?;
    Ok(res.rows_affected)
}

/// Revokes an integration and every token it has (any status but `revoked`).
pub async fn revoke(
    db: &impl ConnectionTrait,
    id: &IntegrationId,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let changed = transition(
        db,
        id,
        &[Status::Pending, Status::Active, Status::Paused],
        Status::Revoked,
        None,
        now,
    )
    .await?;
    integration_tokens::Entity::update_many()
        .col_expr(integration_tokens::Column::RevokedAt, Expr::value(now))
        .filter(integration_tokens::Column::IntegrationId.eq(id))
        .filter(integration_tokens::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(changed)
}

/// The statement that takes one alert from today's quota: it changes no row when the
/// integration is not active, its quota is 0, or today's quota is used up. A counter from an earlier day counts as zero; a counter
/// already on a *later* day (another replica's clock crossed midnight first) is never moved
/// back, it is simply counted into.
pub fn take_quota(backend: DbBackend, id: &str, today: NaiveDate) -> Statement {
    let today = today.to_string();
    let current = Expr::col(integrations::Column::QuotaDay).gte(today.clone());
    integrations::Entity::update_many()
        .col_expr(
            integrations::Column::UsedToday,
            Expr::case(
                current.clone(),
                Expr::col(integrations::Column::UsedToday).add(1),
            )
            .finally(1)
            .into(),
        )
        .col_expr(
            integrations::Column::QuotaDay,
            Expr::case(current.clone(), Expr::col(integrations::Column::QuotaDay))
                .finally(today.clone())
                .into(),
        )
        .filter(integrations::Column::Id.eq(id))
        .filter(integrations::Column::Status.eq(Status::Active.as_str()))
        .filter(integrations::Column::DailyQuota.gt(0))
        .filter(
            Expr::col(integrations::Column::QuotaDay)
                .is_null()
                .or(Expr::col(integrations::Column::QuotaDay).lt(today))
                .or(Expr::col(integrations::Column::UsedToday)
                    .lt(Expr::col(integrations::Column::DailyQuota))),
        )
        .build(backend)
}

/// The statement that takes `n` alerts from today's quota at once, only if all of them fit (and
/// the counter already counts today): it changes no row otherwise, and the caller then takes
/// them one by one.
pub fn take_quota_n(backend: DbBackend, id: &str, today: NaiveDate, n: i32) -> Statement {
    integrations::Entity::update_many()
        .col_expr(
            integrations::Column::UsedToday,
            Expr::col(integrations::Column::UsedToday).add(n),
        )
        .filter(integrations::Column::Id.eq(id))
        .filter(integrations::Column::Status.eq(Status::Active.as_str()))
        .filter(integrations::Column::QuotaDay.eq(today.to_string()))
        .filter(
            Expr::col(integrations::Column::UsedToday)
                .add(n)
                .lte(Expr::col(integrations::Column::DailyQuota)),
        )
        .build(backend)
}

/// The daily reset: counters of earlier days go back to zero for `today`. Counters already
/// counting `today` are left alone, so running it late (or twice) never gives back used alerts.
pub async fn reset_quotas(db: &impl ConnectionTrait, today: NaiveDate) -> Result<u64, DbErr> {
    let today = today.to_string();
    let res = integrations::Entity::update_many()
        .col_expr(integrations::Column::UsedToday, Expr::value(0))
        .col_expr(integrations::Column::QuotaDay, Expr::value(today.clone()))
        .filter(
            integrations::Column::QuotaDay
                .is_null()
                .or(integrations::Column::QuotaDay.ne(today)),
        )
        .exec(db)
        .await?;
    Ok(res.rows_affected)
}

/// Records an issued token (by the hash of its `jti`).
pub async fn insert_token(
    db: &impl ConnectionTrait,
    id_hash: &str,
    integration_id: &IntegrationId,
    kind: &str,
    scopes: &str,
    expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    integration_tokens::ActiveModel {
        id: Set(id_hash.to_owned()),
        integration_id: Set(integration_id.to_owned()),
        kind: Set(kind.to_owned()),
        scopes: Set(scopes.to_owned()),
        expires_at: Set(expires_at),
        revoked_at: Set(None),
        created_at: Set(now),
    }
    .insert(db)
    .await?;
    Ok(())
}

/// A token row by the hash of its `jti`.
pub async fn find_token(
    db: &impl ConnectionTrait,
    id_hash: &str,
) -> Result<Option<TokenRow>, DbErr> {
    integration_tokens::Entity::find_by_id(id_hash.to_owned())
        .one(db)
        .await
}

/// Revokes one token; false if it was already revoked.
pub async fn revoke_token(
    db: &impl ConnectionTrait,
    id_hash: &str,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let res = integration_tokens::Entity::update_many()
        .col_expr(integration_tokens::Column::RevokedAt, Expr::value(now))
        .filter(integration_tokens::Column::Id.eq(id_hash))
        .filter(integration_tokens::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}
