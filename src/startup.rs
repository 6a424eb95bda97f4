//! Assembly: database, queue, actors, HTTP server and workers, and their orderly shutdown.
use std::{net::TcpListener, sync::Arc, time::Duration, time::Instant};

use actix_web::{App, HttpServer, dev::Server, dev::ServerHandle, middleware, web};
use anyhow::Context;
use secrecy::ExposeSecret;
use tracing_actix_web::{RequestId, TracingLogger};
use utoipa_actix_web::AppExt;

use crate::{
    auth::{self, lockout::Lockout, oidc::Oidc},
    campaigns::{CampaignRunner, StopCampaigns},
    channels::{
        Adapters, ChannelRegistry, EnableUpdates, StopAll, UpdatesConfig,
        telegram::{TelegramAdapter, TelegramClient},
        webhook::WebhookAdapter,
        whatsapp::{WhatsAppClient, WhatsAppCloudAdapter},
        whatsapp_web::{Sessions, WebContext, WhatsAppWebAdapter},
    },
    clock::Clock,
    config::{Settings, UpdatesMode},
    contacts::ContactsListener,
    crypto::Cipher,
    db, error,
    events::{EventWriter, RuleEngine, WriterOptions, breaker::Breaker},
    integrations::{
        AlertQuotas, BotUpdates, IntegrationsListener, WEBHOOK_KEY_PURPOSE, tokens::TokenSigner,
    },
    media::{Library, MediaStore},
    outbox::{Outbox, Workers, hooks::Listeners, writer::LedgerWriter},
    state::AppState,
    subscriptions::SubscriptionsListener,
    web as routes,
};

/// Which parts of the process to run (one image serves API and worker Deployments).
#[derive(Clone)]
pub struct RunOptions {
    /// Serve HTTP.
    pub http: bool,
    /// Run delivery workers and the recovery sweep.
    pub workers: bool,
    /// The WhatsApp Web protocol (`whatsapp-rust` unless a test scripts a phone).
    pub whatsapp_web: Arc<dyn crate::channels::whatsapp_web::Engine>,
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("http", &self.http)
            .field("workers", &self.workers)
            .finish_non_exhaustive()
    }
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            http: true,
            workers: true,
            whatsapp_web: Arc::new(crate::channels::whatsapp_web::WhatsAppRust::default()),
        }
    }
}

/// A built, not yet running, server.
pub struct Application {
    port: u16,
    state: AppState,
    server: Option<Server>,
    bootstrap: auth::repo::Bootstrap,
    options: RunOptions,
    /// Accounts the start-up sync could not start; the periodic sync leaves them alone.
    broken_accounts: std::collections::HashSet<crate::domain::ChannelId>,
}

/// A running server; [`RunningApp::stop`] shuts it down cleanly.
pub struct RunningApp {
    /// Bound HTTP port.
    pub port: u16,
    /// Shared state (tests reach the database and actors through it).
    pub state: AppState,
    server: Option<(
        ServerHandle,
        actix_web::rt::task::JoinHandle<std::io::Result<()>>,
    )>,
    workers: Option<Workers>,
    campaigns: Option<actix::Addr<CampaignRunner>>,
    /// Starts and stops accounts added or deleted through other replicas.
    account_sync: actix_web::rt::task::JoinHandle<()>,
}

