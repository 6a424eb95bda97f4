//! Settings: built-in defaults < optional TOML file < `PREGONERO_*` environment.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// Every setting of the server. Nested sections map to `PREGONERO_<SECTION>__<FIELD>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address the HTTP server binds to.
    pub host: String,
    /// HTTP port; 0 picks a free one.
    pub port: u16,
    /// Folder for the SQLite file, the local media store, the generated secret key and backups.
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; also read from `DATABASE_URL`. Default: `sqlite://<data_dir>/pregonero.db`.
    pub database_url: Option<String>,
    /// `redis://[:password@]host:port[/db]` (or `rediss://`); also read from `REDIS_URL`. With
    /// it, the request rate limits are shared by every replica; without it they are per process.
    #[serde(skip_serializing, default)]
    pub redis_url: Option<SecretString>,
    /// Connections per database pool; a process has two (HTTP and workers).
    pub database_max_connections: u32,
    /// Base64 of 32 bytes used to encrypt secrets at rest. Default: generated into `<data_dir>/secret.key`.
    #[serde(skip_serializing)]
    pub secret_key: Option<SecretString>,
    /// `text` (default) or `json`.
    pub log_format: LogFormat,
    /// This process's name for leases and queue workers; default: the hostname.
    pub node_name: Option<String>,
    /// Delivery queue and retries.
    pub delivery: DeliverySettings,
    /// Telegram Bot API adapter and default pacing.
    pub telegram: TelegramSettings,
    /// Media uploads.
    pub media: MediaSettings,
    /// Alerts API (Pingui-compatible integrations): quotas, plans, queue limit, token lifetimes.
    pub alerts: AlertsSettings,
    /// Jobs that run once per cluster at a time of day (UTC).
    pub schedule: ScheduleSettings,
    /// Event ingestion (`POST /events`).
    pub events: EventsSettings,
    /// Earlier values of `secret_key`, kept to decrypt what they encrypted (key rotation).
    #[serde(skip_serializing, default)]
    pub previous_secret_keys: Vec<SecretString>,
    /// Local mode (no `oidc.issuer_url`): the admin's password, set at first start. Without it
    /// a password is generated and printed once.
    #[serde(skip_serializing)]
    pub admin_password: Option<SecretString>,
    /// Browser sign-in through an OpenID provider (Keycloak) and Keycloak bearer tokens.
    pub oidc: OidcSettings,
    /// Sessions, cookies and login throttling.
    pub auth: AuthSettings,
    /// Contacts and CSV imports.
    pub contacts: ContactsSettings,
    /// WhatsApp Business Cloud API.
    pub whatsapp: WhatsAppSettings,
    /// WhatsApp Web sessions (numbers linked as a device by QR or pairing code).
    pub whatsapp_web: WhatsAppWebSettings,
    /// Campaign execution.
    pub campaigns: CampaignSettings,
    /// Trading signals (`POST /webhook/u/{token}`): plans, quotas, duplicates, token rotation.
    pub signals: SignalsSettings,
    /// Proxies in front of the server (IPs or CIDR blocks, e.g. `10.0.0.0/8`): the client's
    /// address is read from `X-Forwarded-For` only when the connection comes from one of them,
    /// so a forged header from anyone else is ignored. Empty (default): the peer address.
    pub trusted_proxies: Vec<String>,
    /// Request rate limits per credential and per client address.
    pub rate_limit: RateLimitSettings,
    /// Cross-origin requests from browsers.
    pub cors: CorsSettings,
}

/// Request rate limits (`429 rate-limited` with `Retry-After`, `RateLimit` and
/// `RateLimit-Policy`). Each request counts against one bucket: its credential's (API key,
/// bearer token, session, or the trading webhook's path token), else its client address.
/// Health, readiness, metrics, the dashboard's files, signed media links and the providers'
/// webhooks (Telegram, WhatsApp: checked by their signatures) are not limited.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    /// `false` turns every request limit off.
    pub enabled: bool,
    /// Requests with credentials, per credential.
    pub per_key: LimitSettings,
    /// Requests without credentials, per client address (login, the seed's open routes).
    pub per_ip: LimitSettings,
    /// What clients send at volume (`POST /events`, `/events/batch`, `/api/v1/messages`,
    /// `/api/alert`, `/webhook/u/{token}`), per credential or token, or per address for the
    /// seed's open event routes.
    pub ingest: LimitSettings,
}

/// One limit: a sustained rate, and how many requests may come at once above it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    /// Requests per second, sustained.
    pub per_second: u32,
    /// Requests at once (the bucket's size).
    pub burst: u32,
}

/// CORS: off by default (browsers then refuse cross-origin calls; the dashboard is same-origin).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsSettings {
    /// Origins allowed to call the API from a browser (`https://app.example.com`); empty: none.
    pub allowed_origins: Vec<String>,
    /// How long browsers may cache a preflight answer, in seconds.
    pub max_age_secs: u32,
}

/// Trading signals settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalsSettings {
    /// Plan of users that have none (or one not listed under `plans`).
    pub default_plan: String,
    /// Plans by name (a user's plan is `users.plan`, shared with the alerts quota).
    pub plans: BTreeMap<String, SignalPlan>,
    /// Length of a quota period, in days; a user's period starts with their first signal.
    pub quota_period_days: u32,
    /// The same alert (same chart and body) posted again within this many seconds is one signal.
    pub dedup_window_secs: u32,
    /// How long a rotated-out webhook token keeps working, in hours (0: it stops at once).
    pub token_grace_hours: u32,
    /// Largest webhook body, in bytes.
    pub max_body_bytes: usize,
    /// Chart snapshots in headless Chromium.
    pub snapshots: SnapshotSettings,
}

