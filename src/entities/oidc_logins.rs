//! `oidc_logins`: authorization requests sent to the OpenID provider and not yet answered.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "oidc_logins")]
pub struct Model {
    /// SHA-256 of the `state` parameter.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// Encrypted PKCE verifier.
    pub pkce_verifier: String,
    pub nonce: String,
    /// Local path to go back to after login.
    pub return_to: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
