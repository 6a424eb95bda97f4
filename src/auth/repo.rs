//! Users, API keys and the local admin's password in the database.
use argon2::{
    Argon2,
    password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash},
};
use chrono::{DateTime, Duration, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, IntoActiveModel, Order,
    PaginatorTrait, QueryFilter, QueryOrder, Set, sea_query::Expr,
};

use super::{Caller, Role, Via, oidc::Identity};
use crate::domain::UserId;
use crate::page::{Page, PageRequest};
use crate::{
    crypto,
    entities::{api_keys, users},
    error::ApiError,
};

/// `last_used_at` is written at most this often per key, to keep auth off the write path.
const LAST_USED_RESOLUTION: Duration = Duration::seconds(60);

/// API key scopes ([`super::key_check::Scopes`]): `read` (GET) and `write` (everything else the
/// role allows) on `/api/v1`; `events:write` and `events:read` on `/events`.
pub const SCOPES: [&str; 4] = ["read", "write", "events:write", "events:read"];

/// The scopes of a key created without a list: the whole `/api/v1`, not the events.
pub const DEFAULT_SCOPES: [&str; 2] = ["read", "write"];

/// Resolves an API key to its owner and the key's expiry: 401 if it is unknown, revoked or
/// expired.
pub async fn authenticate(
    db: &DatabaseConnection,
    token: &str,
    now: DateTime<Utc>,
) -> Result<(Caller, Option<DateTime<Utc>>), ApiError> {
    let hash = crypto::hash_token(token);
    let Some(key) = api_keys::Entity::find()
        .filter(api_keys::Column::TokenHash.eq(hash))
        .one(db)
        .await?
    else {
        return Err(ApiError::InvalidCredentials);
    };
    if key.revoked_at.is_some() {
        return Err(ApiError::Unauthorized(
            "api-key-revoked",
            "this API key was revoked".into(),
        ));
    }
    if key.expires_at.is_some_and(|t| t <= now) {
        return Err(ApiError::Unauthorized(
            "api-key-expired",
            "this API key has expired; create a new one".into(),
        ));
    }
    let Some(user) = users::Entity::find_by_id(key.owner_id.clone())
        .one(db)
        .await?
    else {
        return Err(ApiError::InvalidCredentials);
    };
    if key
        .last_used_at
        .is_none_or(|t| now - t > LAST_USED_RESOLUTION)
    {
        api_keys::Entity::update_many()
            .col_expr(api_keys::Column::LastUsedAt, Expr::value(now))
            .filter(api_keys::Column::Id.eq(key.id.clone()))
            .exec(db)
            .await?;
    }
    let caller = Caller {
        user_id: user.id,
        role: Role::stored(&user.role),
        via: Via::ApiKey {
            scopes: super::key_check::Scopes::parse(&key.scopes),
            key_id: key.id,
        },
    };
    Ok((caller, key.expires_at))
}

/// Creates a user.
pub async fn create_user(
    db: &DatabaseConnection,
    name: &str,
    role: &str,
) -> Result<users::Model, DbErr> {
    users::ActiveModel {
        id: Set(UserId::generate()),
        subject: Set(None),
        name: Set(name.to_owned()),
        role: Set(role.to_owned()),
        created_at: Set(Utc::now()),
        plan: Set(None),
        email: Set(None),
        password_hash: Set(None),
        last_login_at: Set(None),
    }
    .insert(db)
    .await
}

/// The user behind a Keycloak subject, created on first sight; name, email and role follow the
/// token. `login` also stamps `last_login_at`.
pub async fn upsert_oidc_user(
    db: &DatabaseConnection,
    identity: &Identity,
    role: Role,
    now: DateTime<Utc>,
    login: bool,
) -> Result<users::Model, DbErr> {
    let existing = users::Entity::find()
        .filter(users::Column::Subject.eq(identity.subject.clone()))
        .one(db)
        .await?;
    match existing {
        Some(user)
            if !login
                && user.role == role.as_str()
                && user.name == identity.name
                && user.email == identity.email =>
        {
            Ok(user)
        }
        Some(user) => {
            let mut active = user.into_active_model();
            active.name = Set(identity.name.clone());
            active.email = Set(identity.email.clone());
            active.role = Set(role.as_str().to_owned());
            if login {
                active.last_login_at = Set(Some(now));
            }
            active.update(db).await
        }
        None => {
            let inserted = users::ActiveModel {
                id: Set(UserId::generate()),
                subject: Set(Some(identity.subject.clone())),
                name: Set(identity.name.clone()),
                role: Set(role.as_str().to_owned()),
                created_at: Set(now),
                plan: Set(None),
                email: Set(identity.email.clone()),
                password_hash: Set(None),
                last_login_at: Set(login.then_some(now)),
            }
            .insert(db)
            .await;
            match inserted {
                Ok(user) => {
                    tracing::info!(user_id = %user.id, role = role.as_str(), "user created on first sign-in");
                    Ok(user)
                }
                // Two first requests at once: the other one created it.
                Err(e) => users::Entity::find()
                    .filter(users::Column::Subject.eq(identity.subject.clone()))
                    .one(db)
                    .await?
                    .ok_or(e),
            }
        }
    }
}

