//! Templates in the database.
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, IntoActiveModel,
    QueryFilter, Set,
};

use crate::domain::{MediaId, UserId};
use crate::entities::templates;

/// A stored template.
pub type TemplateRow = templates::Model;

/// Stores a new template.
pub async fn insert(
    db: &impl ConnectionTrait,
    owner_id: &UserId,
    name: &str,
    body: &str,
    media_id: Option<MediaId>,
    now: DateTime<Utc>,
) -> Result<TemplateRow, DbErr> {
    templates::ActiveModel {
        id: Set(uuid::Uuid::now_v7().to_string()),
        owner_id: Set(owner_id.clone()),
        name: Set(name.to_owned()),
        body: Set(body.to_owned()),
        media_id: Set(media_id),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(db)
    .await
}

/// The owner's templates by name.
pub async fn list_for(
    db: &impl ConnectionTrait,
    owner_id: &UserId,
    page: &crate::page::PageRequest,
) -> Result<crate::page::Page<TemplateRow>, DbErr> {
    let q = templates::Entity::find().filter(templates::Column::OwnerId.eq(owner_id));
    crate::page::fetch(
        db,
        q,
        templates::Column::Id,
        sea_orm::Order::Asc,
        page,
        |t| t.id.clone(),
    )
    .await
}

/// One template, whoever owns it.
pub async fn find(db: &impl ConnectionTrait, id: &str) -> Result<Option<TemplateRow>, DbErr> {
    templates::Entity::find_by_id(id.to_owned()).one(db).await
}

/// Writes the fields that are given; the others keep their values.
pub async fn update(
    db: &impl ConnectionTrait,
    row: TemplateRow,
    name: Option<String>,
    body: Option<String>,
    media_id: Option<MediaId>,
    now: DateTime<Utc>,
) -> Result<TemplateRow, DbErr> {
    let mut active = row.into_active_model();
    if let Some(name) = name {
        active.name = Set(name);
    }
    if let Some(body) = body {
        active.body = Set(body);
    }
    if let Some(media_id) = media_id {
        active.media_id = Set(Some(media_id));
    }
    active.updated_at = Set(now);
    active.update(db).await
}

/// Deletes a template.
pub async fn delete(db: &impl ConnectionTrait, id: &str) -> Result<(), DbErr> {
    templates::Entity::delete_by_id(id.to_owned())
        .exec(db)
        .await
        .map(|_| ())
}
