//! Events and alert rules in the database (the batching [`super::EventWriter`] owns the
//! ingestion inserts).
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Set, sea_query::OnConflict,
};

use super::validate::NewEvent;
use crate::domain::UserId;
use crate::entities::{alert_rules, events};

/// A stored event.
pub type EventRow = events::Model;
/// An event ready to insert.
pub type NewEventRow = events::ActiveModel;
/// A stored alert rule.
pub type RuleRow = alert_rules::Model;

/// Rows deleted per statement by the retention job (short transactions, ingestion keeps going).
const RETENTION_CHUNK: u64 = 5_000;

/// The stored form of `owner`'s idempotency `key` (one owner's key never meets another's).
pub fn owned_key(owner: &UserId, key: &str) -> String {
    format!("{owner}/{key}", owner = owner.as_str())
}

/// `owner`'s rows for `events` received at `now`, each with a fresh id; under `key` (one
/// event), or `key#i` (the i-th event of a batch), both as [`owned_key`]s.
pub fn new_rows(
    events: Vec<NewEvent>,
    now: DateTime<Utc>,
    owner: &UserId,
    key: Option<&str>,
) -> (Vec<String>, Vec<NewEventRow>) {
    let many = events.len() > 1;
    let key = key.map(|k| owned_key(owner, k));
    events
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let id = uuid::Uuid::now_v7().to_string();
            let row = events::ActiveModel {
                event_id: Set(id.clone()),
                timestamp: Set(e.timestamp),
                service: Set(e.service),
                message: Set(e.message),
                metadata: Set(e.metadata),
                ingested_at: Set(now),
                idempotency_key: Set(key
                    .as_ref()
                    .map(|k| if many { format!("{k}#{i}") } else { k.clone() })),
                owner_id: Set(Some(owner.clone())),
                ..Default::default()
            };
            (id, row)
        })
        .unzip()
}

