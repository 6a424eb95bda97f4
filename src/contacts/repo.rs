//! Contacts, imports and import errors in the database.
use chrono::{DateTime, SecondsFormat, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter,
    sea_query::{Expr, ExprTrait, OnConflict, Query},
    sqlx,
};

use super::csv_reader::{ContactRow, RowError};
use crate::{
    db::SqliteBulk,
    domain::{ContactId, UserId},
    entities::{contact_import_errors, contact_imports, contacts},
};

/// Where an import is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportStatus {
    /// Reading and writing rows (or waiting for its node to restart it).
    Running,
    /// Every row was read.
    Completed,
    /// Stopped by an error (`error` says which).
    Failed,
}

impl ImportStatus {
    /// Stored and shown form.
    pub fn as_str(self) -> &'static str {
        match self {
            ImportStatus::Running => "running",
            ImportStatus::Completed => "completed",
            ImportStatus::Failed => "failed",
        }
    }
}

/// Rows per statement: 7 values bound per row stays under SQLite's 32,766.
pub const BATCH_ROWS: usize = 1000;

/// Inserts or updates contacts by (owner, phone). A value the row does not give keeps the stored
/// one, and an opted-out contact stays opted out.
pub async fn upsert(
    db: &DatabaseConnection,
    owner_id: &UserId,
    rows: &[ContactRow],
    source: &str,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let upsert = Upsert::new(owner_id, source, now);
    let columns = ContactColumns::new(rows.to_vec());
    let Some(path) = SqliteBulk::path(db) else {
        return upsert_postgres(db, &upsert, columns).await;
    };
    tokio::task::spawn_blocking(move || {
        let bulk = SqliteBulk::open(&path).map_err(|e| DbErr::Custom(format!("{e:#}")))?;
        let mut sqlite = SqliteUpsert::new(bulk.connection(), &upsert)?;
        bulk.write(|_| sqlite.run(columns))
            .map_err(crate::db::sqlite_err)
    })
    .await
    .map_err(|e| DbErr::Custom(e.to_string()))?
}

/// What every row of one owner's upserts shares: the owner, where they came from, and when
/// (all rows of an import get the time it started).
#[derive(Debug, Clone)]
pub struct Upsert {
    pub owner_id: UserId,
    pub source: String,
    pub now: DateTime<Utc>,
}

impl Upsert {
    pub fn new(owner_id: &UserId, source: &str, now: DateTime<Utc>) -> Self {
        Self {
            owner_id: owner_id.clone(),
            source: source.to_owned(),
            now,
        }
    }
}

/// Up to [`BATCH_ROWS`] contacts as columns, with their new ids and attributes as JSON: the part
/// of an upsert that needs no database, built on an import's reading thread while the previous
/// batch is written. PostgreSQL binds each column as one array; SQLite binds the values row by
/// row.
#[derive(Debug, Default)]
pub struct ContactColumns {
    ids: Vec<String>,
    phones: Vec<String>,
    names: Vec<Option<String>>,
    nouns: Vec<Option<String>>,
    groups: Vec<Option<String>>,
    chats: Vec<Option<String>>,
    attributes: Vec<Option<String>>,
}

