//! Contacts, imports and import errors in the database.
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter,
    sea_query::{Expr, ExprTrait, OnConflict, Query},
    sqlx::{self, Arguments, sqlite::SqliteArguments},
};

use super::csv_reader::{ContactRow, RowError};
use crate::entities::{contact_import_errors, contact_imports, contacts};

/// Rows per statement: 11 parameters each stays under SQLite's 32,766.
pub const BATCH_ROWS: usize = 1000;

/// Inserts or updates contacts by (owner, phone). A value the row does not give keeps the stored
/// one, and an opted-out contact stays opted out.
pub async fn upsert(
    db: &DatabaseConnection,
    owner_id: &str,
    rows: &[ContactRow],
    source: &str,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let prepared = UpsertBuilder::new(db.get_database_backend(), owner_id, source, now)?
        .prepare(rows.to_vec())?;
    execute_upsert(db, prepared).await
}

/// An upsert built and ready to run. Building it (a thousand rows' values for SQLite, column
/// arrays for PostgreSQL) is a good part of the cost of a batch, so an import builds batch k+1 on
/// its reading thread while batch k is being written.
#[derive(Debug)]
pub struct PreparedUpsert(Prepared);

#[derive(Debug)]
enum Prepared {
    Empty,
    Sqlite(SqliteBatch),
    Unnest(Box<UnnestArgs>),
}

/// SQLite's upsert: the rows' values already bound in sqlx's own form, so the writer only hands
/// them to the connection (through sea-query they were built as `Value`s, then copied into
/// sqlx's arguments on the writer: a fifth of an import's CPU). What all rows share is written
/// into the statement (see [`UpsertBuilder`]).
#[derive(Debug)]
struct SqliteBatch {
    sql: Arc<str>,
    /// Full batches share one statement text, prepared once per connection; the last, shorter
    /// batch of each file is not kept in the connection's statement cache.
    full: bool,
    args: SqliteArguments,
}

/// The upsert's conflict clause, shared by both databases: a value the row does not give keeps
/// the stored one; `opted_out` is never touched.
macro_rules! on_conflict_keep {
    () => {
        " ON CONFLICT (owner_id, phone) DO UPDATE SET \
          name = COALESCE(excluded.name, contacts.name), \
          noun = COALESCE(excluded.noun, contacts.noun), \
          group_name = COALESCE(excluded.group_name, contacts.group_name), \
          telegram_chat_id = COALESCE(excluded.telegram_chat_id, contacts.telegram_chat_id), \
          attributes = COALESCE(excluded.attributes, contacts.attributes), \
          source = excluded.source, updated_at = excluded.updated_at"
    };
}

/// Values bound per row of SQLite's upsert; the owner, `opted_out`, the source and the times are
/// in the statement's text.
const SQLITE_COLUMNS: usize = 7;

/// SQLite's upsert of `rows` rows, with plain `?` placeholders (sqlx looks up a numbered
/// parameter's name by walking a list, which made 7,000 of them ten times slower) and `shared`,
/// the quoted owner, source and time, written out in every row.
fn sqlite_upsert_sql(rows: usize, shared: &SqliteShared) -> Arc<str> {
    let SqliteShared { owner, source, now } = shared;
    let row = format!("(?,{owner},?,?,?,?,?,?,0,{source},{now},{now})");
    format!(
        "INSERT INTO contacts (id, owner_id, phone, name, noun, group_name, telegram_chat_id, \
         attributes, opted_out, source, created_at, updated_at) VALUES {}{}",
        vec![row; rows].join(","),
        on_conflict_keep!()
    )
    .into()
}

/// What every row of one SQLite upsert shares, as SQL string literals.
#[derive(Debug)]
pub struct SqliteShared {
    owner: String,
    source: String,
    now: String,
}

/// `value` as an SQLite string literal.
fn sqlite_literal(value: &str) -> Result<String, DbErr> {
    if value.contains('\0') {
        return Err(DbErr::Custom("a NUL character cannot be stored".into()));
    }
    Ok(format!("'{}'", value.replace('\'', "''")))
}

/// PostgreSQL's upsert as column arrays.
#[derive(Debug)]
struct UnnestArgs {
    owner_id: String,
    source: String,
    now: DateTime<Utc>,
    ids: Vec<String>,
    phones: Vec<String>,
    names: Vec<Option<String>>,
    nouns: Vec<Option<String>>,
    groups: Vec<Option<String>>,
    chats: Vec<Option<String>>,
    attributes: Vec<Option<String>>,
}

fn attributes_json(row: &ContactRow) -> Option<String> {
    (!row.attributes.is_empty()).then(|| serde_json::to_string(&row.attributes).unwrap_or_default())
}

