//! `message_events`: every state transition and provider attempt of a message.
use sea_orm::entity::prelude::*;

use crate::domain::MessageId;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "message_events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub message_id: MessageId,
    pub at: DateTimeUtc,
    pub kind: String,
    pub outcome: Option<String>,
    pub error_code: Option<String>,
    pub detail: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