/// Chart snapshots: a bounded pool of headless Chromium pages capturing each signal's chart.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotSettings {
    /// Capture charts (needs Chromium; without one the server warns at start and skips them).
    pub enabled: bool,
    /// The Chromium (or Chrome) binary; default: the first of `/usr/bin/chromium`,
    /// `/usr/bin/chromium-browser`, `/usr/bin/google-chrome` that exists.
    pub chromium_path: Option<PathBuf>,
    /// The chart's address; `{chart_id}` and `{ticker}` are filled in. The user's TradingView
    /// cookies go to this host only.
    pub chart_url_template: String,
    /// Charts captured at once (one browser context each); default: half the cores, at least 1.
    pub concurrency: usize,
    /// Longest one capture may take, in seconds.
    pub timeout_secs: u64,
    /// Tries per signal before it is delivered without a picture.
    pub attempts: u32,
    /// Wait before the second try, in seconds; doubled for each later one (2, 4, 8…).
    pub backoff_secs: u64,
    /// JavaScript that is true once the chart has rendered.
    pub ready_expression: String,
    /// Wait after the chart is ready before the capture, in milliseconds (animations).
    pub settle_ms: u64,
    /// Viewport of the capture, in CSS pixels.
    pub width: u32,
    pub height: u32,
}

/// Used only if validation was skipped and the default plan is missing.
const FALLBACK_PLAN: SignalPlan = SignalPlan {
    quota: 0,
    priority: u8::MAX,
};

/// One plan's signal limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalPlan {
    /// Signals per quota period.
    pub quota: u32,
    /// Snapshot order when the queue is busy: 1 goes first.
    pub priority: u8,
}

/// Contacts settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactsSettings {
    /// ISO 3166 region of phones written without `+country` (per import: `?default_region=`).
    pub default_region: String,
    /// Largest CSV import, in bytes (it streams to disk, not memory).
    pub max_import_bytes: u64,
}

/// OpenID Connect (Keycloak) settings. Without `issuer_url` the server runs in local mode.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcSettings {
    /// Issuer, e.g. `https://sso.example/realms/pregonero`; discovery reads
    /// `<issuer_url>/.well-known/openid-configuration`.
    pub issuer_url: Option<String>,
    /// This server's client id in the realm.
    pub client_id: String,
    /// The client's secret (confidential client).
    #[serde(skip_serializing)]
    pub client_secret: Option<SecretString>,
    /// Scopes asked for at login (`openid` is always added).
    pub scopes: Vec<String>,
    /// Where roles are read from in the ID and access tokens, as dot paths; `{client_id}` is
    /// replaced by `client_id`. The strongest role found wins (admin > operator > viewer).
    pub role_claims: Vec<String>,
    /// Role of a user whose token carries none of ours; none (the default) refuses the login.
    pub default_role: Option<String>,
    /// Expected `aud` of bearer access tokens; default: `client_id`.
    pub audience: Option<String>,
}

/// Session and login settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// Base URL of this server as browsers reach it (for the OIDC redirect URI); default
    /// `http://<host>:<port>`. An `https://` URL also marks the session cookie `Secure`.
    pub public_url: Option<String>,
    /// Idle lifetime of a browser session, in seconds.
    pub session_ttl_secs: u64,
    /// Failed local logins, per user name or per client IP, before logins are locked.
    pub login_max_failures: u32,
    /// How long a lock lasts, in seconds.
    pub login_lockout_secs: u64,
}

/// How long a shutdown waits for HTTP requests in flight once the listener is closed, in seconds.
pub const HTTP_DRAIN_SECS: u64 = 5;

/// Event ingestion settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsSettings {
    /// Events accepted but not yet committed, across all requests; beyond it `POST /events`
    /// answers 429 (backpressure, bounded memory).
    pub buffer_capacity: u32,
    /// Most events in one request (array body or `/events/batch`).
    pub max_request_events: usize,
    /// Longest `message`, in bytes.
    pub max_message_bytes: usize,
    /// Largest `metadata` object, serialized, in bytes.
    pub max_metadata_bytes: usize,
    /// How far in the future a `timestamp` may be, in seconds.
    pub max_future_skew_secs: u64,
    /// Events older than this many days are refused and deleted by the retention job.
    pub retention_days: u32,
    /// When `POST /events` answers: `durable` (after the commit) or `buffered` (once accepted
    /// in memory; a crash loses what was not committed yet).
    pub durability: Durability,
    /// Write the events of many requests in one transaction (group commit). `false` writes each
    /// request in its own transaction: only useful as a benchmark baseline.
    pub group_commit: bool,
    /// Consecutive failed commits that open the storage circuit breaker.
    pub breaker_failures: u32,
    /// Successful commits in a row, while half-open, that close it again.
    pub breaker_successes: u32,
    /// Seconds the breaker stays open (refusing at once with 503) before it lets a probe through.
    pub breaker_open_secs: u64,
    /// The seed's open routes: when set, `POST /events` and `GET /events` without credentials
    /// act for this user (`admin`: the first admin; or a user id or email). Off by default:
    /// anyone who can reach the port could then write events and fire that user's alert rules.
    pub anonymous_owner: Option<String>,
}

