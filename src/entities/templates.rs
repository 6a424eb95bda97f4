//! `templates`: message bodies with variables, rendered per contact.
use sea_orm::entity::prelude::*;

use crate::domain::{MediaId, UserId};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "templates")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub owner_id: UserId,
    pub name: String,
    /// Jinja syntax (minijinja): `Hola {{ nombre }}`.
    pub body: String,
    /// Media sent with the text, if any.
    pub media_id: Option<MediaId>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