impl ContactColumns {
    pub fn new(rows: Vec<ContactRow>) -> Self {
        let n = rows.len();
        let mut columns = Self {
            ids: Vec::with_capacity(n),
            phones: Vec::with_capacity(n),
            names: Vec::with_capacity(n),
            nouns: Vec::with_capacity(n),
            groups: Vec::with_capacity(n),
            chats: Vec::with_capacity(n),
            attributes: Vec::with_capacity(n),
        };
        for row in rows {
            columns.ids.push(uuid::Uuid::now_v7().to_string());
            columns.attributes.push(
                (!row.attributes.is_empty())
                    .then(|| serde_json::to_string(&row.attributes).unwrap_or_default()),
            );
            columns.phones.push(row.phone.into_string());
            columns.names.push(row.name);
            columns.nouns.push(row.noun);
            columns.groups.push(row.group);
            columns.chats.push(row.telegram_chat_id);
        }
        columns
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
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

/// PostgreSQL: the batch as one `INSERT … SELECT FROM UNNEST` of column arrays. The statement
/// text never changes, so it is prepared once per connection instead of parsing a statement with
/// thousands of parameters for every batch (the event writer does the same).
pub async fn upsert_postgres(
    db: &DatabaseConnection,
    upsert: &Upsert,
    columns: ContactColumns,
) -> Result<(), DbErr> {
    const SQL: &str = concat!(
        "INSERT INTO contacts \
         (id, owner_id, phone, name, noun, group_name, telegram_chat_id, attributes, opted_out, \
          source, created_at, updated_at) \
         SELECT u.id, $2, u.phone, u.name, u.noun, u.grp, u.tg, u.attrs, false, $3, $4, $4 \
         FROM UNNEST($1::varchar[], $5::varchar[], $6::varchar[], $7::varchar[], $8::varchar[], \
                     $9::varchar[], $10::text[]) AS u(id, phone, name, noun, grp, tg, attrs)",
        on_conflict_keep!()
    );
    if columns.is_empty() {
        return Ok(());
    }
    sqlx::query(SQL)
        .bind(columns.ids)
        .bind(upsert.owner_id.as_str())
        .bind(&upsert.source)
        .bind(upsert.now)
        .bind(columns.phones)
        .bind(columns.names)
        .bind(columns.nouns)
        .bind(columns.groups)
        .bind(columns.chats)
        .bind(columns.attributes)
        .execute(db.get_postgres_connection_pool())
        .await
        .map(|_| ())
        .map_err(|e| DbErr::Custom(e.to_string()))
}

/// Values bound per row of SQLite's upsert; the owner, `opted_out`, the source and the times are
/// in the statement's text.
const SQLITE_COLUMNS: usize = 7;

/// SQLite's upserts of one [`Upsert`] on one connection (a [`SqliteBulk`]'s).
///
/// The owner, the source and the time are written into the statement as literals instead of
/// being bound in every row: 7 values per row instead of 12, each of which SQLite copies on
/// binding. Placeholders are plain `?` (numbered ones made a statement of 7,000 ten times slower
/// under sqlx, which looks up each one's name). Full batches run one statement, prepared on first
/// use and kept: a batch of another size is a statement of its own to parse.
pub struct SqliteUpsert<'c> {
    connection: &'c rusqlite::Connection,
    /// The row of values, with the shared literals in it.
    row: String,
    full_batch: Option<rusqlite::Statement<'c>>,
}

impl<'c> SqliteUpsert<'c> {
    pub fn new(connection: &'c rusqlite::Connection, upsert: &Upsert) -> Result<Self, DbErr> {
        let owner = sqlite_literal(upsert.owner_id.as_str())?;
        let source = sqlite_literal(&upsert.source)?;
        // What sqlx (so sea-orm) stores for a `DateTime<Utc>` on SQLite.
        let now = sqlite_literal(&upsert.now.to_rfc3339_opts(SecondsFormat::AutoSi, false))?;
        Ok(Self {
            connection,
            row: format!("(?,{owner},?,?,?,?,?,?,0,{source},{now},{now})"),
            full_batch: None,
        })
    }

    fn prepare(&self, rows: usize) -> rusqlite::Result<rusqlite::Statement<'c>> {
        self.connection.prepare(&format!(
            "INSERT INTO contacts (id, owner_id, phone, name, noun, group_name, telegram_chat_id, \
             attributes, opted_out, source, created_at, updated_at) VALUES {}{}",
            vec![self.row.as_str(); rows].join(","),
            on_conflict_keep!()
        ))
    }

    /// Upserts `columns` (at most [`BATCH_ROWS`] rows), in the connection's open transaction.
    pub fn run(&mut self, columns: ContactColumns) -> rusqlite::Result<()> {
        let n = columns.len();
        if n == 0 {
            return Ok(());
        }
        let mut other;
        let statement = if n == BATCH_ROWS {
            if self.full_batch.is_none() {
                self.full_batch = Some(self.prepare(BATCH_ROWS)?);
            }
            self.full_batch
                .as_mut()
                .ok_or(rusqlite::Error::InvalidQuery)?
        } else {
            other = self.prepare(n)?;
            &mut other
        };
        let ContactColumns {
            ids,
            phones,
            names,
            nouns,
            groups,
            chats,
            attributes,
        } = &columns;
        for (i, id) in ids.iter().enumerate() {
            let at = i * SQLITE_COLUMNS;
            statement.raw_bind_parameter(at + 1, id)?;
            statement.raw_bind_parameter(at + 2, &phones[i])?;
            statement.raw_bind_parameter(at + 3, &names[i])?;
            statement.raw_bind_parameter(at + 4, &nouns[i])?;
            statement.raw_bind_parameter(at + 5, &groups[i])?;
            statement.raw_bind_parameter(at + 6, &chats[i])?;
            statement.raw_bind_parameter(at + 7, &attributes[i])?;
        }
        statement.raw_execute()?;
        Ok(())
    }
}