/// When an accepted event is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// `202` once the event is committed: nothing acknowledged is ever lost.
    Durable,
    /// `202` once the event is in the writer's buffer; failed commits are retried, but a crash
    /// loses the buffer (at most `events.buffer_capacity` events).
    Buffered,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// How delivery jobs run and retry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliverySettings {
    /// Delivery jobs processed at once by this process.
    pub concurrency: usize,
    /// Provider calls per message before it is marked `failed` (exhausted).
    pub max_attempts: u32,
    /// First retry delay in milliseconds; doubles per attempt, with jitter.
    pub backoff_base_ms: u64,
    /// Upper bound of a retry delay in milliseconds.
    pub backoff_max_ms: u64,
    /// How often an idle worker polls the queue, in milliseconds.
    pub poll_interval_ms: u64,
    /// How long a claimed message stays owned by one worker before others may take it over, in seconds.
    pub lease_secs: u64,
    /// How often the recovery sweep re-enqueues stranded messages, in seconds.
    pub sweep_interval_secs: u64,
    /// How long a finished delivery job stays in the queue's table before it is deleted, in
    /// seconds (the message ledger keeps the history; the queue only needs unfinished jobs).
    pub keep_finished_jobs_secs: u64,
    /// How long a clean shutdown waits for in-flight deliveries, in seconds.
    pub shutdown_grace_secs: u64,
    /// At SIGTERM, how long `/ready` answers 503 while requests are still served, before the
    /// listener closes, in seconds: the time a load balancer (Kubernetes endpoints) takes to
    /// stop sending here. Then HTTP gets [`HTTP_DRAIN_SECS`] and deliveries
    /// `shutdown_grace_secs`: 5 + 5 + 20 fits Kubernetes' default 30 s grace period.
    pub unready_delay_secs: u64,
    /// Added to each account's one-second window, in milliseconds: an account allowed N sends
    /// per second sends N in every `1 s + margin`, so network and timer jitter up to the margin
    /// cannot put N + 1 into one second at the provider.
    pub pacing_margin_ms: u64,
    /// Added to every per-recipient interval (chat, group, WhatsApp pair), in milliseconds.
    pub recipient_margin_ms: u64,
    /// A send whose pacing turn is further away than this goes back to the queue until then
    /// instead of holding a delivery slot, in milliseconds.
    pub pacing_horizon_ms: u64,
    /// Days after which the text of a finished message (sent, failed or skipped) is erased by
    /// the daily retention job; its ledger row (recipient, status, times, errors) stays. Unset
    /// (default): kept. Pingui promised not to keep alert content: set it to 1 for that.
    pub body_retention_days: Option<u32>,
}

/// Telegram Bot API settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramSettings {
    /// Base URL of the Bot API; point it at a fake or a local Bot API server for tests and staging.
    pub api_base_url: String,
    /// Timeout of one Bot API call, in milliseconds.
    pub request_timeout_ms: u64,
    /// Default sends per second per bot (Telegram allows about 30).
    pub bot_rate_per_sec: u32,
    /// Burst allowed above the bot rate.
    pub bot_burst: u32,
    /// Default sends per second to one private chat.
    pub chat_rate_per_sec: u32,
    /// Default sends per minute to one group chat.
    pub group_rate_per_min: u32,
    /// How bots receive updates (`/start`, `/stop`, blocks): `auto` (webhook when `public_url`
    /// is set, else long polling), `polling`, `webhook` or `off`.
    pub updates: UpdatesMode,
    /// Public HTTPS base URL of this server; webhooks are registered at
    /// `<public_url>/telegram/webhook/<channel id>`.
    pub public_url: Option<String>,
    /// Long-polling wait of one `getUpdates` call, in seconds (1 to 50).
    pub poll_timeout_secs: u64,
}

/// WhatsApp Business Cloud API settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhatsAppSettings {
    /// Graph API base with its version; point it at a fake for tests and staging.
    pub api_base_url: String,
    /// Timeout of one Graph API call, in milliseconds.
    pub request_timeout_ms: u64,
    /// Default sends per second per number. Meta allows 80 in any one second (inbound messages
    /// count too). Pacing at 77 with a burst of 2 releases at most 79 in any second, leaving one
    /// for network jitter; the burst keeps a slightly late sender from losing its turn (with a
    /// burst of 1 every late wake-up is lost capacity: 78/s paced gave 74.8/s).
    pub number_rate_per_sec: u32,
    /// Burst allowed above the number's rate.
    pub number_burst: u32,
    /// Seconds between two messages to one person (Meta's pair rate: about 1 per 6 s).
    pub recipient_interval_secs: u64,
    /// Pause of the whole number after a 130429 (throughput) answer, in milliseconds.
    pub throughput_backoff_ms: u64,
    /// Pause of the whole number after a 131048 (spam/quality limit), in seconds.
    pub quality_backoff_secs: u64,
    /// Inbound texts (case-insensitive, whole message) that opt a contact out.
    pub opt_out_keywords: Vec<String>,
    /// How media reaches Meta: `upload` (to the number's media endpoint once, then by id) or
    /// `link` (a presigned S3 URL, or a signed link to this server's `auth.public_url`, which
    /// Meta must be able to reach).
    pub send_media_as: MediaDelivery,
}