/// Builds the upserts of one owner's rows from one source at one time (an import's batches).
///
/// On SQLite the owner, the source and the time are written into the statement instead of being
/// bound in every row: 7 values per row instead of 12, each of which SQLite copies on binding.
/// That made the writer, an import's slower stage, about a tenth faster. Full batches share one
/// statement text, which the connection keeps prepared. An import's rows all get the time it
/// started.
#[derive(Debug)]
pub enum UpsertBuilder {
    Sqlite {
        shared: SqliteShared,
        /// The statement of a full batch, built on first use.
        full_batch: Option<Arc<str>>,
    },
    Postgres {
        owner_id: String,
        source: String,
        now: DateTime<Utc>,
    },
}

impl UpsertBuilder {
    pub fn new(
        backend: DatabaseBackend,
        owner_id: &str,
        source: &str,
        now: DateTime<Utc>,
    ) -> Result<Self, DbErr> {
        Ok(match backend {
            DatabaseBackend::Postgres => Self::Postgres {
                owner_id: owner_id.to_owned(),
                source: source.to_owned(),
                now,
            },
            _ => Self::Sqlite {
                shared: SqliteShared {
                    owner: sqlite_literal(owner_id)?,
                    source: sqlite_literal(source)?,
                    // What sqlx (so sea-orm) stores for a `DateTime<Utc>` on SQLite.
                    now: sqlite_literal(&now.to_rfc3339_opts(SecondsFormat::AutoSi, false))?,
                },
                full_batch: None,
            },
        })
    }

    /// The upsert of `rows` (at most [`BATCH_ROWS`]); no I/O.
    pub fn prepare(&mut self, rows: Vec<ContactRow>) -> Result<PreparedUpsert, DbErr> {
        if rows.is_empty() {
            return Ok(PreparedUpsert(Prepared::Empty));
        }
        let (shared, full_batch) = match self {
            Self::Sqlite { shared, full_batch } => (shared, full_batch),
            Self::Postgres {
                owner_id,
                source,
                now,
            } => return Ok(prepare_unnest(owner_id, source, *now, rows)),
        };
        let n = rows.len();
        let mut args = SqliteArguments::default();
        args.reserve(n * SQLITE_COLUMNS, 0);
        let mut bind = |row: ContactRow| -> Result<(), sqlx::error::BoxDynError> {
            let attributes = attributes_json(&row);
            args.add(uuid::Uuid::now_v7().to_string())?;
            args.add(row.phone)?;
            args.add(row.name)?;
            args.add(row.noun)?;
            args.add(row.group)?;
            args.add(row.telegram_chat_id)?;
            args.add(attributes)
        };
        for row in rows {
            bind(row).map_err(|e| DbErr::Custom(format!("cannot bind a contact: {e}")))?;
        }
        let full = n == BATCH_ROWS;
        let sql = if full {
            Arc::clone(full_batch.get_or_insert_with(|| sqlite_upsert_sql(BATCH_ROWS, shared)))
        } else {
            sqlite_upsert_sql(n, shared)
        };
        Ok(PreparedUpsert(Prepared::Sqlite(SqliteBatch {
            sql,
            full,
            args,
        })))
    }
}

/// PostgreSQL's upsert of `rows` as column arrays.
fn prepare_unnest(
    owner_id: &str,
    source: &str,
    now: DateTime<Utc>,
    rows: Vec<ContactRow>,
) -> PreparedUpsert {
    let n = rows.len();
    let mut args = UnnestArgs {
        owner_id: owner_id.to_owned(),
        source: source.to_owned(),
        now,
        ids: Vec::with_capacity(n),
        phones: Vec::with_capacity(n),
        names: Vec::with_capacity(n),
        nouns: Vec::with_capacity(n),
        groups: Vec::with_capacity(n),
        chats: Vec::with_capacity(n),
        attributes: Vec::with_capacity(n),
    };
    for row in rows {
        args.ids.push(uuid::Uuid::now_v7().to_string());
        args.attributes.push(attributes_json(&row));
        args.phones.push(row.phone);
        args.names.push(row.name);
        args.nouns.push(row.noun);
        args.groups.push(row.group);
        args.chats.push(row.telegram_chat_id);
    }
    PreparedUpsert(Prepared::Unnest(Box::new(args)))
}

/// Runs an upsert built by [`UpsertBuilder::prepare`].
pub async fn execute_upsert(db: &DatabaseConnection, upsert: PreparedUpsert) -> Result<(), DbErr> {
    match upsert.0 {
        Prepared::Empty => Ok(()),
        Prepared::Sqlite(batch) => sqlx::query_with(sqlx::AssertSqlSafe(batch.sql), batch.args)
            .persistent(batch.full)
            .execute(db.get_sqlite_connection_pool())
            .await
            .map(|_| ())
            .map_err(|e| DbErr::Custom(e.to_string())),
        Prepared::Unnest(args) => upsert_unnest(db, *args).await,
    }
}