/// The first admin user, if any.
pub async fn first_admin(db: &DatabaseConnection) -> Result<Option<users::Model>, DbErr> {
    users::Entity::find()
        .filter(users::Column::Role.eq("admin"))
        .filter(users::Column::Subject.is_null())
        .order_by_asc(users::Column::CreatedAt)
        .one(db)
        .await
}

/// A new API key's settings.
pub struct NewKey<'a> {
    /// A name to recognise it by.
    pub name: &'a str,
    /// Subset of [`SCOPES`].
    pub scopes: &'a [String],
    /// When it stops working.
    pub expires_at: Option<DateTime<Utc>>,
}

/// Creates an API key for `owner_id`; returns the row and the token (shown once; only its hash
/// is kept).
pub async fn create_key(
    db: &DatabaseConnection,
    owner_id: &UserId,
    key: NewKey<'_>,
) -> Result<(api_keys::Model, String), DbErr> {
    let token = crypto::new_token("prg");
    let row = api_keys::ActiveModel {
        id: Set(uuid::Uuid::now_v7().to_string()),
        owner_id: Set(owner_id.to_owned()),
        name: Set(key.name.to_owned()),
        token_hash: Set(crypto::hash_token(&token)),
        prefix: Set(token.chars().take(8).collect()),
        created_at: Set(Utc::now()),
        last_used_at: Set(None),
        revoked_at: Set(None),
        scopes: Set(key.scopes.join(" ")),
        expires_at: Set(key.expires_at),
    }
    .insert(db)
    .await?;
    Ok((row, token))
}

/// Creates an API key with every scope that never expires (CLI and first start).
pub async fn create_api_key(
    db: &DatabaseConnection,
    owner_id: &UserId,
    name: &str,
) -> Result<String, DbErr> {
    let scopes = SCOPES.map(str::to_owned);
    create_key(
        db,
        owner_id,
        NewKey {
            name,
            scopes: &scopes,
            expires_at: None,
        },
    )
    .await
    .map(|(_, token)| token)
}

/// What the first start created and must print once.
#[derive(Debug, Default)]
pub struct Bootstrap {
    /// The admin's first API key (empty database only).
    pub api_key: Option<String>,
    /// The local admin's generated password (local mode, when `admin_password` is not set).
    pub password: Option<String>,
}

/// On an empty database: creates the admin user and a first API key. In local mode, also makes
/// sure the admin has a password: `admin_password` when set (a changed value replaces the
/// stored one), else a generated one, printed once.
pub async fn bootstrap(
    db: &DatabaseConnection,
    local_mode: bool,
    admin_password: Option<&str>,
) -> anyhow::Result<Bootstrap> {
    let mut out = Bootstrap::default();
    if users::Entity::find().count(db).await? == 0 {
        let admin = create_user(db, "admin", "admin").await?;
        out.api_key = Some(create_api_key(db, &admin.id, "bootstrap").await?);
    }
    if !local_mode {
        return Ok(out);
    }
    let admin = match first_admin(db).await? {
        Some(a) => a,
        None => create_user(db, "admin", "admin").await?,
    };
    let password = match (admin_password, admin.password_hash.as_deref()) {
        (Some(p), Some(stored)) if verify_password(p, stored) => return Ok(out),
        (Some(p), _) => p.to_owned(),
        (None, Some(_)) => return Ok(out),
        (None, None) => {
            let generated = crypto::random_urlsafe(18);
            out.password = Some(generated.clone());
            generated
        }
    };
    let hash = hash_password(&password)?;
    let mut active = admin.into_active_model();
    active.password_hash = Set(Some(hash));
    active.update(db).await?;
    Ok(out)
}

/// argon2id PHC string of `password` with a random salt.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("could not hash the password: {e}"))
}