/// `value` as an SQLite string literal.
fn sqlite_literal(value: &str) -> Result<String, DbErr> {
    if value.contains('\0') {
        return Err(DbErr::Custom("a NUL character cannot be stored".into()));
    }
    Ok(format!("'{}'", value.replace('\'', "''")))
}

/// Writes one batch of an import on PostgreSQL: its upsert, its refused rows and the import's
/// counters.
pub async fn write_batch(
    db: &DatabaseConnection,
    import_id: &str,
    upsert: &Upsert,
    columns: ContactColumns,
    errors: Vec<(u64, RowError)>,
) -> Result<(), DbErr> {
    let imported = columns.len() as u64;
    let failed = errors.len() as u64;
    upsert_postgres(db, upsert, columns).await?;
    insert_errors(db, import_id, &errors).await?;
    add_progress(db, import_id, imported + failed, imported, failed).await
}

/// Writes one batch of an import on SQLite, in the upsert's connection's open transaction: its
/// upsert, its refused rows and the import's counters.
pub fn write_batch_sqlite(
    upsert: &mut SqliteUpsert<'_>,
    import_id: &str,
    columns: ContactColumns,
    errors: &[(u64, RowError)],
) -> rusqlite::Result<()> {
    let imported = columns.len() as i64;
    let failed = errors.len() as i64;
    upsert.run(columns)?;
    let tx = upsert.connection;
    if !errors.is_empty() {
        // A resumed import writes its rows' errors again.
        let mut insert = tx.prepare_cached(
            "INSERT INTO contact_import_errors (import_id, row_number, phone, code, message) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (import_id, row_number) DO NOTHING",
        )?;
        for (line, e) in errors {
            insert.execute(rusqlite::params![
                import_id,
                i64::try_from(*line).unwrap_or(i64::MAX),
                e.phone,
                e.code,
                e.message
            ])?;
        }
    }
    tx.prepare_cached(
        "UPDATE contact_imports SET total_rows = total_rows + ?, imported = imported + ?, \
         failed = failed + ? WHERE id = ?",
    )?
    .execute(rusqlite::params![
        imported + failed,
        imported,
        failed,
        import_id
    ])?;
    Ok(())
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
            Expr::value(
                if error.is_some() {
                    ImportStatus::Failed
                } else {
                    ImportStatus::Completed
                }
                .as_str(),
            ),
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
    owner_id: &UserId,
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
pub async fn is_opted_out(db: &DatabaseConnection, contact_id: &ContactId) -> Result<bool, DbErr> {
    Ok(contacts::Entity::find_by_id(contact_id.to_owned())
        .one(db)
        .await?
        .is_none_or(|c| c.opted_out))
}

/// The ids of `owner_id`'s contacts with these phones.
pub async fn ids_of_phones(
    db: &DatabaseConnection,
    owner_id: &UserId,
    phones: &[String],
) -> Result<Vec<String>, DbErr> {
    use sea_orm::QuerySelect;
    contacts::Entity::find()
        .select_only()
        .column(contacts::Column::Id)
        .filter(contacts::Column::OwnerId.eq(owner_id))
        .filter(contacts::Column::Phone.is_in(phones.iter().cloned()))
        .into_tuple()
        .all(db)
        .await
}

#[cfg(test)]
mod tests {
    use sea_orm::{PaginatorTrait, QueryOrder};

    use super::*;

    fn row(phone: &str, name: &str) -> ContactRow {
        ContactRow {
            phone: crate::domain::PhoneNumber::parse(
                phone,
                crate::domain::region("ES").expect("ES"),
            )
            .expect("a test phone"),
            name: Some(name.into()),
            noun: None,
            group: None,
            telegram_chat_id: None,
            attributes: Default::default(),
        }
    }

    async fn sqlite() -> (tempfile::TempDir, DatabaseConnection) {
        let dir = tempfile::tempdir().expect("temp dir");
        let settings = crate::config::Settings {
            data_dir: dir.path().to_path_buf(),
            ..crate::config::Settings::default()
        };
        let db = crate::db::connect(&settings).await.expect("database");
        (dir, db)
    }

    /// The owner, source and time are written into SQLite's statement: quotes in them must
    /// neither break it nor change what is stored.
    #[tokio::test]
    async fn shared_values_with_quotes_are_stored_as_given() {
        let (_dir, db) = sqlite().await;
        let owner = &UserId::from("owner'); DROP TABLE contacts; --");
        let now = Utc::now();
        for rows in [
            vec![
                row("+34600000001", "O'Brien"),
                row("+34600000002", "O'Brien"),
            ],
            vec![row("+34600000001", "O'Brien")],
        ] {
            upsert(&db, owner, &rows, "import:'x'", now)
                .await
                .expect("upsert");
        }
        let stored = contacts::Entity::find()
            .order_by_asc(contacts::Column::Phone)
            .all(&db)
            .await
            .expect("contacts");
        assert_eq!(stored.len(), 2);
        for contact in &stored {
            assert_eq!(&contact.owner_id, owner);
            assert_eq!(contact.source.as_deref(), Some("import:'x'"));
            assert_eq!(contact.name.as_deref(), Some("O'Brien"));
            assert_eq!(contact.created_at, now);
        }
        let nul = upsert(
            &db,
            &UserId::from("a\0b"),
            &[row("+34600000003", "A")],
            "s",
            now,
        )
        .await;
        assert!(nul.is_err());
    }

    /// An import's batches on one bulk connection: full batches reuse one prepared statement,
    /// a short one has its own, a second pass updates instead of inserting, and a failed write
    /// leaves nothing behind. The checkpointer runs beside it throughout.
    #[tokio::test]
    async fn bulk_batches_insert_update_and_roll_back() {
        let (_dir, db) = sqlite().await;
        let path = crate::db::SqliteBulk::path(&db).expect("SQLite");
        let phones: Vec<String> = (0..3 * BATCH_ROWS + 5)
            .map(|i| format!("+346{:08}", i))
            .collect();
        let pass = |name: &'static str, fail: bool| {
            let path = path.clone();
            let phones = phones.clone();
            tokio::task::spawn_blocking(move || {
                let bulk = crate::db::SqliteBulk::open(&path).expect("open");
                let mut sqlite = SqliteUpsert::new(
                    bulk.connection(),
                    &Upsert::new(&UserId::from("o"), "s", Utc::now()),
                )
                .expect("upsert");
                for chunk in phones.chunks(BATCH_ROWS) {
                    let rows = chunk.iter().map(|p| row(p, name)).collect();
                    let written = bulk.write(|_| {
                        sqlite.run(ContactColumns::new(rows))?;
                        if fail {
                            return Err(rusqlite::Error::InvalidQuery);
                        }
                        Ok(())
                    });
                    assert_eq!(written.is_err(), fail);
                }
            })
        };
        pass("first", false).await.expect("first pass");
        pass("second", false).await.expect("second pass");
        pass("never stored", true).await.expect("failed pass");
        let count = contacts::Entity::find().count(&db).await.expect("count");
        assert_eq!(count, phones.len() as u64);
        let names: Vec<Option<String>> = contacts::Entity::find()
            .all(&db)
            .await
            .expect("contacts")
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert!(names.iter().all(|n| n.as_deref() == Some("second")));
    }
}