impl Application {
    /// Connects everything, starts the channel actors and binds the listener.
    pub async fn build(settings: Settings, options: RunOptions) -> anyhow::Result<Self> {
        crate::web::metrics::install();
        let db = db::connect(&settings).await?;
        let queue = crate::outbox::Queue::attach(&db, &settings, true).await?;
        let cipher = Cipher::from_base64(&db::secret_key(&settings)?)
            .context("invalid secret_key")?
            .with_previous(
                settings
                    .previous_secret_keys
                    .iter()
                    .map(ExposeSecret::expose_secret),
            )?;
        let telegram = TelegramClient::new(
            &settings.telegram.api_base_url,
            Duration::from_millis(settings.telegram.request_timeout_ms),
        )?;
        let shared = match &settings.redis_url {
            Some(url) => {
                use secrecy::ExposeSecret;
                let shared =
                    crate::shared::Shared::new(url.expose_secret()).context("invalid redis_url")?;
                if let Err(e) = shared.ping().await {
                    tracing::warn!(error = %e, "Redis does not answer yet: request rate limits and pacing are per process until it does");
                }
                Some(shared)
            }
            None => None,
        };
        // With Redis, every account's pacing holds over all replicas (pacing::SharedPacer).
        let running = crate::channels::Running::default();
        let registry = match &shared {
            Some(store) => {
                crate::pacing::heartbeat(store.clone());
                let (store, key) = (store.clone(), cipher.derive("pacing/v1"));
                let running = running.clone();
                actix::Supervisor::start(move |_| ChannelRegistry::shared(store, key, running))
            }
            None => {
                let running = running.clone();
                actix::Supervisor::start(move |_| ChannelRegistry::new(running))
            }
        };
        let tokens = TokenSigner::new(&cipher.derive("integration-tokens/v1"))
            .accepting(&cipher.derive_previous("integration-tokens/v1"));
        crate::telemetry::set_redaction_key(cipher.derive("log-redact/v1"));
        let clock = Clock::system();
        let quotas: Arc<dyn crate::outbox::hooks::Quotas> = Arc::new(AlertQuotas);
        let planner = crate::outbox::writer::Planner {
            running: running.clone(),
            horizon: Duration::from_millis(settings.delivery.pacing_horizon_ms),
        };
        let ledger = LedgerWriter::start(
            db.clone(),
            queue.clone(),
            clock.clone(),
            quotas.clone(),
            Some(planner),
        );
        // SQLite has one write lock: audit entries ride in the ledger's transactions there.
        let audit_rides =
            (db.get_database_backend() == sea_orm::DbBackend::Sqlite).then(|| ledger.clone());
        let audit = auth::audit_writer::AuditWriter::start(db.clone(), audit_rides);
        let rules = RuleEngine::new(db.clone(), ledger.clone(), clock.clone(), shared.clone());
        rules.reload().await.context("could not load alert rules")?;
        rules.start_refresh();
        let breaker = Arc::new(Breaker::new(
            clock.clone(),
            settings.events.breaker_failures,
            settings.events.breaker_successes,
            settings.events.breaker_open_secs,
        ));
        // Live updates reach a stream on any replica through Redis (live/mod.rs).
        let live = match (&shared, &settings.redis_url) {
            (Some(store), Some(url)) => {
                crate::live::Live::shared(store.clone(), url.expose_secret().to_owned())
            }
            _ => crate::live::Live::local(),
        };
        let node_name = settings.node_name.clone().unwrap_or_else(hostname);
        // WhatsApp Web sessions run on worker replicas, one replica per session (by lease).
        // The outbox is built after the adapters that need it: they get it through this cell,
        // which the state owns (see `WebContext::outbox`).
        let web_outbox: Arc<std::sync::OnceLock<Outbox>> = Default::default();
        let web = WebContext {
            db: db.clone(),
            cipher: cipher.clone(),
            node: node_name.clone(),
            engine: options.whatsapp_web.clone(),
            sessions: Sessions::default(),
            live: live.clone(),
            outbox: Arc::downgrade(&web_outbox),
            runs_sessions: options.workers,
            lease: Duration::from_secs(settings.whatsapp_web.lease_secs.max(3)),
            ack_timeout: Duration::from_secs(settings.whatsapp_web.ack_timeout_secs.max(1)),
            max_restarts: settings.whatsapp_web.max_restarts,
            drop_alert: Duration::from_secs(settings.whatsapp_web.drop_alert_secs),
            warmup: (
                settings.whatsapp_web.warmup_first_day,
                settings.whatsapp_web.warmup_daily_increase,
            ),
        };
        let w = &settings.whatsapp;
        // The actors get their own clients: pooled connections run on the runtime that opened
        // them, and the HTTP workers' runtimes end before deliveries do on shutdown.
        // Every channel kind is one line here.
        let adapters = Adapters::default()
            .with(TelegramAdapter::new(
                telegram.clone(),
                TelegramClient::new(
                    &settings.telegram.api_base_url,
                    Duration::from_millis(settings.telegram.request_timeout_ms),
                )?,
            ))
            .with(WhatsAppCloudAdapter::new(WhatsAppClient::new(
                &w.api_base_url,
                Duration::from_millis(w.request_timeout_ms),
                Duration::from_millis(w.throughput_backoff_ms),
                Duration::from_secs(w.quality_backoff_secs),
            )?))
            .with(WebhookAdapter::new()?)
            .with(WhatsAppWebAdapter::new(web.clone()));
        let events = EventWriter::start(
            db.clone(),
            breaker,
            rules.clone(),
            Some(live.clone()),
            WriterOptions {
                capacity: settings.events.buffer_capacity,
                durability: settings.events.durability,
                group_commit: settings.events.group_commit,
                writers: if settings.is_postgres() { 4 } else { 1 },
                shutdown_grace: Duration::from_secs(settings.delivery.shutdown_grace_secs),
            },
        );
        let oidc = Oidc::new(&settings.oidc, &settings.public_base_url(), clock.clone())?;
        let media = MediaStore::from_settings(&settings.media, &settings.data_dir)
            .await
            .context("could not open the media store")?;
        tracing::info!(store = media.kind(), "media store ready");
        let settings_auth = settings.auth.clone();
        let trusted_proxies: Arc<[ipnet::IpNet]> =
            crate::client_ip::parse_list(settings.trusted_proxies.iter().map(String::as_str))
                .map_err(|bad| anyhow::anyhow!("trusted_proxies: `{bad}` is not an IP or CIDR"))?
                .into();
        let snapshots = crate::signals::snapshot::Snapshots::new(
            &settings.signals.snapshots,
            &settings.data_dir,
        );
        let settings = Arc::new(settings);
        let media = Arc::new(media);
        let in_flight = crate::outbox::InFlight::default();
        let subscriptions = SubscriptionsListener::default();
        // Every feature that takes part in a message's life is one line here.
        let listeners = Listeners::new(vec![
            Arc::new(ContactsListener {
                opt_out_keywords: settings.whatsapp.opt_out_keywords.clone(),
            }),
            Arc::new(IntegrationsListener {
                clock: clock.clone(),
            }),
            Arc::new(subscriptions.clone()),
            Arc::new(crate::live::LiveListener { live: live.clone() }),
            Arc::new(crate::campaigns::CampaignsListener),
        ]);
        let outbox = Outbox {
            db: db.clone(),
            queue: queue.clone(),
            registry: registry.clone(),
            running,
            adapters: adapters.clone(),
            cipher: cipher.clone(),
            settings: settings.clone(),
            node_name: node_name.clone(),
            in_flight: in_flight.clone(),
            clock: clock.clone(),
            ledger: ledger.clone(),
            quotas,
            listeners: listeners.clone(),
            attachments: Arc::new(Library {
                db: db.clone(),
                store: media.clone(),
                cipher: cipher.clone(),
                settings: settings.clone(),
            }),
            sent: None,
            claims: None,
            receipts: Some(crate::outbox::receipts::ReceiptWriter::start(
                db.clone(),
                listeners.clone(),
            )),
        };
        let _ = web_outbox.set(outbox.clone());
        let lockout = Arc::new(
            Lockout::new(
                settings_auth.login_max_failures,
                Duration::from_secs(settings_auth.login_lockout_secs),
            )
            .shared(shared.clone(), cipher.derive("lockout/v1")),
        );
        let state = AppState {
            db,
            shared,
            live,
            draining: Default::default(),
            anonymous_events_owner: Default::default(),
            queue,
            registry,
            telegram,
            adapters,
            web_sessions: web.sessions.clone(),
            web_outbox,
            cipher,
            media,
            settings,
            node_name,
            started_at: Instant::now(),
            in_flight,
            outbox,
            workers_enabled: options.workers,
            clock,
            tokens,
            ledger,
            audit,
            api_keys: Arc::new(crate::cache::TtlCache::new(HOT_CACHE_TTL, HOT_CACHE_MAX)),
            channel_rows: Arc::new(crate::cache::TtlCache::new(HOT_CACHE_TTL, HOT_CACHE_MAX)),
            token_cache: Default::default(),
            events,
            rules,
            oidc,
            lockout,
            refresh_lock: Default::default(),
            imports: Default::default(),
            subscriptions,
            trusted_proxies,
            snapshots,
        };
        // Only worker nodes read bot updates (API-only replicas still take webhook calls).
        let mode = state.settings.updates_mode();
        if options.workers && mode != UpdatesMode::Off {
            let cfg = UpdatesConfig {
                mode,
                sink: Arc::new(BotUpdates::new(state.clone())),
                db: state.db.clone(),
                node: state.node_name.clone(),
                poll_timeout: state.settings.telegram.poll_timeout_secs,
                public_url: state.settings.telegram.public_url.clone(),
                webhook_key: state.cipher.derive(WEBHOOK_KEY_PURPOSE),
            };
            state.registry.send(EnableUpdates(cfg)).await?;
        }
        // Every stored account; one whose secret can't be read is marked, not fatal, and the
        // periodic sync does not try it again.
        let mut broken_accounts = std::collections::HashSet::new();
        state.outbox.accounts().sync(&mut broken_accounts).await?;
        let bootstrap = auth::repo::bootstrap(
            &state.db,
            state.oidc.is_none(),
            state
                .settings
                .admin_password
                .as_ref()
                .map(ExposeSecret::expose_secret),
        )
        .await?;
        if let Some(spec) = &state.settings.events.anonymous_owner {
            let owner = auth::repo::user_named(&state.db, spec)
                .await?
                .with_context(|| {
                    format!("events.anonymous_owner: no user `{spec}` (give `admin`, a user id or an email)")
                })?;
            tracing::warn!(
                owner = %owner.id.as_str(),
                "events.anonymous_owner is set: POST /events and GET /events without credentials are open to anyone who can reach this port, as that user"
            );
            let _ = state.anonymous_events_owner.set(owner.id);
        }

        // A worker-only replica serves the operational routes alone (probes, metrics).
        let listener = TcpListener::bind((state.settings.host.as_str(), state.settings.port))
            .with_context(|| {
                format!(
                    "could not bind {}:{}",
                    state.settings.host, state.settings.port
                )
            })?;
        let port = listener.local_addr()?.port();
        let (port, server) = (
            port,
            Some(http_server(listener, state.clone(), options.http)?),
        );
        Ok(Self {
            port,
            state,
            server,
            bootstrap,
            options,
            broken_accounts,
        })
    }

