//! Contacts, imports and import errors in the database.
use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter,
    sea_query::{Expr, ExprTrait, OnConflict, Query},
};

use super::csv_reader::{ContactRow, RowError};
use crate::entities::{contact_import_errors, contact_imports, contacts};

/// Rows per statement: 11 parameters each stays under SQLite's 32,766.
pub const BATCH_ROWS: usize = 1000;

/// Inserts or updates contacts by (owner, phone). A value the row does not give keeps the stored
/// one, and an opted-out contact stays opted out.
pub async fn upsert(
    db: &impl ConnectionTrait,
    owner_id: &str,
    rows: &[ContactRow],
    source: &str,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    if rows.is_empty() {
        return Ok(());
    }
    use contacts::Column as C;
    let mut insert = Query::insert();
    insert.into_table(contacts::Entity).columns([
        C::Id,
        C::OwnerId,
        C::Phone,
        C::Name,
        C::Noun,
        C::GroupName,
        C::TelegramChatId,
        C::Attributes,
        C::OptedOut,
        C::Source,
        C::CreatedAt,
        C::UpdatedAt,
    ]);
    for row in rows {
        let attributes = (!row.attributes.is_empty())
            .then(|| serde_json::to_string(&row.attributes).unwrap_or_default());
        insert
            .values([
                uuid::Uuid::now_v7().to_string().into(),
                owner_id.into(),
                row.phone.clone().into(),
                row.name.clone().into(),
                row.noun.clone().into(),
                row.group.clone().into(),
                row.telegram_chat_id.clone().into(),
                attributes.into(),
                false.into(),
                source.into(),
                now.into(),
                now.into(),
            ])
            .map_err(|e| DbErr::Custom(e.to_string()))?;
    }
    let keep = |col: &str| Expr::cust(format!("COALESCE(excluded.{col}, contacts.{col})"));
    insert.on_conflict(
        OnConflict::columns([C::OwnerId, C::Phone])
            .value(C::Name, keep("name"))
            .value(C::Noun, keep("noun"))
            .value(C::GroupName, keep("group_name"))
            .value(C::TelegramChatId, keep("telegram_chat_id"))
            .value(C::Attributes, keep("attributes"))
            .value(C::Source, Expr::cust("excluded.source"))
            .value(C::UpdatedAt, Expr::cust("excluded.updated_at"))
            .to_owned(),
    );
    db.execute(&insert).await.map(|_| ())
}

/// Records refused rows.
pub async fn insert_errors(
    db: &impl ConnectionTrait,
    import_id: &str,
    errors: &[(u64, RowError)],
) -> Result<(), DbErr> {
    if errors.is_empty() {
        return Ok(());
    }
    use contact_import_errors::Column as C;
    for chunk in errors.chunks(BATCH_ROWS) {
        let mut insert = Query::insert();
        insert.into_table(contact_import_errors::Entity).columns([
            C::ImportId,
            C::RowNumber,
            C::Phone,
            C::Code,
            C::Message,
        ]);
        for (line, e) in chunk {
            insert
                .values([
                    import_id.into(),
                    i64::try_from(*line).unwrap_or(i64::MAX).into(),
                    e.phone.clone().into(),
                    e.code.into(),
                    e.message.clone().into(),
                ])
                .map_err(|e| DbErr::Custom(e.to_string()))?;
        }
        // A resumed import writes its rows' errors again.
        insert.on_conflict(
            OnConflict::columns([C::ImportId, C::RowNumber])
                .do_nothing()
                .to_owned(),
        );
        db.execute(&insert).await?;
    }
    Ok(())
}

/// Adds to an import's counters.
pub async fn add_progress(
    db: &impl ConnectionTrait,
    import_id: &str,
    read: u64,
    imported: u64,
    failed: u64,
) -> Result<(), DbErr> {
    use contact_imports::Column as C;
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    contact_imports::Entity::update_many()
        .col_expr(C::TotalRows, Expr::col(C::TotalRows).add(n(read)))
        .col_expr(C::Imported, Expr::col(C::Imported).add(n(imported)))
        .col_expr(C::Failed, Expr::col(C::Failed).add(n(failed)))
        .filter(C::Id.eq(import_id))
        .exec(db)
        .await
        .map(|_| ())
}

/// Ends an import: `completed`, or `failed` with the reason.
pub async fn finish(
    db: &DatabaseConnection,
    import_id: &str,
    error: Option<String>,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    use contact_imports::Column as C;
    contact_imports::Entity::update_many()
        .col_expr(
            C::Status,
            Expr::value(if error.is_some() {
                "failed"
            } else {
                "completed"
            }),
        )
        .col_expr(C::Error, Expr::value(error))
        .col_expr(C::FinishedAt, Expr::value(now))
        .filter(C::Id.eq(import_id))
        .exec(db)
        .await
        .map(|_| ())
}

/// Starts an import over (after a restart): counters to zero, errors forgotten.
pub async fn reset(db: &DatabaseConnection, import_id: &str) -> Result<(), DbErr> {
    use contact_imports::Column as C;
    contact_import_errors::Entity::delete_many()
        .filter(contact_import_errors::Column::ImportId.eq(import_id))
        .exec(db)
        .await?;
    contact_imports::Entity::update_many()
        .col_expr(C::TotalRows, Expr::value(0i64))
        .col_expr(C::Imported, Expr::value(0i64))
        .col_expr(C::Failed, Expr::value(0i64))
        .filter(C::Id.eq(import_id))
        .exec(db)
        .await
        .map(|_| ())
}