/// A page of the owner's contacts who did not opt out, in id order after `after`: those of
/// `groups` or `ids` (both empty: all of them). Campaign audiences and template checks walk
/// these pages, so an audience of millions is never in memory at once.
pub async fn reachable_page(
    db: &impl ConnectionTrait,
    owner_id: &UserId,
    groups: &[String],
    ids: &[String],
    after: &str,
    limit: u64,
) -> Result<Vec<contacts::Model>, DbErr> {
    use sea_orm::{QueryOrder, QuerySelect, sea_query::Condition};
    let mut q = contacts::Entity::find()
        .filter(contacts::Column::OwnerId.eq(owner_id))
        .filter(contacts::Column::OptedOut.eq(false))
        .filter(contacts::Column::Id.gt(after))
        .order_by_asc(contacts::Column::Id)
        .limit(limit);
    if !groups.is_empty() || !ids.is_empty() {
        let mut any = Condition::any();
        if !groups.is_empty() {
            any = any.add(contacts::Column::GroupName.is_in(groups.to_vec()));
        }
        if !ids.is_empty() {
            any = any.add(contacts::Column::Id.is_in(ids.to_vec()));
        }
        q = q.filter(any);
    }
    q.all(db).await
}

/// One of the owner's contacts.
pub async fn find_owned(
    db: &impl ConnectionTrait,
    owner_id: &UserId,
    id: &ContactId,
) -> Result<Option<contacts::Model>, DbErr> {
    Ok(contacts::Entity::find_by_id(id.to_owned())
        .one(db)
        .await?
        .filter(|c| &c.owner_id == owner_id))
}

