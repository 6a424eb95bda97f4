//! `contact_imports`: one CSV import and its progress.
use sea_orm::entity::prelude::*;

use crate::domain::UserId;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "contact_imports")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub owner_id: UserId,
    /// The node holding the uploaded file (it runs, and after a restart resumes, the import).
    pub node: String,
    pub filename: String,
    /// ISO 3166 region for numbers written without `+country`.
    pub default_region: String,
    /// `running`, `completed` or `failed`.
    pub status: String,
    /// Data rows read so far (the header excluded).
    pub total_rows: i64,
    /// Rows written (created or updated).
    pub imported: i64,
    /// Rows refused; each has a `contact_import_errors` row.
    pub failed: i64,
    /// Why the whole import failed, if it did.
    pub error: Option<String>,
    pub created_at: DateTimeUtc,
    pub finished_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