/// PostgreSQL: the batch as one `INSERT … SELECT FROM UNNEST` of column arrays. The statement
/// text never changes, so it is prepared once per connection instead of parsing a statement with
/// thousands of parameters for every batch (the event writer does the same).
async fn upsert_unnest(db: &DatabaseConnection, args: UnnestArgs) -> Result<(), DbErr> {
    const SQL: &str = concat!(
        "INSERT INTO contacts \
         (id, owner_id, phone, name, noun, group_name, telegram_chat_id, attributes, opted_out, \
          source, created_at, updated_at) \
         SELECT u.id, $2, u.phone, u.name, u.noun, u.grp, u.tg, u.attrs, false, $3, $4, $4 \
         FROM UNNEST($1::varchar[], $5::varchar[], $6::varchar[], $7::varchar[], $8::varchar[], \
                     $9::varchar[], $10::text[]) AS u(id, phone, name, noun, grp, tg, attrs)",
        on_conflict_keep!()
    );
    sqlx::query(SQL)
        .bind(args.ids)
        .bind(args.owner_id)
        .bind(args.source)
        .bind(args.now)
        .bind(args.phones)
        .bind(args.names)
        .bind(args.nouns)
        .bind(args.groups)
        .bind(args.chats)
        .bind(args.attributes)
        .execute(db.get_postgres_connection_pool())
        .await
        .map(|_| ())
        .map_err(|e| DbErr::Custom(e.to_string()))
}

/// Writes one batch of an import: its upsert, its refused rows and the import's counters.
pub async fn write_batch(
    db: &DatabaseConnection,
    import_id: &str,
    upsert: PreparedUpsert,
    errors: &[(u64, RowError)],
    imported: u64,
) -> Result<(), DbErr> {
    let failed = errors.len() as u64;
    execute_upsert(db, upsert).await?;
    insert_errors(db, import_id, errors).await?;
    add_progress(db, import_id, imported + failed, imported, failed).await
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

/// A message from `phone` arrived at `at`: it opens the 24 h service window, and with `opt_out`
/// the contact asked to receive nothing more. Returns whether the owner has such a contact.
pub async fn record_inbound(
    db: &DatabaseConnection,
    owner_id: &str,
    phone: &str,
    at: DateTime<Utc>,
    opt_out: bool,
) -> Result<bool, DbErr> {
    let mut update = contacts::Entity::update_many()
        .col_expr(contacts::Column::LastInboundAt, Expr::value(at))
        .col_expr(contacts::Column::UpdatedAt, Expr::value(Utc::now()));
    if opt_out {
        update = update
            .col_expr(contacts::Column::OptedOut, Expr::value(true))
            .col_expr(contacts::Column::OptedOutAt, Expr::value(at));
    }
    let res = update
        .filter(contacts::Column::OwnerId.eq(owner_id))
        .filter(contacts::Column::Phone.eq(phone))
        .exec(db)
        .await?;
    Ok(res.rows_affected > 0)
}

/// Whether the contact asked to receive nothing more (a deleted contact counts as opted out).
pub async fn is_opted_out(db: &DatabaseConnection, contact_id: &str) -> Result<bool, DbErr> {
    Ok(contacts::Entity::find_by_id(contact_id.to_owned())
        .one(db)
        .await?
        .is_none_or(|c| c.opted_out))
}

#[cfg(test)]
mod tests {
    use sea_orm::QueryOrder;

    use super::*;

    /// The owner, source and time are written into SQLite's statement: quotes in them must
    /// neither break it nor change what is stored.
    #[tokio::test]
    async fn shared_values_with_quotes_are_stored_as_given() {
        let dir = tempfile::tempdir().expect("temp dir");
        let settings = crate::config::Settings {
            data_dir: dir.path().to_path_buf(),
            ..crate::config::Settings::default()
        };
        let (db, _queue) = crate::db::connect(&settings).await.expect("database");
        let row = |phone: &str| ContactRow {
            phone: phone.into(),
            name: Some("O'Brien".into()),
            noun: None,
            group: None,
            telegram_chat_id: None,
            attributes: Default::default(),
        };
        let owner = "owner'); DROP TABLE contacts; --";
        let now = Utc::now();
        let mut upserts = UpsertBuilder::new(db.get_database_backend(), owner, "import:'x'", now)
            .expect("builder");
        for rows in [
            vec![row("+34600000001"), row("+34600000002")],
            vec![row("+34600000001")],
        ] {
            let upsert = upserts.prepare(rows).expect("prepare");
            execute_upsert(&db, upsert).await.expect("upsert");
        }
        let stored = contacts::Entity::find()
            .order_by_asc(contacts::Column::Phone)
            .all(&db)
            .await
            .expect("contacts");
        assert_eq!(stored.len(), 2);
        for contact in &stored {
            assert_eq!(contact.owner_id, owner);
            assert_eq!(contact.source.as_deref(), Some("import:'x'"));
            assert_eq!(contact.name.as_deref(), Some("O'Brien"));
            assert_eq!(contact.created_at, now);
        }
        assert!(UpsertBuilder::new(db.get_database_backend(), "a\0b", "s", now).is_err());
    }
}
