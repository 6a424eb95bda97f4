//! `contacts`: people an owner sends to, one per owner and E.164 phone.
use sea_orm::entity::prelude::*;

use crate::domain::{ContactId, UserId};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "contacts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: ContactId,
    pub owner_id: UserId,
    /// E.164, e.g. `+34612345678`.
    pub phone: String,
    /// The seed's `nombre`.
    pub name: Option<String>,
    /// The seed's `sustantivo` (how to address the person).
    pub noun: Option<String>,
    /// The seed's `grupo`.
    pub group_name: Option<String>,
    pub telegram_chat_id: Option<String>,
    /// Free attributes, a JSON object of strings, usable in templates.
    pub attributes: Option<String>,
    pub opted_out: bool,
    pub opted_out_at: Option<DateTimeUtc>,
    /// `api` or `import:<id>`.
    pub source: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// Last message the contact sent us (opens WhatsApp's 24 h service window).
    pub last_inbound_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
