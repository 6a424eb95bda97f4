//! `contact_import_errors`: the rows an import refused, and why.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "contact_import_errors")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub import_id: String,
    /// The row as a spreadsheet numbers it (the header is row 1).
    #[sea_orm(primary_key, auto_increment = false)]
    pub row_number: i64,
    /// The phone as written in the file.
    pub phone: Option<String>,
    pub code: String,
    pub message: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
