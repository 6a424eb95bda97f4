//! Dashboard rollups: per owner and day, per owner and month, per contact and month.
//!
//! The transaction that decides a message's outcome adds one row to `stats_deltas` (no shared
//! row, so concurrent sends of one owner never wait for each other's commit); [`fold`] adds the
//! deltas to the rollups and deletes them in one transaction, about once a second
//! ([`fold_periodically`]) and before every dashboard read, so reads see every recorded outcome
//! and the rollups never drift from the ledger (`rebuild` recomputes them from it when asked).
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{
    ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr, FromQueryResult, TransactionTrait,
};

use super::repo::MessageRow;
use crate::domain::UserId;

/// Makes one replica fold (or rebuild) at a time on PostgreSQL. Only folds and rebuilds write
/// `daily_stats`, so the lock stops nothing else; unlike an advisory lock taken with a `SELECT`,
/// `LOCK TABLE` does not start a repeatable-read transaction's snapshot.
const FOLD_LOCK_SQL: &str = "LOCK TABLE daily_stats IN EXCLUSIVE MODE";
/// One fold in this process at a time (SQLite has no advisory locks, and one process).
static FOLDING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Adds `sent` and `errors` (either may be negative: a `failed` webhook after a send) to the
/// rollups of `msg`'s owner and contact for the day and month of `at`, in `db`'s transaction.
pub async fn bump<C: ConnectionTrait>(
    db: &C,
    msg: &MessageRow,
    at: DateTime<Utc>,
    sent: i64,
    errors: i64,
) -> Result<(), DbErr> {
    let day = at.format("%Y-%m-%d").to_string();
    let contact: Option<String> = msg.contact_id.as_ref().map(ToString::to_string);
    db.execute_raw(crate::db::statement(
        db.get_database_backend(),
        "INSERT INTO stats_deltas (owner_id, contact_id, day, sent, errors) VALUES (?, ?, ?, ?, ?)",
        vec![
            msg.owner_id.to_string().into(),
            contact.into(),
            day.into(),
            sent.into(),
            errors.into(),
        ],
    ))
    .await?;
    Ok(())
}

#[derive(FromQueryResult)]
struct Last {
    last: Option<i64>,
}

/// The newest delta's id (`NULL`: none to fold).
const LAST_DELTA_SQL: &str = "SELECT MAX(id) AS last FROM stats_deltas";

/// `now` in SQL, stored the way each backend stores timestamps.
fn now_sql(backend: DatabaseBackend) -> &'static str {
    match backend {
        DatabaseBackend::Postgres => "now()",
        _ => "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
    }
}

/// Adds every pending delta to the rollups and deletes it, in one transaction; returns how
/// many deltas it folded. Safe to run from every replica at once.
pub async fn fold(db: &DatabaseConnection) -> Result<u64, DbErr> {
    let _one = FOLDING.lock().await;
    let backend = db.get_database_backend();
    let sql = |sql: &str, values: Vec<sea_orm::Value>| crate::db::statement(backend, sql, values);
    // Nothing to fold (an idle server, a dashboard read right after the last fold): a plain
    // read, so no write transaction (SQLite's one write lock) is taken for nothing.
    let pending = Last::find_by_statement(sql(LAST_DELTA_SQL, vec![]))
        .one(db)
        .await?
        .and_then(|l| l.last);
    if pending.is_none() {
        return Ok(0);
    }
    let txn = db.begin().await?;
    if backend == DatabaseBackend::Postgres {
        // Waits for another replica's fold; the statements below then see what it deleted.
        txn.execute_unprepared(FOLD_LOCK_SQL).await?;
    } else {
        // A write first, so SQLite takes the write lock (waiting out the busy timeout) now: a
        // transaction that read first cannot write once another connection has committed.
        txn.execute_unprepared("DELETE FROM stats_deltas WHERE id < 0")
            .await?;
    }
    let last = Last::find_by_statement(sql(LAST_DELTA_SQL, vec![]))
        .one(&txn)
        .await?
        .and_then(|l| l.last);
    let Some(last) = last else {
        txn.commit().await?;
        return Ok(0);
    };
    let now = now_sql(backend);
    let add = |table: &str| {
        format!("sent = {table}.sent + excluded.sent, errors = {table}.errors + excluded.errors")
    };
    for statement in [
        format!(
            "INSERT INTO daily_stats (owner_id, day, sent, errors) \
             SELECT owner_id, day, SUM(sent), SUM(errors) FROM stats_deltas WHERE id <= ? \
             GROUP BY owner_id, day ON CONFLICT (owner_id, day) DO UPDATE SET {}",
            add("daily_stats")
        ),
        format!(
            "INSERT INTO monthly_stats (owner_id, month, sent, errors, updated_at) \
             SELECT owner_id, substr(day, 1, 7), SUM(sent), SUM(errors), {now} FROM stats_deltas \
             WHERE id <= ? GROUP BY owner_id, substr(day, 1, 7) \
             ON CONFLICT (owner_id, month) DO UPDATE SET {}, updated_at = excluded.updated_at",
            add("monthly_stats")
        ),
        format!(
            "INSERT INTO contact_stats (contact_id, month, owner_id, sent, errors, updated_at) \
             SELECT contact_id, substr(day, 1, 7), owner_id, SUM(sent), SUM(errors), {now} \
             FROM stats_deltas WHERE id <= ? AND contact_id IS NOT NULL \
             GROUP BY contact_id, substr(day, 1, 7), owner_id \
             ON CONFLICT (contact_id, month) DO UPDATE SET {}, updated_at = excluded.updated_at",
            add("contact_stats")
        ),
    ] {
        txn.execute_raw(sql(&statement, vec![last.into()])).await?;
    }
    let folded = txn
        .execute_raw(sql(
            "DELETE FROM stats_deltas WHERE id <= ?",
            vec![last.into()],
        ))
        .await?
        .rows_affected();
    txn.commit().await?;
    Ok(folded)
}