/// A stored contact.
pub type StoredContact = contacts::Model;
/// A stored import.
pub type ImportRow = contact_imports::Model;
/// A refused row of an import.
pub type ImportErrorRow = contact_import_errors::Model;

/// The owner's contact with this phone (E.164).
pub async fn find_by_phone(
    db: &impl ConnectionTrait,
    owner_id: &UserId,
    phone: &str,
) -> Result<Option<StoredContact>, DbErr> {
    contacts::Entity::find()
        .filter(contacts::Column::OwnerId.eq(owner_id))
        .filter(contacts::Column::Phone.eq(phone))
        .one(db)
        .await
}

/// One contact, whoever owns it.
pub async fn find(
    db: &impl ConnectionTrait,
    id: &ContactId,
) -> Result<Option<StoredContact>, DbErr> {
    contacts::Entity::find_by_id(id.to_owned()).one(db).await
}

/// A contact's fields as given by the API (`None`: not given).
#[derive(Debug, Default)]
pub struct ContactFields {
    /// E.164.
    pub phone: Option<String>,
    /// `nombre`.
    pub name: Option<String>,
    /// `sustantivo`.
    pub noun: Option<String>,
    /// `grupo`.
    pub group: Option<String>,
    /// Telegram chat.
    pub telegram_chat_id: Option<String>,
    /// Free attributes (`Some(empty)` clears them).
    pub attributes: Option<std::collections::BTreeMap<String, String>>,
    /// `Some(true)` records an opt-out.
    pub opted_out: Option<bool>,
}

fn attributes_json(a: std::collections::BTreeMap<String, String>) -> Option<String> {
    (!a.is_empty()).then(|| serde_json::to_string(&a).unwrap_or_default())
}

/// Stores a new contact (`f.phone` must be set).
pub async fn insert(
    db: &impl ConnectionTrait,
    owner_id: &UserId,
    f: ContactFields,
    source: &str,
    now: DateTime<Utc>,
) -> Result<StoredContact, DbErr> {
    use sea_orm::{ActiveModelTrait, Set};
    let opted_out = f.opted_out.unwrap_or(false);
    contacts::ActiveModel {
        id: Set(ContactId::generate()),
        owner_id: Set(owner_id.clone()),
        phone: Set(f.phone.unwrap_or_default()),
        name: Set(f.name),
        noun: Set(f.noun),
        group_name: Set(f.group),
        telegram_chat_id: Set(f.telegram_chat_id),
        attributes: Set(f.attributes.and_then(attributes_json)),
        opted_out: Set(opted_out),
        opted_out_at: Set(opted_out.then_some(now)),
        source: Set(Some(source.to_owned())),
        created_at: Set(now),
        updated_at: Set(now),
        last_inbound_at: Set(None),
    }
    .insert(db)
    .await
}

/// Writes the fields given; an opt-out is recorded once and never undone here.
pub async fn update(
    db: &impl ConnectionTrait,
    row: StoredContact,
    f: ContactFields,
    now: DateTime<Utc>,
) -> Result<StoredContact, DbErr> {
    use sea_orm::{ActiveModelTrait, IntoActiveModel, Set};
    let was_opted_out = row.opted_out;
    let mut active = row.into_active_model();
    if let Some(phone) = f.phone {
        active.phone = Set(phone);
    }
    if let Some(v) = f.name {
        active.name = Set(Some(v));
    }
    if let Some(v) = f.noun {
        active.noun = Set(Some(v));
    }
    if let Some(v) = f.group {
        active.group_name = Set(Some(v));
    }
    if let Some(v) = f.telegram_chat_id {
        active.telegram_chat_id = Set(Some(v));
    }
    if let Some(a) = f.attributes {
        active.attributes = Set(attributes_json(a));
    }
    if f.opted_out == Some(true) && !was_opted_out {
        active.opted_out = Set(true);
        active.opted_out_at = Set(Some(now));
    }
    active.updated_at = Set(now);
    active.update(db).await
}

/// Deletes a contact.
pub async fn delete(db: &impl ConnectionTrait, id: &ContactId) -> Result<(), DbErr> {
    contacts::Entity::delete_by_id(id.to_owned())
        .exec(db)
        .await
        .map(|_| ())
}