    /// The bound port (0 without HTTP).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Shared state.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The admin API key created on first start (only on an empty database).
    pub fn bootstrap_key(&self) -> Option<&str> {
        self.bootstrap.api_key.as_deref()
    }

    /// The local admin's password, when it was generated at this start (local mode).
    pub fn bootstrap_password(&self) -> Option<&str> {
        self.bootstrap.password.as_deref()
    }

    /// Starts serving and working; returns at once.
    pub fn spawn(self) -> anyhow::Result<RunningApp> {
        let workers = if self.options.workers {
            let state = self.state.clone();
            let periodic: crate::outbox::Periodic = Box::new(move |db, queue| {
                let state = AppState { db, queue, ..state };
                let mut tasks: Vec<futures::future::BoxFuture<'static, ()>> = Vec::new();
                if state.settings.schedule.enabled {
                    tasks.push(Box::pin(crate::scheduled::run_periodically(state)));
                }
                tasks
            });
            Some(Workers::start(self.state.outbox.clone(), periodic)?)
        } else {
            None
        };
        // Worker nodes capture charts (claims in the database keep replicas apart).
        if self.options.workers {
            crate::signals::queue::spawn_workers(&self.state.snapshots, self.state.clone());
        }
        // Worker nodes run campaigns (one node per campaign, by lease).
        let campaigns = self.options.workers.then(|| {
            let state = self.state.clone();
            actix::Supervisor::start(move |_| CampaignRunner::new(state))
        });
        let server = self.server.map(|server| {
            let handle = server.handle();
            (handle, actix_web::rt::spawn(server))
        });
        let account_sync = actix_web::rt::spawn(
            self.state
                .outbox
                .accounts()
                .sync_periodically(self.broken_accounts),
        );
        if self.options.http {
            // Uploads live on the node that took them; it finishes what a stop interrupted.
            let state = self.state.clone();
            actix_web::rt::spawn(async move {
                if let Err(e) = crate::contacts::resume(&state).await {
                    tracing::error!(error = %e, "could not resume contact imports");
                }
            });
        }
        tracing::info!(port = self.port, node = %self.state.node_name, "pregonero started");
        Ok(RunningApp {
            port: self.port,
            state: self.state,
            server,
            workers,
            campaigns,
            account_sync,
        })
    }
}