/// Runs [`fold`] every second (the dashboard also folds before it reads).
pub async fn fold_periodically(db: DatabaseConnection) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Err(e) = fold(&db).await {
            tracing::warn!(error = %e, "could not fold the dashboard counters; trying again in a second");
        }
    }
}

/// Recomputes an owner's rollups from the ledger (the seed's `DELETE /cache/user`); returns
/// how many rollup rows it replaced.
pub async fn rebuild(db: &DatabaseConnection, owner_id: &UserId) -> Result<u64, DbErr> {
    let _one = FOLDING.lock().await;
    let backend = db.get_database_backend();
    // One snapshot for the whole rebuild: the owner's pending deltas it deletes are exactly the
    // ones whose outcomes the recount below sees in the ledger; later ones are folded later.
    let txn = if backend == DatabaseBackend::Postgres {
        let txn = db
            .begin_with_config(Some(sea_orm::IsolationLevel::RepeatableRead), None)
            .await?;
        // Before the first read, so the snapshot comes after any fold in progress.
        txn.execute_unprepared(FOLD_LOCK_SQL).await?;
        txn
    } else {
        db.begin().await?
    };
    let db = &txn;
    db.execute_raw(crate::db::statement(
        backend,
        "DELETE FROM stats_deltas WHERE owner_id = ?",
        vec![owner_id.into()],
    ))
    .await?;
    let mut removed = 0;
    for table in ["daily_stats", "monthly_stats", "contact_stats"] {
        let delete = format!("DELETE FROM {table} WHERE owner_id = ?");
        removed += db
            .execute_raw(crate::db::statement(
                backend,
                &delete,
                vec![owner_id.into()],
            ))
            .await?
            .rows_affected();
    }
    // Day and month keys from sent_at (or updated_at for failures), in SQL on both backends.
    let (day, month) = match backend {
        sea_orm::DatabaseBackend::Postgres => (
            "to_char(COALESCE(sent_at, updated_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
            "to_char(COALESCE(sent_at, updated_at) AT TIME ZONE 'UTC', 'YYYY-MM')",
        ),
        _ => (
            // Stored as ISO 8601 text in UTC: the key is a prefix.
            "substr(COALESCE(sent_at, updated_at), 1, 10)",
            "substr(COALESCE(sent_at, updated_at), 1, 7)",
        ),
    };
    let sent = "SUM(CASE WHEN status = 'sent' THEN 1 ELSE 0 END)";
    let errors = "SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END)";
    let done = "status IN ('sent', 'failed')";
    let now = now_sql(backend);
    for sql in [
        format!(
            "INSERT INTO daily_stats (owner_id, day, sent, errors) SELECT owner_id, {day}, {sent}, {errors} \
             FROM messages WHERE owner_id = ? AND {done} GROUP BY owner_id, {day}"
        ),
        format!(
            "INSERT INTO monthly_stats (owner_id, month, sent, errors, updated_at) SELECT owner_id, {month}, \
             {sent}, {errors}, {now} FROM messages WHERE owner_id = ? AND {done} GROUP BY owner_id, {month}"
        ),
        format!(
            "INSERT INTO contact_stats (contact_id, month, owner_id, sent, errors, updated_at) SELECT contact_id, \
             {month}, owner_id, {sent}, {errors}, {now} FROM messages WHERE owner_id = ? AND {done} \
             AND contact_id IS NOT NULL GROUP BY contact_id, owner_id, {month}"
        ),
    ] {
        db.execute_raw(crate::db::statement(backend, &sql, vec![owner_id.into()]))
            .await?;
    }
    txn.commit().await?;
    Ok(removed)
}