/// Filters of a contact list.
#[derive(Debug, Default)]
pub struct ListFilter {
    /// Only contacts whose name or phone contains this (case-insensitive).
    pub search: Option<String>,
    /// Only this group.
    pub group: Option<String>,
    /// Only opted out (or only not).
    pub opted_out: Option<bool>,
}

/// A page of the owner's contacts in id order.
pub async fn list(
    db: &impl ConnectionTrait,
    owner_id: &UserId,
    filter: ListFilter,
    page: &crate::page::PageRequest,
) -> Result<crate::page::Page<StoredContact>, DbErr> {
    let mut q = contacts::Entity::find().filter(contacts::Column::OwnerId.eq(owner_id));
    if let Some(search) = filter.search {
        use sea_orm::sea_query::{Expr, Func, LikeExpr};
        // `%` and `_` in the text are literal; `!` escapes them on both databases.
        let escaped: String = search
            .to_lowercase()
            .chars()
            .flat_map(|c| match c {
                '%' | '_' | '!' => vec!['!', c],
                c => vec![c],
            })
            .collect();
        let like = |column: contacts::Column| {
            Expr::expr(Func::lower(Expr::col(column)))
                .like(LikeExpr::new(format!("%{escaped}%")).escape('!'))
        };
        let digits: String = search.chars().filter(char::is_ascii_digit).collect();
        let mut any = sea_orm::Condition::any().add(like(contacts::Column::Name));
        if !digits.is_empty() {
            any = any.add(contacts::Column::Phone.contains(digits));
        }
        q = q.filter(any);
    }
    if let Some(group) = filter.group {
        q = q.filter(contacts::Column::GroupName.eq(group));
    }
    if let Some(opted_out) = filter.opted_out {
        q = q.filter(contacts::Column::OptedOut.eq(opted_out));
    }
    crate::page::fetch(
        db,
        q,
        contacts::Column::Id,
        sea_orm::Order::Asc,
        page,
        |c| c.id.to_string(),
    )
    .await
}

/// Records a new import, `running` on `node`.
pub async fn insert_import(
    db: &impl ConnectionTrait,
    id: &str,
    owner_id: &UserId,
    node: &str,
    filename: &str,
    default_region: &str,
    now: DateTime<Utc>,
) -> Result<ImportRow, DbErr> {
    use sea_orm::{ActiveModelTrait, Set};
    contact_imports::ActiveModel {
        id: Set(id.to_owned()),
        owner_id: Set(owner_id.to_owned()),
        node: Set(node.to_owned()),
        filename: Set(filename.to_owned()),
        default_region: Set(default_region.to_owned()),
        status: Set(ImportStatus::Running.as_str().into()),
        total_rows: Set(0),
        imported: Set(0),
        failed: Set(0),
        error: Set(None),
        created_at: Set(now),
        finished_at: Set(None),
    }
    .insert(db)
    .await
}

/// One import, whoever owns it.
pub async fn find_import(db: &impl ConnectionTrait, id: &str) -> Result<Option<ImportRow>, DbErr> {
    contact_imports::Entity::find_by_id(id.to_owned())
        .one(db)
        .await
}

/// The owner's latest imports, newest first.
pub async fn list_imports(
    db: &impl ConnectionTrait,
    owner_id: &UserId,
    page: &crate::page::PageRequest,
) -> Result<crate::page::Page<ImportRow>, DbErr> {
    let q = contact_imports::Entity::find().filter(contact_imports::Column::OwnerId.eq(owner_id));
    crate::page::fetch(
        db,
        q,
        contact_imports::Column::Id,
        sea_orm::Order::Desc,
        page,
        |i| i.id.clone(),
    )
    .await
}

/// This node's imports still `running` (a stop interrupted them).
pub async fn running_imports(
    db: &impl ConnectionTrait,
    node: &str,
) -> Result<Vec<ImportRow>, DbErr> {
    contact_imports::Entity::find()
        .filter(contact_imports::Column::Status.eq(ImportStatus::Running.as_str()))
        .filter(contact_imports::Column::Node.eq(node))
        .all(db)
        .await
}

/// An import's refused rows in file order.
pub async fn import_errors(
    db: &impl ConnectionTrait,
    import_id: &str,
) -> Result<Vec<ImportErrorRow>, DbErr> {
    use sea_orm::QueryOrder;
    contact_import_errors::Entity::find()
        .filter(contact_import_errors::Column::ImportId.eq(import_id))
        .order_by_asc(contact_import_errors::Column::RowNumber)
        .all(db)
        .await
}
