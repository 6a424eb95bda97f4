//! `events`: ingested events (service, time, message, JSON metadata), each its owner's.
use sea_orm::entity::prelude::*;

use crate::domain::UserId;

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
    /// `<owner id>/<Idempotency-Key>` (`#<i>` after it for the i-th event of a batch): a key
    /// is its owner's.
    pub idempotency_key: Option<String>,
    /// Whose event it is (empty only for events stored before owners existed on a server
    /// without users).
    pub owner_id: Option<UserId>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
