//! The engine the server runs: `whatsapp-rust` over our [`DbStore`], its events translated to
//! [`WaEvent`]s one for one.
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use tokio::sync::mpsc::UnboundedSender;
use whatsapp_rust::{
    Jid, TokioRuntime,
    bot::{Bot, BotHandle},
    client::Client,
    http::{HttpClient, HttpRequest, HttpResponse},
    pair_code::PairCodeOptions,
    transport::{Transport, TransportEvent, TransportFactory},
    upload::UploadOptions,
    wacore::{
        download::MediaType,
        proto_helpers::{MessageBuilderExt, MessageExt},
        types::{events::Event, presence::ReceiptType},
    },
    waproto::whatsapp as wa,
};

use super::{
    engine::{Engine, Link, Seen, WaEvent},
    store::DbStore,
};
use crate::channels::{ChannelError, OutboundMessage};

/// `whatsapp-rust` 0.7, over WhatsApp's own servers by default.
///
/// The library's two network seams can be replaced ([`WhatsAppRust::over`]): the transport
/// that carries the Noise frames and the HTTP client that fetches the Web client's version and
/// uploads media. The tests put a local WhatsApp server there (`tests/api/wa_server.rs`).
#[derive(Clone)]
pub struct WhatsAppRust {
    transport: Arc<dyn TransportFactory>,
    http: Arc<dyn HttpClient>,
}

impl Default for WhatsAppRust {
    fn default() -> Self {
        Self::over(
            Arc::new(whatsapp_rust::transport::TokioWebSocketTransportFactory::new()),
            Arc::new(whatsapp_rust::http::UreqHttpClient::new()),
        )
    }
}

impl std::fmt::Debug for WhatsAppRust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WhatsAppRust")
    }
}

impl WhatsAppRust {
    /// The library over `transport` and `http` instead of WhatsApp's servers.
    pub fn over(transport: Arc<dyn TransportFactory>, http: Arc<dyn HttpClient>) -> Self {
        Self { transport, http }
    }
}

impl Engine for WhatsAppRust {
    fn start(
        &self,
        store: DbStore,
        pair_phone: Option<String>,
        events: UnboundedSender<WaEvent>,
    ) -> BoxFuture<'static, anyhow::Result<Arc<dyn Link>>> {
        let (transport, http) = (self.transport.clone(), self.http.clone());
        Box::pin(async move {
            // A raw handler runs inline, in arrival order (the closure handlers run each event
            // on its own task, so a QR could overtake a newer one, or Connected a Disconnected).
            let mut builder = Bot::builder()
                .with_backend(store)
                .with_transport_factory(SharedTransport(transport))
                .with_http_client(SharedHttp(http))
                .with_runtime(TokioRuntime)
                .skip_history_sync()
                .with_event_handler(Forward(events.clone()));
            if let Some(phone) = pair_phone {
                builder = builder.with_pair_code(PairCodeOptions {
                    phone_number: phone.trim_start_matches('+').to_owned(),
                    ..PairCodeOptions::default()
                });
            }
            let bot = builder.build().await?;
            let handle = bot.spawn();
            let client = handle.client();
            Ok(Arc::new(RealLink {
                client,
                handle: Mutex::new(Some(handle)),
                events,
            }) as Arc<dyn Link>)
        })
    }
}

/// The builder takes its seams by value; ours are shared between the runs of every session.
struct SharedTransport(Arc<dyn TransportFactory>);

#[whatsapp_rust::async_trait]
impl TransportFactory for SharedTransport {
    async fn create_transport(
        &self,
    ) -> anyhow::Result<(
        Arc<dyn Transport>,
        whatsapp_rust::async_channel::Receiver<TransportEvent>,
    )> {
        self.0.create_transport().await
    }
}

struct SharedHttp(Arc<dyn HttpClient>);

#[whatsapp_rust::async_trait]
impl HttpClient for SharedHttp {
    async fn execute(&self, request: HttpRequest) -> anyhow::Result<HttpResponse> {
        self.0.execute(request).await
    }

    fn supports_streaming(&self) -> bool {
        self.0.supports_streaming()
    }

    fn execute_streaming(
        &self,
        request: HttpRequest,
    ) -> anyhow::Result<whatsapp_rust::wacore::net::StreamingHttpResponse> {
        self.0.execute_streaming(request)
    }

    fn supports_upload_streaming(&self) -> bool {
        self.0.supports_upload_streaming()
    }

    fn execute_upload(
        &self,
        request: HttpRequest,
        body: whatsapp_rust::wacore::net::UploadBody,
        content_length: u64,
    ) -> anyhow::Result<HttpResponse> {
        self.0.execute_upload(request, body, content_length)
    }
}

/// Hands the library's events, translated, to the session (a channel send never blocks).
struct Forward(UnboundedSender<WaEvent>);

impl whatsapp_rust::wacore::types::events::EventHandler for Forward {
    fn handle_event(&self, event: Arc<Event>) {
        for e in translate(&event) {
            let _ = self.0.send(e);
        }
    }
}

