//! The `signal_profiles` and `signals` tables.
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
    sea_query::{Expr, ExprTrait},
};

use crate::domain::{MessageId, UserId};
use crate::entities::{signal_profiles as profiles, signals};

pub use profiles::Model as ProfileRow;
pub use signals::Model as SignalRow;

/// The profile whose current or previous token hashes to `hash`.
pub async fn profile_by_token(
    db: &impl ConnectionTrait,
    hash: &str,
) -> Result<Option<ProfileRow>, DbErr> {
    profiles::Entity::find()
        .filter(
            Condition::any()
                .add(profiles::Column::TokenHash.eq(hash))
                .add(profiles::Column::PreviousTokenHash.eq(hash)),
        )
        .one(db)
        .await
}

/// A user's profile.
pub async fn profile(
    db: &impl ConnectionTrait,
    user_id: &UserId,
) -> Result<Option<ProfileRow>, DbErr> {
    profiles::Entity::find_by_id(user_id.clone()).one(db).await
}

/// A user's profile, created (enabled, no token, no target) when they have none.
pub async fn profile_or_new(
    db: &impl ConnectionTrait,
    user_id: &UserId,
    now: DateTime<Utc>,
) -> Result<ProfileRow, DbErr> {
    if let Some(p) = profile(db, user_id).await? {
        return Ok(p);
    }
    let row = profiles::ActiveModel {
        user_id: Set(user_id.clone()),
        token_hash: Set(None),
        previous_token_hash: Set(None),
        previous_valid_until: Set(None),
        webhook_enabled: Set(true),
        webhook_last_used: Set(None),
        signals_used: Set(0),
        quota_reset_at: Set(now),
        allowed_ips: Set(None),
        channel_id: Set(None),
        recipient: Set(None),
        template: Set(None),
        default_chart_id: Set(None),
        tradingview_cookies: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    };
    match row.insert(db).await {
        Ok(p) => Ok(p),
        // Created by a request racing this one.
        Err(e) if crate::db::is_unique_violation(&e) => profile(db, user_id)
            .await?
            .ok_or_else(|| DbErr::RecordNotFound("signal profile".into())),
        Err(e) => Err(e),
    }
}

/// Saves a changed profile.
pub async fn save(
    db: &impl ConnectionTrait,
    row: profiles::ActiveModel,
) -> Result<ProfileRow, DbErr> {
    row.update(db).await
}

