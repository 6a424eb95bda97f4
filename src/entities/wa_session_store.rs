//! `wa_session_store`: one record of a WhatsApp Web session's protocol state, encrypted.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "wa_session_store")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub channel_id: String,
    /// The kind of record (`identity`, `session`, `prekey`, …).
    #[sea_orm(primary_key, auto_increment = false)]
    pub ns: String,
    /// Hex HMAC of the record's key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub k: String,
    /// The record, encrypted (it holds its own key too, for the scans).
    #[sea_orm(column_type = "Text")]
    pub v: String,
    /// Unix seconds of the last write.
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
