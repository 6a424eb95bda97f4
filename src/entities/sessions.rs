//! `sessions`: server-side browser sessions behind the `pregonero_session` cookie.
use sea_orm::entity::prelude::*;

use crate::domain::UserId;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sessions")]
pub struct Model {
    /// SHA-256 of the cookie value (the value itself is never stored).
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub user_id: UserId,
    /// `oidc` or `local`.
    pub kind: String,
    pub csrf_token: String,
    /// Encrypted OIDC refresh token.
    pub refresh_token: Option<String>,
    /// Encrypted ID token, kept as `id_token_hint` for RP-initiated logout.
    pub id_token: Option<String>,
    /// When the OIDC tokens behind the session expire (refreshed before then).
    pub token_expires_at: Option<DateTimeUtc>,
    pub expires_at: DateTimeUtc,
    pub created_at: DateTimeUtc,
    pub last_seen_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