impl RunningApp {
    /// Stops accepting requests, drains in-flight deliveries, hands back leases.
    pub async fn stop(mut self) {
        // Unready first, still serving: the load balancer stops sending before the port closes.
        self.state
            .draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let delay = self.state.settings.delivery.unready_delay_secs;
        if self.server.is_some() && delay > 0 {
            tracing::info!(
                secs = delay,
                "draining: /ready answers 503 before the listener closes"
            );
            tokio::time::sleep(std::time::Duration::from_secs(delay)).await;
        }
        if let Some((handle, task)) = self.server.take() {
            handle.stop(true).await;
            let _ = task.await;
        }
        // Imports stop between two batches and resume at the next start.
        self.state.imports.stop().await;
        // Campaigns stop releasing recipients and hand their leases back.
        if let Some(campaigns) = self.campaigns.take() {
            let _ = campaigns.send(StopCampaigns).await;
        }
        // Accepted events are committed before anything else stops (buffered mode holds some).
        self.state.events.shutdown().await;
        if let Some(workers) = self.workers.take() {
            workers.shutdown().await;
        }
        // Last: deliveries still needed the actors. Pollers stop with them.
        self.account_sync.abort();
        let _ = self.state.registry.send(StopAll).await;
        tracing::info!("pregonero stopped");
    }
}

