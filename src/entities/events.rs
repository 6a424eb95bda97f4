//! `events`: ingested events (service, time, message, JSON metadata).
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub seq: i64,
    pub event_id: String,
    pub timestamp: DateTimeUtc,
    pub service: String,
    pub message: String,
    pub metadata: Option<String>,
    pub ingested_at: DateTimeUtc,
    pub idempotency_key: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
