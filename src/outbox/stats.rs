//! Dashboard rollups: per owner and day, per owner and month, per contact and month. Updated in
//! the transaction that decides a message's outcome, so they never drift from the ledger
//! (and `rebuild` recomputes them from it when asked).
use chrono::{DateTime, Utc};
use sea_orm::{
    ConnectionTrait, DbErr,
    sea_query::{Alias, Expr, OnConflict, Query},
};

use super::repo::MessageRow;
use crate::domain::UserId;

/// `keys` are the table's primary key (the conflict target); `extra` are other columns set on
/// insert only.
fn upsert(
    table: &str,
    keys: &[(&str, String)],
    extra: &[(&str, String)],
    sent: i64,
    errors: i64,
    with_updated_at: bool,
) -> sea_orm::sea_query::InsertStatement {
    let t = Alias::new(table);
    let all = || keys.iter().chain(extra);
    let mut columns: Vec<Alias> = all().map(|(k, _)| Alias::new(*k)).collect();
    let mut values: Vec<Expr> = all().map(|(_, v)| Expr::val(v.clone())).collect();
    columns.extend([Alias::new("sent"), Alias::new("errors")]);
    values.extend([Expr::val(sent), Expr::val(errors)]);
    let mut on_conflict = OnConflict::columns(keys.iter().map(|(k, _)| Alias::new(*k)));
    on_conflict
        .value(
            Alias::new("sent"),
            Expr::cust(format!("{table}.sent + excluded.sent")),
        )
        .value(
            Alias::new("errors"),
            Expr::cust(format!("{table}.errors + excluded.errors")),
        );
    if with_updated_at {
        columns.push(Alias::new("updated_at"));
        values.push(Expr::val(Utc::now()));
        on_conflict.value(Alias::new("updated_at"), Expr::cust("excluded.updated_at"));
    }
    Query::insert()
        .into_table(t)
        .columns(columns)
        .values_panic(values)
        .on_conflict(on_conflict)
        .to_owned()
}

/// Adds `sent` and `errors` (either may be negative: a `failed` webhook after a send) to the
/// rollups of `msg`'s owner and contact for the day and month of `at`.
pub async fn bump<C: ConnectionTrait>(
    db: &C,
    msg: &MessageRow,
    at: DateTime<Utc>,
    sent: i64,
    errors: i64,
) -> Result<(), DbErr> {
    let day = at.format("%Y-%m-%d").to_string();
    let month = at.format("%Y-%m").to_string();
    let owner = msg.owner_id.clone();
    let mut statements = vec![
        upsert(
            "daily_stats",
            &[("owner_id", owner.to_string()), ("day", day)],
            &[],
            sent,
            errors,
            false,
        ),
        upsert(
            "monthly_stats",
            &[("owner_id", owner.to_string()), ("month", month.clone())],
            &[],
            sent,
            errors,
            true,
        ),
    ];
    if let Some(contact) = &msg.contact_id {
        statements.push(upsert(
            "contact_stats",
            &[("contact_id", contact.to_string()), ("month", month)],
            &[("owner_id", owner.to_string())],
            sent,
            errors,
            true,
        ));
    }
    for stmt in statements {
        db.execute(&stmt).await?;
    }
    Ok(())
}

/// Recomputes an owner's rollups from the ledger (the seed's `DELETE /cache/user`); returns
/// how many rollup rows it replaced.
pub async fn rebuild<C: ConnectionTrait>(db: &C, owner_id: &UserId) -> Result<u64, DbErr> {
    let backend = db.get_database_backend();
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
    let now = match backend {
        sea_orm::DatabaseBackend::Postgres => "now()",
        _ => "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
    };
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
    Ok(removed)
}