/// Inserts the rows whose idempotency key is new; the others are left as they are.
pub async fn insert_new_keys(
    db: &impl ConnectionTrait,
    rows: Vec<NewEventRow>,
) -> Result<(), DbErr> {
    let insert = events::Entity::insert_many(rows)
        .on_conflict(
            OnConflict::column(events::Column::IdempotencyKey)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(db)
        .await;
    match insert {
        Ok(_) | Err(DbErr::RecordNotInserted) => Ok(()),
        Err(e) => Err(e),
    }
}

/// `(event_id, idempotency_key)` of the events stored under `keys`.
pub async fn ids_of_keys(
    db: &impl ConnectionTrait,
    keys: &[String],
) -> Result<Vec<(String, Option<String>)>, DbErr> {
    events::Entity::find()
        .select_only()
        .column(events::Column::EventId)
        .column(events::Column::IdempotencyKey)
        .filter(events::Column::IdempotencyKey.is_in(keys.to_vec()))
        .into_tuple()
        .all(db)
        .await
}

/// Which events a query reads.
#[derive(Debug)]
pub struct Filter {
    /// Whose events (a query reads one owner's, always).
    pub owner: UserId,
    /// Only this service.
    pub service: Option<String>,
    /// From this time on (inclusive).
    pub from: Option<DateTime<Utc>>,
    /// Before this time.
    pub to: Option<DateTime<Utc>>,
}

impl Filter {
    fn condition(&self) -> Condition {
        let mut c = Condition::all().add(events::Column::OwnerId.eq(&self.owner));
        if let Some(service) = &self.service {
            c = c.add(events::Column::Service.eq(service.clone()));
        }
        if let Some(from) = self.from {
            c = c.add(events::Column::Timestamp.gte(from));
        }
        if let Some(to) = self.to {
            c = c.add(events::Column::Timestamp.lt(to));
        }
        c
    }
}

/// How many events the filter matches.
pub async fn count(db: &impl ConnectionTrait, filter: &Filter) -> Result<u64, DbErr> {
    events::Entity::find()
        .filter(filter.condition())
        .count(db)
        .await
}

/// Up to `limit` events oldest first by `(timestamp, seq)`: after the `(timestamp, seq)` key
/// when given, skipping `offset`.
pub async fn page(
    db: &impl ConnectionTrait,
    filter: &Filter,
    after: Option<(DateTime<Utc>, i64)>,
    offset: u64,
    limit: u64,
) -> Result<Vec<EventRow>, DbErr> {
    let mut select = events::Entity::find().filter(filter.condition());
    if let Some((t, seq)) = after {
        select = select.filter(
            Condition::any().add(events::Column::Timestamp.gt(t)).add(
                Condition::all()
                    .add(events::Column::Timestamp.eq(t))
                    .add(events::Column::Seq.gt(seq)),
            ),
        );
    }
    if offset > 0 {
        select = select.offset(offset);
    }
    select
        .order_by_asc(events::Column::Timestamp)
        .order_by_asc(events::Column::Seq)
        .limit(limit)
        .all(db)
        .await
}

/// Deletes events older than `cutoff` in chunks; returns how many went.
pub async fn delete_older_than(
    db: &impl ConnectionTrait,
    cutoff: DateTime<Utc>,
) -> Result<u64, DbErr> {
    let mut total = 0;
    loop {
        let seqs: Vec<i64> = events::Entity::find()
            .select_only()
            .column(events::Column::Seq)
            .filter(events::Column::Timestamp.lt(cutoff))
            .limit(RETENTION_CHUNK)
            .into_tuple()
            .all(db)
            .await?;
        if seqs.is_empty() {
            return Ok(total);
        }
        let n = seqs.len() as u64;
        events::Entity::delete_many()
            .filter(events::Column::Seq.is_in(seqs))
            .exec(db)
            .await?;
        total += n;
        if n < RETENTION_CHUNK {
            return Ok(total);
        }
        // Let the ingestion writer in between chunks.
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Stores a new rule.
pub async fn insert_rule(db: &impl ConnectionTrait, row: RuleRow) -> Result<RuleRow, DbErr> {
    let active: alert_rules::ActiveModel = row.into();
    active.reset_all().insert(db).await
}

/// The owner's rules, oldest first.
pub async fn rules_of(
    db: &impl ConnectionTrait,
    owner_id: &UserId,
    page: &crate::page::PageRequest,
) -> Result<crate::page::Page<RuleRow>, DbErr> {
    let q = alert_rules::Entity::find().filter(alert_rules::Column::OwnerId.eq(owner_id));
    crate::page::fetch(
        db,
        q,
        alert_rules::Column::Id,
        sea_orm::Order::Asc,
        page,
        |r| r.id.clone(),
    )
    .await
}

/// One rule, whoever owns it.
pub async fn find_rule(db: &impl ConnectionTrait, id: &str) -> Result<Option<RuleRow>, DbErr> {
    alert_rules::Entity::find_by_id(id.to_owned()).one(db).await
}

/// Writes the fields a PATCH may change (the counters are the engine's).
pub async fn update_rule(db: &impl ConnectionTrait, row: RuleRow) -> Result<RuleRow, DbErr> {
    alert_rules::ActiveModel {
        id: sea_orm::ActiveValue::Unchanged(row.id),
        name: Set(row.name),
        service: Set(row.service),
        conditions: Set(row.conditions),
        integration_id: Set(row.integration_id),
        channel_id: Set(row.channel_id),
        chat_id: Set(row.chat_id),
        max_per_minute: Set(row.max_per_minute),
        enabled: Set(row.enabled),
        updated_at: Set(row.updated_at),
        ..Default::default()
    }
    .update(db)
    .await
}

/// Deletes a rule.
pub async fn delete_rule(db: &impl ConnectionTrait, id: &str) -> Result<(), DbErr> {
    alert_rules::Entity::delete_by_id(id.to_owned())
        .exec(db)
        .await
        .map(|_| ())
}