/// WhatsApp Web session settings. Pacing is per number (`limits` of `POST /channels`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhatsAppWebSettings {
    /// How long a replica's hold on a session lasts without renewal: when a replica dies,
    /// another takes its sessions over after at most this long.
    pub lease_secs: u64,
    /// A send without WhatsApp's server ack after this long marks the connection a zombie,
    /// and it is restarted.
    pub ack_timeout_secs: u64,
    /// Restarts in a row without connecting before a session is `failed` and waits for its
    /// owner.
    pub max_restarts: u32,
    /// Warm-up of a newly linked number: its daily cap on the day it was linked (0: no warm-up,
    /// the number's `per_day` from the start).
    pub warmup_first_day: u32,
    /// Warm-up: how much the daily cap grows each day after that, up to the number's `per_day`.
    pub warmup_daily_increase: u32,
    /// A connected number that dropped and is not back after this long is reported to its
    /// owner (their alerts chat), and again when it is back (0: at once, on every drop).
    #[serde(default = "default_drop_alert_secs")]
    pub drop_alert_secs: u64,
}

fn default_drop_alert_secs() -> u64 {
    60
}

/// How WhatsApp messages carry their media (CHANNELS.md [W-MEDIA]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaDelivery {
    /// Upload once per number, then send by media id.
    Upload,
    /// Send a link Meta fetches.
    Link,
}

/// Campaign execution settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignSettings {
    /// How often a running campaign releases recipients and refreshes its counters, in ms.
    pub tick_ms: u64,
    /// Seconds of the account's rate a campaign keeps queued ahead of the sender.
    pub lookahead_secs: u64,
    /// How long a node owns a running campaign without renewing, in seconds.
    pub lease_secs: u64,
    /// Audiences up to this size get their recipient list inside `POST …/start`; larger ones
    /// start `preparing` and a campaign runner builds it in the background.
    #[serde(default = "default_prepare_inline_max")]
    pub prepare_inline_max: u64,
}

fn default_prepare_inline_max() -> u64 {
    10_000
}

/// How bots receive Telegram updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpdatesMode {
    /// Webhook when `telegram.public_url` is set, long polling otherwise.
    Auto,
    /// `getUpdates` long polling (one poller per bot across the cluster).
    Polling,
    /// `setWebhook` to `telegram.public_url`.
    Webhook,
    /// Do not read updates (send-only bots).
    Off,
}

/// Alerts API settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsSettings {
    /// Plan of users that have none.
    pub default_plan: String,
    /// Plans by name; an integration's daily quota comes from its owner's plan.
    pub plans: BTreeMap<String, PlanSettings>,
    /// Alerts waiting for delivery (all integrations) above which `POST /api/alert` answers 503.
    pub max_pending: u64,
    /// Lifetime of a deep-link code, in seconds.
    pub link_ttl_secs: u64,
    /// Lifetime of the setup token the bot hands out on `/start`, in seconds.
    pub setup_token_ttl_secs: u64,
    /// Lifetime of integration tokens, in days; 0 means they never expire.
    pub token_ttl_days: u64,
}

/// One plan's limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanSettings {
    /// Alerts per integration per UTC day.
    pub daily_quota: u32,
}

/// Times of day (UTC, `HH:MM`) of the scheduled jobs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSettings {
    /// Run scheduled jobs in this process (needs workers).
    pub enabled: bool,
    /// How often the scheduler looks for due jobs, in seconds.
    pub tick_secs: u64,
    /// When daily alert quotas reset.
    pub quota_reset_at: String,
    /// When the SQLite database is backed up (SQLite only; PostgreSQL has its own tools).
    pub backup_at: String,
    /// Backups kept in `<data_dir>/backups`; older ones are deleted.
    pub backup_keep: usize,
    /// When events older than `events.retention_days` are deleted.
    pub events_retention_at: String,
}

/// Media: uploads, where they are stored, and the links handed out for them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaSettings {
    /// Largest accepted upload, in bytes (channel limits may be lower: see `docs/api.md`).
    pub max_upload_bytes: usize,
    /// `local` (a folder, the default) or `s3`.
    pub store: MediaStoreKind,
    /// Folder of the local store; `<data_dir>/media` when unset.
    pub local_dir: Option<PathBuf>,
    /// The S3 bucket, when `store = "s3"`.
    pub s3: S3Settings,
    /// Lifetime of the links handed out for media (presigned S3 URLs, signed links to this
    /// server), in seconds. At most 7 days (S3's limit).
    pub link_ttl_secs: u64,
    /// Memory kept for recently sent files, so a campaign reads its image once, in bytes.
    pub cache_bytes: usize,
}

/// Where media bytes are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaStoreKind {
    /// `media.local_dir` (default `<data_dir>/media`).
    Local,
    /// An S3 bucket (AWS, or MinIO/Garage/Ceph with `endpoint` and `force_path_style`).
    S3,
}