/// Takes one signal from the user's quota (starting a new period when the last one ended) and
/// records the webhook's use; `false` when the period's quota is used up.
pub async fn take_quota(
    db: &impl ConnectionTrait,
    user_id: &UserId,
    quota: u32,
    period_end: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let ended = Expr::col(profiles::Column::QuotaResetAt).lte(now);
    let result = profiles::Entity::update_many()
        .col_expr(
            profiles::Column::SignalsUsed,
            Expr::case(ended.clone(), 1)
                .finally(Expr::col(profiles::Column::SignalsUsed).add(1))
                .into(),
        )
        .col_expr(
            profiles::Column::QuotaResetAt,
            Expr::case(ended.clone(), period_end)
                .finally(Expr::col(profiles::Column::QuotaResetAt))
                .into(),
        )
        .col_expr(profiles::Column::WebhookLastUsed, Expr::value(now))
        .filter(profiles::Column::UserId.eq(user_id))
        .filter(ended.or(Expr::col(profiles::Column::SignalsUsed).lt(i64::from(quota))))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Gives back a signal taken from the quota (a duplicate that lost a race).
pub async fn give_back(db: &impl ConnectionTrait, user_id: &UserId) -> Result<(), DbErr> {
    profiles::Entity::update_many()
        .col_expr(
            profiles::Column::SignalsUsed,
            Expr::col(profiles::Column::SignalsUsed).sub(1),
        )
        .filter(profiles::Column::UserId.eq(user_id))
        .filter(profiles::Column::SignalsUsed.gt(0))
        .exec(db)
        .await?;
    Ok(())
}

/// Inserts a signal.
pub async fn insert(
    db: &impl ConnectionTrait,
    row: signals::ActiveModel,
) -> Result<SignalRow, DbErr> {
    row.insert(db).await
}

/// The signal the owner stored with this payload in the slot or the one before, received
/// since `since`.
pub async fn recent_duplicate(
    db: &impl ConnectionTrait,
    owner_id: &UserId,
    payload_hash: &str,
    slot: i64,
    since: DateTime<Utc>,
) -> Result<Option<SignalRow>, DbErr> {
    signals::Entity::find()
        .filter(signals::Column::OwnerId.eq(owner_id))
        .filter(signals::Column::PayloadHash.eq(payload_hash))
        .filter(signals::Column::DedupSlot.is_in([slot - 1, slot]))
        .filter(signals::Column::ReceivedAt.gte(since))
        .order_by_desc(signals::Column::Id)
        .one(db)
        .await
}

/// Links a signal to the message that delivers it.
pub async fn set_message(
    db: &impl ConnectionTrait,
    id: &str,
    message_id: &MessageId,
) -> Result<(), DbErr> {
    signals::Entity::update_many()
        .col_expr(signals::Column::MessageId, Expr::value(message_id.clone()))
        .filter(signals::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// One signal.
pub async fn find(db: &impl ConnectionTrait, id: &str) -> Result<Option<SignalRow>, DbErr> {
    signals::Entity::find_by_id(id.to_owned()).one(db).await
}

/// Saves a changed signal.
pub async fn update(
    db: &impl ConnectionTrait,
    row: signals::ActiveModel,
) -> Result<SignalRow, DbErr> {
    row.update(db).await
}

/// What a signal list keeps.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub ticker: Option<String>,
    pub signal_type: Option<String>,
    pub indicator: Option<String>,
    pub result: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Only signals older than this id (the previous page's last).
    pub before: Option<String>,
}

/// The owner's signals matching `filter`, newest first.
pub async fn list(
    db: &impl ConnectionTrait,
    owner_id: &UserId,
    filter: &Filter,
    limit: u64,
) -> Result<Vec<SignalRow>, DbErr> {
    let mut q = signals::Entity::find().filter(signals::Column::OwnerId.eq(owner_id));
    if let Some(t) = &filter.ticker {
        // `BTCUSDT` finds `BINANCE:BTCUSDT` too.
        q = q.filter(
            Condition::any()
                .add(signals::Column::Ticker.eq(t.as_str()))
                .add(signals::Column::Symbol.eq(t.as_str())),
        );
    }
    if let Some(t) = &filter.signal_type {
        q = q.filter(signals::Column::SignalType.eq(t.as_str()));
    }
    if let Some(i) = &filter.indicator {
        q = q.filter(signals::Column::Indicator.eq(i.as_str()));
    }
    if let Some(r) = &filter.result {
        q = q.filter(signals::Column::Result.eq(r.as_str()));
    }
    if let Some(from) = filter.from {
        q = q.filter(signals::Column::ReceivedAt.gte(from));
    }
    if let Some(to) = filter.to {
        q = q.filter(signals::Column::ReceivedAt.lt(to));
    }
    if let Some(before) = &filter.before {
        q = q.filter(signals::Column::Id.lt(before.as_str()));
    }
    q.order_by_desc(signals::Column::Id)
        .limit(limit)
        .all(db)
        .await
}

/// The seed's stats of one owner.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stats {
    pub total: i64,
    pub since: i64,
    pub screenshots_pending: i64,
    pub wins: i64,
    pub losses: i64,
}

/// Counts the owner's signals in one pass: all, since `since`, snapshots waiting, wins and
/// losses.
pub async fn stats(
    db: &impl ConnectionTrait,
    owner_id: &UserId,
    since: DateTime<Utc>,
) -> Result<Stats, DbErr> {
    use sea_orm::sea_query::{Func, SimpleExpr};
    let tally = |when: SimpleExpr| -> SimpleExpr {
        let counted: SimpleExpr = Expr::case(when, 1).finally(0).into();
        Func::sum(counted).into()
    };
    // COUNT, then four SUMs (NULL over no rows).
    type Tallies = (i64, Option<i64>, Option<i64>, Option<i64>, Option<i64>);
    let row: Option<Tallies> = signals::Entity::find()
        .select_only()
        .column_as(signals::Column::Id.count(), "total")
        .column_as(tally(signals::Column::ReceivedAt.gte(since)), "since")
        .column_as(
            tally(signals::Column::ScreenshotStatus.is_in(["pending", "processing"])),
            "pending",
        )
        .column_as(tally(signals::Column::Result.eq("win")), "wins")
        .column_as(tally(signals::Column::Result.eq("loss")), "losses")
        .filter(signals::Column::OwnerId.eq(owner_id))
        .into_tuple()
        .one(db)
        .await?;
    let (total, since, pending, wins, losses) = row.unwrap_or_default();
    Ok(Stats {
        total,
        since: since.unwrap_or(0),
        screenshots_pending: pending.unwrap_or(0),
        wins: wins.unwrap_or(0),
        losses: losses.unwrap_or(0),
    })
}

/// Snapshots waiting, by plan priority: `(priority, count)`.
pub async fn snapshot_backlog(db: &impl ConnectionTrait) -> Result<Vec<(i16, i64)>, DbErr> {
    signals::Entity::find()
        .select_only()
        .column(signals::Column::Priority)
        .column_as(signals::Column::Id.count(), "n")
        .filter(signals::Column::ScreenshotStatus.eq("pending"))
        .group_by(signals::Column::Priority)
        .into_tuple::<(i16, i64)>()
        .all(db)
        .await
}
