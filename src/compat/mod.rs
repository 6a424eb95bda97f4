//! The seed systems' routes, each a thin translation onto the native services, so their clients
//! switch by changing a base URL: Pingui Alert (`pingui`), the event-ingestion MVP (`events`),
//! the WhatsApp Message Sender (`wa_sender`) and the trading-alerts microservice (`trading`).
pub mod events;
pub mod pingui;
pub mod trading;
pub mod wa_sender;

use actix_web::web;
use futures::StreamExt;

use crate::error::ApiError;

/// The whole body, refused with `413 payload-too-large` as soon as it passes `limit` bytes while
/// it streams in (the seeds' routes read bodies of any content type, so no extractor fits).
pub(crate) async fn read_capped(
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::BytesMut, ApiError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::BadRequest("invalid-body-stream", e.to_string()))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge(format!(
                "the body is larger than {limit} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