/// The S3 media store.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Settings {
    /// Bucket name.
    pub bucket: String,
    /// Region (S3-compatible servers usually accept any).
    pub region: String,
    /// Endpoint of an S3-compatible server (`http://minio:9000`); AWS when unset.
    pub endpoint: Option<String>,
    /// Path-style URLs (`<endpoint>/<bucket>/<key>`), needed by MinIO and most self-hosted servers.
    pub force_path_style: bool,
    /// Static credentials; without them the AWS default chain is used (environment, profile,
    /// web identity, container or instance role).
    pub access_key_id: Option<String>,
    /// Secret of `access_key_id`.
    #[serde(skip_serializing)]
    pub secret_access_key: Option<SecretString>,
    /// Prefix of every object key, e.g. `pregonero/`.
    pub prefix: String,
    /// Size of the parts of a multipart upload (at least 5 MiB); smaller files go in one PUT.
    pub part_size_bytes: usize,
    /// Create the bucket at start-up when it is missing.
    pub create_bucket: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8080,
            data_dir: PathBuf::from("./data"),
            database_url: None,
            database_max_connections: 10,
            secret_key: None,
            redis_url: None,
            log_format: LogFormat::Text,
            node_name: None,
            delivery: DeliverySettings {
                concurrency: 32,
                max_attempts: 8,
                backoff_base_ms: 2_000,
                backoff_max_ms: 600_000,
                poll_interval_ms: 100,
                lease_secs: 300,
                sweep_interval_secs: 30,
                keep_finished_jobs_secs: 60,
                pacing_margin_ms: 50,
                recipient_margin_ms: 100,
                pacing_horizon_ms: 5_000,
                body_retention_days: None,
                shutdown_grace_secs: 20,
                unready_delay_secs: 5,
            },
            telegram: TelegramSettings {
                api_base_url: "https://api.telegram.org".into(),
                request_timeout_ms: 30_000,
                bot_rate_per_sec: 30,
                bot_burst: 1,
                chat_rate_per_sec: 1,
                group_rate_per_min: 20,
                updates: UpdatesMode::Auto,
                public_url: None,
                poll_timeout_secs: 25,
            },
            media: MediaSettings {
                max_upload_bytes: 100 * 1024 * 1024,
                store: MediaStoreKind::Local,
                local_dir: None,
                s3: S3Settings {
                    bucket: String::new(),
                    region: "us-east-1".into(),
                    endpoint: None,
                    force_path_style: false,
                    access_key_id: None,
                    secret_access_key: None,
                    prefix: String::new(),
                    part_size_bytes: 8 * 1024 * 1024,
                    create_bucket: false,
                },
                link_ttl_secs: 3600,
                cache_bytes: 32 * 1024 * 1024,
            },
            alerts: AlertsSettings {
                default_plan: "free".into(),
                plans: BTreeMap::from([("free".into(), PlanSettings { daily_quota: 10 })]),
                max_pending: 500,
                link_ttl_secs: 3600,
                setup_token_ttl_secs: 900,
                token_ttl_days: 365,
            },
            schedule: ScheduleSettings {
                enabled: true,
                tick_secs: 30,
                quota_reset_at: "00:00".into(),
                backup_at: "03:00".into(),
                backup_keep: 7,
                events_retention_at: "04:00".into(),
            },
            events: EventsSettings {
                buffer_capacity: 50_000,
                max_request_events: 1_000,
                max_message_bytes: 8 * 1024,
                max_metadata_bytes: 16 * 1024,
                max_future_skew_secs: 300,
                retention_days: 30,
                durability: Durability::Durable,
                group_commit: true,
                breaker_failures: 5,
                breaker_successes: 2,
                breaker_open_secs: 30,
                anonymous_owner: None,
            },
            previous_secret_keys: Vec::new(),
            admin_password: None,
            oidc: OidcSettings {
                issuer_url: None,
                client_id: "pregonero".into(),
                client_secret: None,
                scopes: vec!["profile".into(), "email".into()],
                role_claims: vec![
                    "realm_access.roles".into(),
                    "resource_access.{client_id}.roles".into(),
                ],
                default_role: None,
                audience: None,
            },
            whatsapp: WhatsAppSettings {
                api_base_url: "https://graph.facebook.com/v21.0".into(),
                request_timeout_ms: 30_000,
                number_rate_per_sec: 77,
                number_burst: 2,
                recipient_interval_secs: 6,
                throughput_backoff_ms: 1_000,
                quality_backoff_secs: 60,
                opt_out_keywords: vec!["STOP".into(), "BAJA".into()],
                send_media_as: MediaDelivery::Upload,
            },
            whatsapp_web: WhatsAppWebSettings {
                lease_secs: 30,
                ack_timeout_secs: 45,
                max_restarts: 8,
                warmup_first_day: 20,
                warmup_daily_increase: 15,
                drop_alert_secs: default_drop_alert_secs(),
            },
            campaigns: CampaignSettings {
                tick_ms: 250,
                lookahead_secs: 2,
                lease_secs: 30,
                prepare_inline_max: default_prepare_inline_max(),
            },
            contacts: ContactsSettings {
                default_region: "ES".into(),
                max_import_bytes: 1024 * 1024 * 1024,
            },
            signals: SignalsSettings {
                default_plan: "free".into(),
                plans: BTreeMap::from([
                    (
                        "free".into(),
                        SignalPlan {
                            quota: 100,
                            priority: 4,
                        },
                    ),
                    (
                        "basic".into(),
                        SignalPlan {
                            quota: 1_000,
                            priority: 3,
                        },
                    ),
                    (
                        "pro".into(),
                        SignalPlan {
                            quota: 5_000,
                            priority: 2,
                        },
                    ),
                    (
                        "premium".into(),
                        SignalPlan {
                            quota: 20_000,
                            priority: 1,
                        },
                    ),
                ]),
                quota_period_days: 30,
                dedup_window_secs: 60,
                token_grace_hours: 24,
                max_body_bytes: 16 * 1024,
                snapshots: SnapshotSettings {
                    enabled: true,
                    chromium_path: None,
                    chart_url_template: "https://www.tradingview.com/chart/{chart_id}/".into(),
                    // Half the cores: rendering must leave the webhook's answers their CPU
                    // (with both of 2 cores rendering, their p99 went from ~13 to ~22 ms).
                    concurrency: std::thread::available_parallelism()
                        .map_or(1, |n| (n.get() / 2).max(1)),
                    timeout_secs: 30,
                    attempts: 3,
                    backoff_secs: 2,
                    ready_expression: "document.readyState === 'complete' && document.querySelectorAll('canvas').length > 0".into(),
                    settle_ms: 1_000,
                    width: 1280,
                    height: 720,
                },
            },
            trusted_proxies: Vec::new(),
            auth: AuthSettings {
                public_url: None,
                session_ttl_secs: 8 * 3600,
                login_max_failures: 5,
                login_lockout_secs: 900,
            },
            rate_limit: RateLimitSettings {
                enabled: true,
                per_key: LimitSettings {
                    per_second: 200,
                    burst: 1_000,
                },
                per_ip: LimitSettings {
                    per_second: 20,
                    burst: 60,
                },
                ingest: LimitSettings {
                    per_second: 2_000,
                    burst: 4_000,
                },
            },
            cors: CorsSettings {
                allowed_origins: Vec::new(),
                max_age_secs: 3600,
            },
        }
    }
}