/// The HTTP server: every route, or (`api` false, a worker-only replica) the operational ones.
fn http_server(listener: TcpListener, state: AppState, api: bool) -> anyhow::Result<Server> {
    let grace = crate::config::HTTP_DRAIN_SECS;
    let outbox = web::Data::new(state.outbox.clone());
    let subscriptions = web::Data::new(state.subscriptions.clone());
    let limits = web::Data::new(routes::limits::RequestLimits::new(
        &state.settings.rate_limit,
        state.shared.clone(),
        state.cipher.derive("rate-limit/v1"),
    ));
    let limited = state.settings.rate_limit.enabled;
    let cors = state.settings.cors.clone();
    let data = web::Data::new(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(limits.clone())
            .app_data(outbox.clone())
            .app_data(subscriptions.clone())
            .app_data(
                web::JsonConfig::default()
                    .limit(256 * 1024)
                    .error_handler(error::json_error_handler),
            )
            .app_data(web::QueryConfig::default().error_handler(error::query_error_handler))
            .app_data(web::PathConfig::default().error_handler(error::path_error_handler))
            .into_utoipa_app()
            .configure(if api {
                routes::configure
            } else {
                routes::configure_operations
            })
            .into_app()
            .default_service(web::to(routes::not_found))
            .wrap(middleware::Condition::new(
                limited,
                middleware::from_fn(routes::limits::middleware),
            ))
            .wrap(middleware::from_fn(routes::metrics::track))
            .wrap(middleware::from_fn(request_id_header))
            .wrap(TracingLogger::<RouteSpan>::new())
            .wrap(middleware::Condition::new(
                !cors.allowed_origins.is_empty(),
                cors_middleware(&cors),
            ))
    })
    .disable_signals()
    .shutdown_timeout(grace)
    .listen(listener)?
    .run();
    Ok(server)
}