/// Whether `password` matches an argon2 PHC string (constant time inside argon2).
pub fn verify_password(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// The local user (no OIDC subject) called `name` that has a password.
pub async fn local_user(
    db: &DatabaseConnection,
    name: &str,
) -> Result<Option<users::Model>, DbErr> {
    users::Entity::find()
        .filter(users::Column::Name.eq(name))
        .filter(users::Column::Subject.is_null())
        .filter(users::Column::PasswordHash.is_not_null())
        .one(db)
        .await
}

/// Stamps a successful login.
pub async fn touch_login(
    db: &DatabaseConnection,
    user_id: &UserId,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    users::Entity::update_many()
        .col_expr(users::Column::LastLoginAt, Expr::value(now))
        .filter(users::Column::Id.eq(user_id))
        .exec(db)
        .await
        .map(|_| ())
}

/// Sets a user's plan; `false` when there is no such user.
pub async fn set_plan(
    db: &DatabaseConnection,
    user_id: &UserId,
    plan: &str,
) -> Result<bool, DbErr> {
    let result = users::Entity::update_many()
        .col_expr(users::Column::Plan, Expr::value(plan))
        .filter(users::Column::Id.eq(user_id))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// A stored API key (its token's hash, never the token).
pub type KeyRow = api_keys::Model;
/// A stored user.
pub type UserRow = users::Model;

/// One user.
pub async fn find_user(db: &DatabaseConnection, id: &UserId) -> Result<Option<UserRow>, DbErr> {
    users::Entity::find_by_id(id.to_owned()).one(db).await
}

/// The user `spec` names: `admin` (the oldest admin, the one the first start created), a user
/// id, or an email.
pub async fn user_named(db: &DatabaseConnection, spec: &str) -> Result<Option<UserRow>, DbErr> {
    if spec == "admin" {
        return users::Entity::find()
            .filter(users::Column::Role.eq(Role::Admin.as_str()))
            .order_by_asc(users::Column::CreatedAt)
            .one(db)
            .await;
    }
    if let Some(user) = users::Entity::find_by_id(UserId::from(spec.to_owned()))
        .one(db)
        .await?
    {
        return Ok(Some(user));
    }
    users::Entity::find()
        .filter(users::Column::Email.eq(spec))
        .order_by_asc(users::Column::CreatedAt)
        .one(db)
        .await
}

/// The owner's keys, newest first.
pub async fn keys_of(
    db: &DatabaseConnection,
    owner_id: &UserId,
    page: &PageRequest,
) -> Result<Page<KeyRow>, DbErr> {
    let q = api_keys::Entity::find().filter(api_keys::Column::OwnerId.eq(owner_id));
    crate::page::fetch(db, q, api_keys::Column::Id, Order::Desc, page, |k| {
        k.id.clone()
    })
    .await
}

/// One key, whoever owns it.
pub async fn find_key(db: &DatabaseConnection, id: &str) -> Result<Option<KeyRow>, DbErr> {
    api_keys::Entity::find_by_id(id.to_owned()).one(db).await
}

/// Marks a key revoked at `now`.
pub async fn revoke_key(
    db: &DatabaseConnection,
    key: KeyRow,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let mut active = key.into_active_model();
    active.revoked_at = Set(Some(now));
    active.update(db).await.map(|_| ())
}

/// A login waiting for the provider's callback.
pub type PendingLogin = crate::entities::oidc_logins::Model;

/// Records a login sent to the provider (keyed by the hash of its `state`), and forgets the
/// ones abandoned before `expired_before`.
pub async fn insert_login(
    db: &DatabaseConnection,
    login: PendingLogin,
    expired_before: DateTime<Utc>,
) -> Result<(), DbErr> {
    use crate::entities::oidc_logins;
    oidc_logins::ActiveModel::from(login)
        .reset_all()
        .insert(db)
        .await?;
    oidc_logins::Entity::delete_many()
        .filter(oidc_logins::Column::CreatedAt.lt(expired_before))
        .exec(db)
        .await
        .map(|_| ())
}

/// Takes a pending login by id, once: whoever deletes the row owns the login, so a replayed
/// callback gets `None`.
pub async fn take_login(db: &DatabaseConnection, id: &str) -> Result<Option<PendingLogin>, DbErr> {
    use crate::entities::oidc_logins;
    let Some(pending) = oidc_logins::Entity::find_by_id(id.to_owned())
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let deleted = oidc_logins::Entity::delete_by_id(id.to_owned())
        .exec(db)
        .await?;
    Ok((deleted.rows_affected == 1).then_some(pending))
}