/// A setting that failed to load or validate; the message names it.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

impl Settings {
    /// Loads defaults, then `file` (if any), then the environment, and validates the result.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError(format!(
                    "config file {} does not exist",
                    file.display()
                )));
            }
            figment = figment.merge(Toml::file(file));
        }
        figment = figment
            .merge(
                Env::raw()
                    .only(&["DATABASE_URL"])
                    .map(|_| "database_url".into()),
            )
            .merge(Env::raw().only(&["REDIS_URL"]).map(|_| "redis_url".into()))
            .merge(Env::prefixed("PREGONERO_").split("__").ignore(&["CONFIG"]));
        Self::extract(figment)
    }

    /// Defaults, then the TOML `text`, validated: what [`Settings::load`] does with a file,
    /// without the environment (the fuzz target's entry, and for tests).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Self::extract(
            Figment::from(Serialized::defaults(Settings::default())).merge(Toml::string(text)),
        )
    }

    fn extract(figment: Figment) -> Result<Self, ConfigError> {
        let settings: Settings = figment.extract().map_err(|e| {
            let mut msg = String::new();
            for err in e {
                let key = err.path.join(".");
                let env = format!("PREGONERO_{}", key.to_uppercase().replace('.', "__"));
                msg.push_str(&format!("setting `{key}` ({env}): {}; ", err.kind));
            }
            ConfigError(msg.trim_end_matches("; ").to_owned())
        })?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: &str| {
            let env = format!("PREGONERO_{}", key.to_uppercase().replace('.', "__"));
            Err(ConfigError(format!("setting `{key}` ({env}): {why}")))
        };
        if !self.signals.plans.contains_key(&self.signals.default_plan) {
            return bad(
                "signals.default_plan",
                "must name a plan defined under signals.plans",
            );
        }
        if self
            .delivery
            .body_retention_days
            .is_some_and(|d| d == 0 || d > 3650)
        {
            return bad(
                "delivery.body_retention_days",
                "must be between 1 and 3650 (or unset to keep bodies)",
            );
        }
        for (key, limit) in [
            ("rate_limit.per_key", self.rate_limit.per_key),
            ("rate_limit.per_ip", self.rate_limit.per_ip),
            ("rate_limit.ingest", self.rate_limit.ingest),
        ] {
            if limit.per_second == 0 || limit.burst == 0 {
                return bad(key, "per_second and burst must be at least 1");
            }
        }
        for origin in &self.cors.allowed_origins {
            let ok = (origin.starts_with("https://") || origin.starts_with("http://"))
                && !origin.ends_with('/')
                && origin.matches('/').count() == 2;
            if !ok {
                return bad(
                    "cors.allowed_origins",
                    "each origin is scheme://host[:port], without a path (`https://app.example.com`)",
                );
            }
        }
        if let Some(url) = &self.redis_url {
            use secrecy::ExposeSecret;
            let url = url.expose_secret();
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return bad("redis_url", "must start with redis:// or rediss://");
            }
        }
        if self.signals.quota_period_days == 0 || self.signals.quota_period_days > 366 {
            return bad("signals.quota_period_days", "must be between 1 and 366");
        }
        if self.signals.max_body_bytes < 256 || self.signals.max_body_bytes > 1024 * 1024 {
            return bad("signals.max_body_bytes", "must be between 256 and 1048576");
        }
        let snap = &self.signals.snapshots;
        if snap.concurrency == 0 || snap.concurrency > 32 {
            return bad("signals.snapshots.concurrency", "must be between 1 and 32");
        }
        if snap.timeout_secs == 0 || snap.timeout_secs > 300 {
            return bad(
                "signals.snapshots.timeout_secs",
                "must be between 1 and 300",
            );
        }
        if snap.attempts == 0 || snap.attempts > 10 {
            return bad("signals.snapshots.attempts", "must be between 1 and 10");
        }
        if !(64..=4096).contains(&snap.width) || !(64..=4096).contains(&snap.height) {
            return bad(
                "signals.snapshots.width",
                "width and height must be between 64 and 4096",
            );
        }
        if !snap.chart_url_template.starts_with("http://")
            && !snap.chart_url_template.starts_with("https://")
        {
            return bad(
                "signals.snapshots.chart_url_template",
                "must be an http(s) URL",
            );
        }
        if let Some(bad_proxy) = self
            .trusted_proxies
            .iter()
            .find(|p| crate::client_ip::parse_net(p).is_none())
        {
            return bad(
                "trusted_proxies",
                &format!("`{bad_proxy}` is not an IP address or a CIDR block"),
            );
        }
        if self.delivery.pacing_margin_ms > 500 {
            return bad(
                "delivery.pacing_margin_ms",
                "must be at most 500 (it widens every account's one-second window)",
            );
        }
        if self.delivery.pacing_horizon_ms < 1000 {
            return bad("delivery.pacing_horizon_ms", "must be at least 1000");
        }
        if self.delivery.concurrency == 0 {
            return bad("delivery.concurrency", "must be at least 1");
        }
        if self.media.store == MediaStoreKind::S3 && self.media.s3.bucket.is_empty() {
            return bad("media.s3.bucket", "is required when media.store is \"s3\"");
        }
        if !(1..=7 * 24 * 3600).contains(&self.media.link_ttl_secs) {
            return bad(
                "media.link_ttl_secs",
                "must be between 1 and 604800 (7 days)",
            );
        }
        if self.whatsapp.send_media_as == MediaDelivery::Link
            && self.media.store == MediaStoreKind::Local
            && self.auth.public_url.is_none()
        {
            return bad(
                "whatsapp.send_media_as",
                "\"link\" with the local media store needs auth.public_url, the address Meta fetches media from",
            );
        }
        if self.database_max_connections == 0 {
            return bad("database_max_connections", "must be at least 1");
        }
        if self.delivery.max_attempts == 0 {
            return bad("delivery.max_attempts", "must be at least 1");
        }
        if self.delivery.backoff_base_ms == 0
            || self.delivery.backoff_max_ms < self.delivery.backoff_base_ms
        {
            return bad(
                "delivery.backoff_base_ms",
                "must be at least 1 and not above delivery.backoff_max_ms",
            );
        }
        if self.delivery.poll_interval_ms == 0 {
            return bad("delivery.poll_interval_ms", "must be at least 1");
        }
        if self.delivery.lease_secs < 5 {
            return bad("delivery.lease_secs", "must be at least 5");
        }
        if reqwest::Url::parse(&self.telegram.api_base_url).is_err() {
            return bad("telegram.api_base_url", "must be an absolute URL");
        }
        if self.telegram.bot_rate_per_sec == 0
            || self.telegram.bot_burst == 0
            || self.telegram.chat_rate_per_sec == 0
            || self.telegram.group_rate_per_min == 0
        {
            return bad(
                "telegram.bot_rate_per_sec",
                "rates and bursts must be at least 1",
            );
        }
        if let Some(url) = &self.telegram.public_url
            && !reqwest::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
        {
            return bad("telegram.public_url", "must be an absolute http(s) URL");
        }
        if self.telegram.updates == UpdatesMode::Webhook && self.telegram.public_url.is_none() {
            return bad(
                "telegram.updates",
                "`webhook` needs telegram.public_url (or use `polling`)",
            );
        }
        if reqwest::Url::parse(&self.whatsapp.api_base_url).is_err() {
            return bad("whatsapp.api_base_url", "must be an absolute URL");
        }
        if self.whatsapp.number_rate_per_sec == 0
            || self.whatsapp.number_burst == 0
            || self.whatsapp.recipient_interval_secs == 0
        {
            return bad(
                "whatsapp.number_rate_per_sec",
                "rates, bursts and intervals must be at least 1",
            );
        }
        if self.campaigns.tick_ms == 0 || self.campaigns.lookahead_secs == 0 {
            return bad(
                "campaigns.tick_ms",
                "tick_ms and lookahead_secs must be at least 1",
            );
        }
        if self.campaigns.lease_secs < 5 {
            return bad("campaigns.lease_secs", "must be at least 5");
        }
        if !(1..=50).contains(&self.telegram.poll_timeout_secs) {
            return bad("telegram.poll_timeout_secs", "must be between 1 and 50");
        }
        if !self.alerts.plans.contains_key(&self.alerts.default_plan) {
            return bad(
                "alerts.default_plan",
                "must name a plan defined under alerts.plans",
            );
        }
        if !(1..=30 * 86_400).contains(&self.alerts.link_ttl_secs) {
            return bad(
                "alerts.link_ttl_secs",
                "must be between 1 second and 30 days",
            );
        }
        if !(1..=86_400).contains(&self.alerts.setup_token_ttl_secs) {
            return bad(
                "alerts.setup_token_ttl_secs",
                "must be between 1 second and 1 day",
            );
        }
        if self.alerts.token_ttl_days > 36_500 {
            return bad(
                "alerts.token_ttl_days",
                "must be at most 36500 (use 0 for tokens that never expire)",
            );
        }
        if self.schedule.tick_secs == 0 {
            return bad("schedule.tick_secs", "must be at least 1");
        }
        for (key, value) in [
            ("schedule.quota_reset_at", &self.schedule.quota_reset_at),
            ("schedule.backup_at", &self.schedule.backup_at),
            (
                "schedule.events_retention_at",
                &self.schedule.events_retention_at,
            ),
        ] {
            if chrono::NaiveTime::parse_from_str(value, "%H:%M").is_err() {
                return bad(key, "must be a UTC time of day as HH:MM");
            }
        }
        if self.events.buffer_capacity == 0 || self.events.max_request_events == 0 {
            return bad(
                "events.buffer_capacity",
                "buffer capacity and max_request_events must be at least 1",
            );
        }
        if self.events.max_request_events > self.events.buffer_capacity as usize {
            return bad(
                "events.max_request_events",
                "must not exceed events.buffer_capacity",
            );
        }
        if self.events.breaker_failures == 0 || self.events.breaker_successes == 0 {
            return bad(
                "events.breaker_failures",
                "breaker_failures and breaker_successes must be at least 1",
            );
        }
        if !(1..=3_600).contains(&self.events.breaker_open_secs) {
            return bad("events.breaker_open_secs", "must be between 1 and 3600");
        }
        if !(1..=36_500).contains(&self.events.retention_days) {
            return bad("events.retention_days", "must be between 1 and 36500");
        }
        if let Some(url) = &self.database_url
            && !(url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://"))
        {
            return bad(
                "database_url",
                "must start with sqlite:, postgres:// or postgresql://",
            );
        }
        if let Some(issuer) = &self.oidc.issuer_url {
            if !(issuer.starts_with("https://") || issuer.starts_with("http://")) {
                return bad("oidc.issuer_url", "must be an http(s) URL");
            }
            if self.oidc.client_secret.is_none() {
                return bad(
                    "oidc.client_secret",
                    "is required when oidc.issuer_url is set",
                );
            }
        }
        if let Some(role) = &self.oidc.default_role
            && !crate::domain::ROLES.contains(&role.as_str())
        {
            return bad("oidc.default_role", "must be admin, operator or viewer");
        }
        if crate::domain::region(&self.contacts.default_region).is_none() {
            return bad(
                "contacts.default_region",
                "must be an ISO 3166 region code such as ES",
            );
        }
        if self.auth.login_max_failures == 0 {
            return bad("auth.login_max_failures", "must be at least 1");
        }
        Ok(())
    }

    /// This server's base URL as browsers see it.
    pub fn public_base_url(&self) -> String {
        self.auth
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}:{}", self.host, self.port))
            .trim_end_matches('/')
            .to_owned()
    }

    /// The database URL in effect (the SQLite file under `data_dir` unless configured).
    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("pregonero.db").display()
            )
        })
    }

    /// How this process reads Telegram updates, with `auto` resolved.
    pub fn updates_mode(&self) -> UpdatesMode {
        match (self.telegram.updates, &self.telegram.public_url) {
            (UpdatesMode::Auto, Some(_)) => UpdatesMode::Webhook,
            (UpdatesMode::Auto, None) => UpdatesMode::Polling,
            (mode, _) => mode,
        }
    }

    /// The signal limits of a plan (the default plan's when `plan` is unknown or unset).
    pub fn signal_plan(&self, plan: Option<&str>) -> (&str, &SignalPlan) {
        plan.and_then(|p| self.signals.plans.get_key_value(p))
            .or_else(|| self.signals.plans.get_key_value(&self.signals.default_plan))
            .map(|(name, plan)| (name.as_str(), plan))
            .unwrap_or(("free", &FALLBACK_PLAN))
    }

    /// Daily alert quota of a plan (the default plan's when `plan` is unknown or unset).
    pub fn plan_quota(&self, plan: Option<&str>) -> u32 {
        plan.and_then(|p| self.alerts.plans.get(p))
            .or_else(|| self.alerts.plans.get(&self.alerts.default_plan))
            .map_or(10, |p| p.daily_quota)
    }

    /// Whether the configured database is PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        self.database_url().starts_with("postgres")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        assert!(Settings::default().validate().is_ok());
    }

    #[test]
    fn lifetimes_are_bounded_so_expiry_arithmetic_cannot_overflow() {
        let mut s = Settings::default();
        s.alerts.token_ttl_days = 36_501;
        assert!(s.validate().is_err());
        let mut s = Settings::default();
        s.alerts.link_ttl_secs = u64::MAX;
        let err = s.validate().expect_err("must fail").to_string();
        assert!(err.contains("PREGONERO_ALERTS__LINK_TTL_SECS"), "{err}");
        let mut s = Settings::default();
        s.alerts.setup_token_ttl_secs = 86_401;
        assert!(s.validate().is_err());
    }

    #[test]
    fn zero_concurrency_names_the_setting() {
        let mut s = Settings::default();
        s.delivery.concurrency = 0;
        let err = s.validate().expect_err("must fail").to_string();
        assert!(err.contains("PREGONERO_DELIVERY__CONCURRENCY"), "{err}");
    }
}
