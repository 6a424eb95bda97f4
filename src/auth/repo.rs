//! Users and API keys in the database.
use chrono::{Duration, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, Set, sea_query::Expr,
};

use super::Caller;
use crate::{
    crypto,
    entities::{api_keys, users},
};

/// `last_used_at` is written at most this often per key, to keep auth off the write path.
const LAST_USED_RESOLUTION: Duration = Duration::seconds(60);

/// Resolves a bearer token to its owner, if the key exists and is not revoked.
pub async fn authenticate(db: &DatabaseConnection, token: &str) -> Result<Option<Caller>, DbErr> {
    let hash = crypto::hash_token(token);
    let Some(key) = api_keys::Entity::find()
        .filter(api_keys::Column::TokenHash.eq(hash))
        .filter(api_keys::Column::RevokedAt.is_null())
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let Some(user) = users::Entity::find_by_id(key.owner_id.clone())
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let now = Utc::now();
    if key
        .last_used_at
        .is_none_or(|t| now - t > LAST_USED_RESOLUTION)
    {
        api_keys::Entity::update_many()
            .col_expr(api_keys::Column::LastUsedAt, Expr::value(now))
            .filter(api_keys::Column::Id.eq(key.id))
            .exec(db)
            .await?;
    }
    Ok(Some(Caller {
        user_id: user.id,
        role: user.role,
    }))
}

/// Creates a user.
pub async fn create_user(
    db: &DatabaseConnection,
    name: &str,
    role: &str,
) -> Result<users::Model, DbErr> {
    users::ActiveModel {
        id: Set(uuid::Uuid::now_v7().to_string()),
        subject: Set(None),
        name: Set(name.to_owned()),
        role: Set(role.to_owned()),
        created_at: Set(Utc::now()),
        plan: Set(None),
    }
    .insert(db)
    .await
}

/// The first admin user, if any.
pub async fn first_admin(db: &DatabaseConnection) -> Result<Option<users::Model>, DbErr> {
    users::Entity::find()
        .filter(users::Column::Role.eq("admin"))
        .one(db)
        .await
}

/// Creates an API key for `owner_id` and returns the token (shown once; only its hash is kept).
pub async fn create_api_key(
    db: &DatabaseConnection,
    owner_id: &str,
    name: &str,
) -> Result<String, DbErr> {
    let token = crypto::new_token("prg");
    api_keys::ActiveModel {
        id: Set(uuid::Uuid::now_v7().to_string()),
        owner_id: Set(owner_id.to_owned()),
        name: Set(name.to_owned()),
        token_hash: Set(crypto::hash_token(&token)),
        prefix: Set(token.chars().take(8).collect()),
        created_at: Set(Utc::now()),
        last_used_at: Set(None),
        revoked_at: Set(None),
    }
    .insert(db)
    .await?;
    Ok(token)
}

/// On an empty database: creates the admin user and a first API key, returned to print once.
pub async fn bootstrap(db: &DatabaseConnection) -> Result<Option<String>, DbErr> {
    if users::Entity::find().count(db).await? > 0 {
        return Ok(None);
    }
    let admin = create_user(db, "admin", "admin").await?;
    create_api_key(db, &admin.id, "bootstrap").await.map(Some)
}
