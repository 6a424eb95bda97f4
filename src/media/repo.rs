//! Media rows in the database, and the rows of other tables that still point at one.
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, Order, PaginatorTrait,
    QueryFilter, Set,
};

use crate::page::{Page, PageRequest};
use crate::{
    domain::{CampaignStatus, MediaId, MessageStatus, UserId},
    entities::{campaigns, media, messages, templates},
};

/// A stored file's row.
pub type MediaRow = media::Model;

/// What a new row records about a stored file.
pub struct NewMedia<'a> {
    /// Id, and key in the store.
    pub id: &'a MediaId,
    /// Uploader.
    pub owner_id: &'a UserId,
    /// MIME type.
    pub content_type: &'a str,
    /// Name given at upload.
    pub filename: Option<String>,
    /// Bytes.
    pub size: u64,
    /// Hex digest.
    pub sha256: String,
    /// Upload time.
    pub now: DateTime<Utc>,
}

/// Records a stored file.
pub async fn insert(db: &impl ConnectionTrait, m: NewMedia<'_>) -> Result<MediaRow, DbErr> {
    media::ActiveModel {
        id: Set(m.id.clone()),
        owner_id: Set(m.owner_id.clone()),
        storage_key: Set(m.id.to_string()),
        content_type: Set(m.content_type.to_owned()),
        filename: Set(m.filename),
        size: Set(i64::try_from(m.size).unwrap_or(i64::MAX)),
        sha256: Set(m.sha256),
        created_at: Set(m.now),
    }
    .insert(db)
    .await
}

/// One row, whoever owns it.
pub async fn find(db: &impl ConnectionTrait, id: &MediaId) -> Result<Option<MediaRow>, DbErr> {
    media::Entity::find_by_id(id.to_owned()).one(db).await
}

/// The rows of `ids` (those that exist), in one query.
pub async fn find_many(db: &impl ConnectionTrait, ids: &[MediaId]) -> Result<Vec<MediaRow>, DbErr> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    media::Entity::find()
        .filter(media::Column::Id.is_in(ids.iter().cloned()))
        .all(db)
        .await
}

/// A page of `owner_id`'s rows, newest first, and how many there are.
pub async fn list(
    db: &impl ConnectionTrait,
    owner_id: &UserId,
    page: &PageRequest,
) -> Result<Page<MediaRow>, DbErr> {
    let q = media::Entity::find().filter(media::Column::OwnerId.eq(owner_id));
    crate::page::fetch(db, q, media::Column::Id, Order::Desc, page, |m| {
        m.id.to_string()
    })
    .await
}

/// Who still needs a file: templates, unfinished campaigns and unsent messages that attach it.
pub struct Uses {
    /// Templates.
    pub templates: u64,
    /// Campaigns neither completed nor cancelled.
    pub campaigns: u64,
    /// Messages pending, queued or sending.
    pub unsent: u64,
}

impl Uses {
    /// Whether anything still needs the file.
    pub fn any(&self) -> bool {
        self.templates + self.campaigns + self.unsent > 0
    }
}

/// Counts what still attaches `media_id`.
pub async fn uses(db: &impl ConnectionTrait, media_id: &MediaId) -> Result<Uses, DbErr> {
    let templates = templates::Entity::find()
        .filter(templates::Column::MediaId.eq(media_id))
        .count(db)
        .await?;
    let campaigns = campaigns::Entity::find()
        .filter(campaigns::Column::MediaId.eq(media_id))
        .filter(campaigns::Column::Status.is_not_in([
            CampaignStatus::Completed.as_str(),
            CampaignStatus::Cancelled.as_str(),
        ]))
        .count(db)
        .await?;
    let unsent = messages::Entity::find()
        .filter(messages::Column::MediaId.eq(media_id))
        .filter(messages::Column::Status.is_in([
            MessageStatus::Pending.as_str(),
            MessageStatus::Queued.as_str(),
            MessageStatus::Sending.as_str(),
        ]))
        .count(db)
        .await?;
    Ok(Uses {
        templates,
        campaigns,
        unsent,
    })
}

/// Deletes a row.
pub async fn delete(db: &impl ConnectionTrait, id: &MediaId) -> Result<(), DbErr> {
    media::Entity::delete_by_id(id.to_owned())
        .exec(db)
        .await
        .map(|_| ())
}
