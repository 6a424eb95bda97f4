//! Media: uploads stored in a local folder (embedded default), metadata in `media`.
mod routes;
mod store;

use anyhow::Context;
use bytes::Bytes;
use sea_orm::EntityTrait;

pub use routes::configure;
pub use store::LocalMediaStore;

use crate::{entities::media, state::AppState};

/// Loads a media row and its bytes (for delivery).
pub async fn load(state: &AppState, id: &str) -> anyhow::Result<(media::Model, Bytes)> {
    let meta = media::Entity::find_by_id(id.to_owned())
        .one(&state.db)
        .await?
        .with_context(|| format!("media {id} does not exist"))?;
    let bytes = state.media.get(&meta.storage_key).await?;
    Ok((meta, bytes))
}
