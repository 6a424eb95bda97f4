//! Named leases in the database: one holder at a time for a cluster-wide duty (polling a bot),
//! taken over when the holder stops renewing it. Works the same on SQLite and PostgreSQL.
use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set,
    sea_query::{Expr, ExprTrait, OnConflict},
};

use crate::entities::leases;

/// Takes or renews lease `name` for `holder` until `until` (give whole seconds: the value is
/// compared again on release, and databases differ in sub-second precision). True when `holder` now holds it:
/// it was free, expired at `now`, or already `holder`'s.
pub async fn acquire(
    db: &impl ConnectionTrait,
    name: &str,
    holder: &str,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let row = leases::ActiveModel {
        name: Set(name.to_owned()),
        holder: Set(holder.to_owned()),
        expires_at: Set(until),
    };
    let on_conflict = OnConflict::column(leases::Column::Name)
        .update_columns([leases::Column::Holder, leases::Column::ExpiresAt])
        .action_and_where(
            Expr::col((leases::Entity, leases::Column::Holder))
                .eq(holder)
                .or(Expr::col((leases::Entity, leases::Column::ExpiresAt)).lt(now)),
        )
        .to_owned();
    let res = leases::Entity::insert(row)
        .on_conflict(on_conflict)
        .exec_without_returning(db)
        .await?;
    Ok(res == 1)
}

/// Lease `name` as it stands: its holder and when its term ends (`None`: nobody took it, or its
/// holder gave it up). A term that ended before now is one nobody renewed: its holder is gone.
pub async fn find(db: &impl ConnectionTrait, name: &str) -> Result<Option<leases::Model>, DbErr> {
    leases::Entity::find_by_id(name.to_owned()).one(db).await
}

/// Gives lease `name` up (clean shutdown) so another node takes over at once, but only if it is
/// still the term `holder` last set (`until`): a newer owner on the same node, which renewed it
/// meanwhile, keeps it.
pub async fn release(
    db: &impl ConnectionTrait,
    name: &str,
    holder: &str,
    until: DateTime<Utc>,
) -> Result<(), DbErr> {
    leases::Entity::delete_many()
        .filter(leases::Column::Name.eq(name))
        .filter(leases::Column::Holder.eq(holder))
        .filter(leases::Column::ExpiresAt.eq(until))
        .exec(db)
        .await?;
    Ok(())
}

/// Gives lease `name` up whatever term `holder` set (the holder is done with the duty, e.g. a
/// campaign that left `running`).
pub async fn release_any(db: &impl ConnectionTrait, name: &str, holder: &str) -> Result<(), DbErr> {
    leases::Entity::delete_many()
        .filter(leases::Column::Name.eq(name))
        .filter(leases::Column::Holder.eq(holder))
        .exec(db)
        .await?;
    Ok(())
}