/// CORS for the configured origins (outermost, so refusals and limits carry the fields too).
/// A request from another origin is served without them (browsers then hide the answer from
/// that origin's scripts); same-origin requests, which also carry `Origin`, are unaffected.
fn cors_middleware(settings: &crate::config::CorsSettings) -> actix_cors::Cors {
    use actix_web::http::header::{self, HeaderName};
    settings
        .allowed_origins
        .iter()
        .fold(actix_cors::Cors::default(), |cors, origin| {
            cors.allowed_origin(origin)
        })
        .allowed_methods(["GET", "POST", "PUT", "PATCH", "DELETE"])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static("x-csrf-token"),
        ])
        .expose_headers([
            header::RETRY_AFTER,
            header::LOCATION,
            HeaderName::from_static("ratelimit"),
            HeaderName::from_static("ratelimit-policy"),
            HeaderName::from_static("x-request-id"),
        ])
        .max_age(Some(settings.max_age_secs as usize))
}

/// Root span of a request that names the route pattern (`/api/integrations/{chat_id}`), never
/// the concrete path or query: those carry chat ids and webhook tokens, which stay out of logs.
struct RouteSpan;

impl tracing_actix_web::RootSpanBuilder for RouteSpan {
    fn on_request_start(req: &actix_web::dev::ServiceRequest) -> tracing::Span {
        use actix_web::HttpMessage;
        let request_id = req
            .extensions()
            .get::<RequestId>()
            .map(ToString::to_string)
            .unwrap_or_default();
        let route = req
            .match_pattern()
            .unwrap_or_else(|| "<unmatched>".to_owned());
        tracing::info_span!(
            "HTTP request",
            http.method = %req.method(),
            http.route = %route,
            http.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            request_id = %request_id,
            exception.message = tracing::field::Empty,
            exception.details = tracing::field::Empty,
        )
    }

    fn on_request_end<B: actix_web::body::MessageBody>(
        span: tracing::Span,
        outcome: &Result<actix_web::dev::ServiceResponse<B>, actix_web::Error>,
    ) {
        tracing_actix_web::DefaultRootSpanBuilder::on_request_end(span, outcome);
    }
}

/// Echoes tracing-actix-web's request id as `X-Request-Id`, and names it as the `instance` of
/// a problem-details error body (`urn:uuid:<id>`), the key to the request's lines in the log.
async fn request_id_header(
    req: actix_web::dev::ServiceRequest,
    next: middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    use actix_web::HttpMessage;
    let id = req.extensions().get::<RequestId>().map(|id| id.to_string());
    let mut res = next.call(req).await?.map_into_boxed_body();
    let Some(id) = id else {
        return Ok(res);
    };
    if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&id) {
        res.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static("x-request-id"),
            value,
        );
    }
    let is_problem = res
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes() == error::PROBLEM_JSON.as_bytes());
    if !is_problem {
        return Ok(res);
    }
    let (http_req, res) = res.into_parts();
    let (head, body) = res.into_parts();
    let Ok(Ok(bytes)) = actix_web::body::to_bytes_limited(body, 256 * 1024).await else {
        return Err(error::ApiError::Unexpected(anyhow::anyhow!("error body unreadable")).into());
    };
    let body = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(serde_json::Value::Object(mut problem)) => {
            problem.insert("instance".into(), format!("urn:uuid:{id}").into());
            serde_json::to_vec(&problem).map_or(bytes, Into::into)
        }
        _ => bytes,
    };
    Ok(actix_web::dev::ServiceResponse::new(
        http_req,
        head.set_body(actix_web::body::BoxBody::new(body)),
    ))
}

/// How long API key checks and channel lookups are reused on the request path.
const HOT_CACHE_TTL: Duration = Duration::from_secs(1);
/// Entries of each such cache before it starts over.
const HOT_CACHE_MAX: usize = 10_000;

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "local".into())
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received; shutting down"),
                    _ = tokio::signal::ctrl_c() => tracing::info!("interrupt received; shutting down"),
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