/// Our view of one library event (most kinds we do not use).
fn translate(event: &Event) -> Vec<WaEvent> {
    match event {
        Event::PairingQrCode(q) => vec![WaEvent::Qr {
            code: q.code.clone(),
            timeout: q.timeout,
        }],
        Event::PairingCode(p) => vec![WaEvent::PairCode {
            code: p.code.clone(),
            timeout: p.timeout,
        }],
        // Without a disconnect a pairing by code is still running: not the end.
        Event::PairingQrCodesExhausted(e) if e.disconnected => vec![WaEvent::QrExhausted],
        Event::PairingCodeRefresh(_) => vec![WaEvent::PairCodeExpired],
        Event::PairingCodeError(e) => vec![WaEvent::PairCodeFailed {
            detail: e.error.clone(),
        }],
        Event::PairSuccess(p) => vec![WaEvent::Paired {
            phone: format!("+{}", p.id.user),
        }],
        Event::PairError(p) => vec![WaEvent::ConnectFailure {
            detail: format!("pairing failed: {}", p.error),
        }],
        Event::Connected(_) => vec![WaEvent::Connected],
        Event::Disconnected(d) => vec![WaEvent::Disconnected {
            detail: d.reason.to_string(),
        }],
        Event::LoggedOut(l) => vec![WaEvent::LoggedOut {
            detail: format!("{:?}", l.reason),
        }],
        Event::StreamReplaced(_) => vec![WaEvent::Replaced],
        Event::TemporaryBan(b) => vec![WaEvent::TemporaryBan {
            code: ban_code(&b.code),
            expire: b.expire.to_std().unwrap_or_default(),
        }],
        Event::ConnectFailure(f) => vec![WaEvent::ConnectFailure {
            detail: f
                .message
                .clone()
                .unwrap_or_else(|| format!("{:?}", f.reason)),
        }],
        Event::ClientOutdated(_) => vec![WaEvent::ConnectFailure {
            detail: "this WhatsApp Web client version is outdated; upgrade Pregonero".into(),
        }],
        Event::ServerAck(a) if a.class.as_deref() == Some("message") => vec![WaEvent::ServerAck {
            id: a.id.clone(),
            error: a.error.clone(),
        }],
        Event::Receipt(r) => {
            let seen = match r.r#type {
                ReceiptType::Delivered => Seen::Delivered,
                ReceiptType::Read | ReceiptType::Played => Seen::Read,
                // `Sent` is a delivery WhatsApp downgraded (the peer cannot receive it): one tick.
                _ => return Vec::new(),
            };
            vec![WaEvent::Receipt {
                ids: r.message_ids.iter().map(ToString::to_string).collect(),
                seen,
            }]
        }
        Event::Messages(batch) => batch
            .iter()
            .filter(|m| !m.info.source.is_from_me && !m.info.source.is_group)
            .filter_map(|m| {
                let text = m.message.text_content()?.to_owned();
                Some(WaEvent::Inbound {
                    from: phone_of(&m.info.source.sender, m.info.source.sender_alt.as_ref())?,
                    text,
                })
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The phone number of a sender: its own id, or the phone-number id WhatsApp paired with a
/// hidden (LID) sender.
fn phone_of(sender: &Jid, alt: Option<&Jid>) -> Option<String> {
    if sender.is_pn() {
        return Some(format!("+{}", sender.user));
    }
    alt.filter(|a| a.is_pn()).map(|a| format!("+{}", a.user))
}

fn ban_code(code: &impl std::fmt::Debug) -> u16 {
    // The library names the codes; ours are WhatsApp's numbers (CHANNELS.md §3).
    match format!("{code:?}").as_str() {
        "SentToTooManyPeople" => 101,
        "BlockedByUsers" => 102,
        "CreatedTooManyGroups" => 103,
        "SentTooManySameMessage" => 104,
        "BroadcastList" => 106,
        _ => 0,
    }
}

struct RealLink {
    client: Arc<Client>,
    handle: Mutex<Option<BotHandle>>,
    events: UnboundedSender<WaEvent>,
}

impl RealLink {
    async fn message(&self, msg: &OutboundMessage) -> Result<wa::Message, ChannelError> {
        let Some(media) = &msg.media else {
            return Ok(wa::Message::text(msg.text.clone()));
        };
        let image = media.content_type.starts_with("image/");
        let kind = if image {
            MediaType::Image
        } else {
            MediaType::Document
        };
        let upload = self
            .client
            .upload(media.bytes.to_vec(), kind, UploadOptions::default())
            .await
            .map_err(|e| ChannelError::Transient {
                code: "media-upload-failed",
                detail: e.to_string(),
            })?;
        let caption = (!msg.text.is_empty()).then(|| msg.text.clone());
        Ok(if image {
            whatsapp_rust::media::image_message(
                upload,
                whatsapp_rust::media::ImageOptions {
                    caption,
                    mimetype: Some(media.content_type.clone()),
                    ..Default::default()
                },
            )
        } else {
            whatsapp_rust::media::document_message(
                upload,
                whatsapp_rust::media::DocumentOptions {
                    mimetype: Some(media.content_type.clone()),
                    file_name: Some(media.filename.clone()),
                    caption,
                    ..Default::default()
                },
            )
        })
    }
}

impl Link for RealLink {
    fn send<'a>(
        &'a self,
        to: &'a str,
        msg: &'a OutboundMessage,
    ) -> BoxFuture<'a, Result<String, ChannelError>> {
        Box::pin(async move {
            let message = self.message(msg).await?;
            let jid = Jid::pn(to.trim_start_matches('+'));
            self.client
                .send_message(jid, message)
                .await
                .map(|r| r.message_id)
                .map_err(|e| ChannelError::Transient {
                    code: "whatsapp-web-send-failed",
                    detail: e.to_string(),
                })
        })
    }

    fn stop(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let handle = self.handle.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(handle) = handle {
                handle.shutdown().await;
            }
            let _ = self.events.send(WaEvent::Ended);
        })
    }

    fn logout(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.client.logout().await;
            self.stop().await;
        })
    }
}
