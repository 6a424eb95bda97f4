//! `legacy_tokens`: an imported integration's origin, so its clients' old tokens keep working.
use sea_orm::entity::prelude::*;

use crate::domain::IntegrationId;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "legacy_tokens")]
pub struct Model {
    /// Our integration.
    #[sea_orm(primary_key, auto_increment = false)]
    pub integration_id: IntegrationId,
    /// Where it came from (`pingui`).
    pub source: String,
    /// Its id there.
    pub legacy_id: String,
    /// Its chat there.
    pub chat_id: Option<String>,
    /// The token hash it kept there (lower-case), as imported.
    pub token_hash: Option<String>,
    /// The signing secret there, encrypted with the server's key.
    pub secret: String,
    /// HMAC of that secret under a key derived from ours: which installation it came from.
    pub secret_fingerprint: String,
    pub imported_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
