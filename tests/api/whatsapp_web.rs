//! WhatsApp Web sessions against a scripted phone plugged in where the protocol library plugs in
//! (`whatsapp_web::Engine`), emitting the library's events as WhatsApp does (CHANNELS.md §3):
//! six QR refs, the first living longer than the rest, then an exhausted QR; pair-success
//! followed by a 515 restart; 401 logouts, 440 replacements, drops; server acks, delivery and
//! read receipts, refusals; inbound texts. The session's device is saved through the real store,
//! as the library does at pairing, so restarts are tested on the database.
use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use fakes::telegram::FakeTelegramConfig;
use futures::future::BoxFuture;
use pregonero::{
    channels::{
        ChannelError, OutboundMessage,
        whatsapp_web::{DbStore, Engine, Link, Seen, WaEvent},
    },
    startup::RunOptions,
};
use reqwest::Method;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc::UnboundedSender};
use whatsapp_rust::{Jid, wacore::store::traits::DeviceStore};

use crate::{
    helpers::{Backend, TestApp, spawn_app_options},
    wa_server::{Answer, PHONE_USER, PUSH_NAME, WaServer},
};

/// What the phone answers to a send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Acks {
    /// Server ack, then delivered, then read.
    Full,
    /// The server's ack only (one tick): the recipient's phone never reports.
    ServerOnly,
    /// The server refuses the message (error 463).
    Refuse,
    /// Nothing at all: the connection is a zombie.
    Silent,
}

/// One send as the phone saw it.
#[derive(Clone, Debug)]
struct Sent {
    at: Instant,
    to: String,
    text: String,
    /// An attached file: its type, size and name.
    media: Option<(String, usize, String)>,
}

#[derive(Default)]
struct PhoneState {
    events: Option<UnboundedSender<WaEvent>>,
    sent: Vec<Sent>,
    starts: usize,
    qrs: Vec<String>,
    codes: Vec<String>,
    logouts: usize,
    /// Connections running now, and the most at once (one device must never run twice).
    active: usize,
    max_active: usize,
}

/// The scripted phone and WhatsApp's servers behind it.
#[derive(Clone)]
struct Phone {
    state: Arc<Mutex<PhoneState>>,
    scanned: Arc<Notify>,
    acks: Arc<Mutex<Acks>>,
    qr_first: Duration,
    qr_next: Duration,
    number: &'static str,
}

impl Phone {
    fn new(qr_first: Duration, qr_next: Duration) -> Self {
        Self {
            state: Default::default(),
            scanned: Arc::new(Notify::new()),
            acks: Arc::new(Mutex::new(Acks::Full)),
            qr_first,
            qr_next,
            number: "+34611222333",
        }
    }

    fn options(&self) -> RunOptions {
        RunOptions {
            whatsapp_web: Arc::new(self.clone()),
            ..RunOptions::default()
        }
    }

    fn st(&self) -> std::sync::MutexGuard<'_, PhoneState> {
        self.state.lock().expect("lock")
    }

    /// The owner scans the QR (or types the code) on the phone.
    fn scan(&self) {
        self.scanned.notify_one();
    }

    /// WhatsApp sends `event` on the current connection.
    fn emit(&self, event: WaEvent) {
        let tx = self.st().events.clone().expect("a connection");
        tx.send(event).expect("the session listens");
    }

    fn set_acks(&self, acks: Acks) {
        *self.acks.lock().expect("lock") = acks;
    }

    fn sent(&self) -> Vec<Sent> {
        self.st().sent.clone()
    }

    /// Waits until the phone has seen `n` sends.
    async fn wait_sent(&self, n: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while self.sent().len() < n {
            assert!(
                Instant::now() < deadline,
                "only {} of {n} sent",
                self.sent().len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What the phone does when linked: the library saves the device with its number, then
    /// WhatsApp asks for a restart (515) and the client logs in again.
    async fn link(&self, store: &DbStore, events: &UnboundedSender<WaEvent>) {
        store.create().await.expect("create device");
        let mut device = store.load().await.expect("load").expect("device");
        device.pn = Some(Jid::pn(self.number.trim_start_matches('+')));
        device.push_name = "Tienda Ana".into();
        store.save(&device).await.expect("save device");
        let _ = events.send(WaEvent::Paired {
            phone: self.number.into(),
        });
        let _ = events.send(WaEvent::Disconnected {
            detail: "stream error 515: restart required".into(),
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let _ = events.send(WaEvent::Connected);
    }
}

impl Engine for Phone {
    fn start(
        &self,
        store: DbStore,
        pair_phone: Option<String>,
        events: UnboundedSender<WaEvent>,
    ) -> BoxFuture<'static, anyhow::Result<Arc<dyn Link>>> {
        let phone = self.clone();
        Box::pin(async move {
            let run = {
                let mut s = phone.st();
                s.starts += 1;
                s.active += 1;
                s.max_active = s.max_active.max(s.active);
                s.events = Some(events.clone());
                s.starts
            };
            let paired = store.load().await?.is_some_and(|d| d.pn.is_some());
            let (p, ev) = (phone.clone(), events.clone());
            let task = tokio::spawn(async move {
                if paired {
                    let _ = ev.send(WaEvent::Connected);
                    return;
                }
                if let Some(for_phone) = pair_phone {
                    assert!(for_phone.starts_with('+'), "{for_phone}");
                    // WhatsApp keeps sending QR refs while a code pairing runs.
                    let _ = ev.send(WaEvent::Qr {
                        code: format!("2@ref-{run}-code-mode,bm9pc2U=,aWRlbnRpdHk=,YWR2,1"),
                        timeout: p.qr_first,
                    });
                    let code = format!("PRGN{run:04}");
                    p.st().codes.push(code.clone());
                    let _ = ev.send(WaEvent::PairCode {
                        code,
                        timeout: Duration::from_secs(180),
                    });
                    p.scanned.notified().await;
                    p.link(&store, &ev).await;
                    return;
                }
                for i in 0..6 {
                    let code = format!("2@ref-{run}-{i},bm9pc2U=,aWRlbnRpdHk=,YWR2,1");
                    p.st().qrs.push(code.clone());
                    let timeout = if i == 0 { p.qr_first } else { p.qr_next };
                    let _ = ev.send(WaEvent::Qr { code, timeout });
                    tokio::select! {
                        _ = tokio::time::sleep(timeout) => {}
                        _ = p.scanned.notified() => {
                            p.link(&store, &ev).await;
                            return;
                        }
                    }
                }
                let _ = ev.send(WaEvent::QrExhausted);
            });
            Ok(Arc::new(PhoneLink {
                phone,
                events,
                task: Mutex::new(Some(task)),
                next_id: Mutex::new(0),
            }) as Arc<dyn Link>)
        })
    }
}

struct PhoneLink {
    phone: Phone,
    events: UnboundedSender<WaEvent>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    next_id: Mutex<u64>,
}

impl Link for PhoneLink {
    fn send<'a>(
        &'a self,
        to: &'a str,
        msg: &'a OutboundMessage,
    ) -> BoxFuture<'a, Result<String, ChannelError>> {
        Box::pin(async move {
            let id = {
                let mut n = self.next_id.lock().expect("lock");
                *n += 1;
                format!("3EB0{:016X}", (*n) ^ (self.phone.st().starts as u64) << 48)
            };
            self.phone.st().sent.push(Sent {
                at: Instant::now(),
                to: to.to_owned(),
                text: msg.text.clone(),
                media: msg
                    .media
                    .as_ref()
                    .map(|m| (m.content_type.clone(), m.bytes.len(), m.filename.clone())),
            });
            let acks = *self.phone.acks.lock().expect("lock");
            let (ev, mid) = (self.events.clone(), id.clone());
            tokio::spawn(async move {
                let pause = || tokio::time::sleep(Duration::from_millis(10));
                match acks {
                    Acks::Silent => {}
                    Acks::Refuse => {
                        pause().await;
                        let _ = ev.send(WaEvent::ServerAck {
                            id: mid,
                            error: Some("463".into()),
                        });
                    }
                    Acks::ServerOnly => {
                        pause().await;
                        let _ = ev.send(WaEvent::ServerAck {
                            id: mid,
                            error: None,
                        });
                    }
                    Acks::Full => {
                        pause().await;
                        let _ = ev.send(WaEvent::ServerAck {
                            id: mid.clone(),
                            error: None,
                        });
                        pause().await;
                        let _ = ev.send(WaEvent::Receipt {
                            ids: vec![mid.clone()],
                            seen: Seen::Delivered,
                        });
                        pause().await;
                        let _ = ev.send(WaEvent::Receipt {
                            ids: vec![mid],
                            seen: Seen::Read,
                        });
                    }
                }
            });
            Ok(id)
        })
    }

    fn stop(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some(task) = self.task.lock().expect("lock").take() {
                task.abort();
                self.phone.st().active -= 1;
            }
        })
    }

    fn logout(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.phone.st().logouts += 1;
            self.stop().await;
        })
    }
}

async fn web_app(
    backend: Backend,
    phone: &Phone,
    tweak: impl FnOnce(&mut pregonero::config::Settings),
) -> TestApp {
    spawn_app_options(
        backend,
        FakeTelegramConfig::default(),
        tweak,
        phone.options(),
    )
    .await
}

async fn create_number(app: &TestApp, extra: Value) -> String {
    let mut body = json!({"kind": "whatsapp_web", "name": "Tienda"});
    for (k, v) in extra.as_object().expect("object") {
        body[k] = v.clone();
    }
    let (status, c) = app.api(Method::POST, "channels", Some(body)).await;
    assert_eq!(status, 201, "{c}");
    c["id"].as_str().expect("id").to_owned()
}

/// Polls the session until `done` holds.
async fn wait_session(app: &TestApp, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, v) = app.get_json(&format!("channels/{id}/session")).await;
        assert_eq!(status, 200, "{v}");
        if done(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "session never {what}: {v:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn connection_status(app: &TestApp, query: &str) -> (u16, Value) {
    let req = app
        .client
        .get(format!("{}/connection-status{query}", app.address))
        .bearer_auth(&app.api_key);
    crate::helpers::status_and_json(req).await
}

async fn store_rows(app: &TestApp, channel: &str) -> Vec<String> {
    let db = app.inspect_db().await;
    let backend = db.get_database_backend();
    let sql = match backend {
        // The session's keys (`meta` holds its last view and when it was linked).
        sea_orm::DbBackend::Postgres => {
            "SELECT v FROM wa_session_store WHERE channel_id = $1 AND ns <> 'meta'"
        }
        _ => "SELECT v FROM wa_session_store WHERE channel_id = ? AND ns <> 'meta'",
    };
    db.query_all_raw(Statement::from_sql_and_values(
        backend,
        sql,
        [channel.into()],
    ))
    .await
    .expect("rows")
    .iter()
    .map(|r| r.try_get::<String>("", "v").expect("v"))
    .collect()
}

async fn pairs_by_qr_and_reconnects_after_a_restart_without_one(backend: Backend) {
    let phone = Phone::new(Duration::from_millis(2500), Duration::from_millis(1500));
    let mut app = web_app(backend, &phone, |_| {}).await;
    let id = create_number(&app, json!({})).await;

    let first = wait_session(&app, &id, "showed a QR", |v| {
        v["state"] == "pairing" && v["qr"].is_string()
    })
    .await;
    assert!(
        first["qr_url"]
            .as_str()
            .is_some_and(|u| u.starts_with("data:image/svg+xml;base64,")),
        "{first}"
    );
    assert!(first["expires_at"].is_string(), "{first}");
    // The refs rotate: a new QR replaces the first when it expires.
    let qr1 = first["qr"].clone();
    let second = wait_session(&app, &id, "rotated its QR", |v| {
        v["qr"].is_string() && v["qr"] != qr1
    })
    .await;
    assert_eq!(second["state"], "pairing");
    let (status, seed) = connection_status(&app, "").await;
    assert_eq!(status, 200, "{seed}");
    assert_eq!(
        (&seed["connected"], &seed["state"]),
        (&json!(false), &json!("pairing")),
        "{seed}"
    );
    assert!(
        seed["qrUrl"]
            .as_str()
            .is_some_and(|u| u.starts_with("data:image/svg")),
        "{seed}"
    );

    phone.scan();
    let on = wait_session(&app, &id, "connected", |v| v["state"] == "connected").await;
    assert_eq!(on["phone"], phone.number, "{on}");
    assert_eq!(on["push_name"], "Tienda Ana", "{on}");
    assert!(on["qr"].is_null() && on["qr_url"].is_null(), "{on}");
    let (_, seed) = connection_status(&app, &format!("?channel_id={id}")).await;
    assert_eq!(
        (&seed["connected"], &seed["phone"], &seed["qrUrl"]),
        (&json!(true), &json!(phone.number), &Value::Null),
        "{seed}"
    );
    let (status, other) =
        connection_status(&app, "?channel_id=00000000-0000-0000-0000-000000000000").await;
    assert_eq!(
        (status, &other["error"]),
        (404, &json!("channel-not-found")),
        "{other}"
    );

    // The device lives in the database, encrypted: nothing names the number or the name.
    let rows = store_rows(&app, &id).await;
    assert!(!rows.is_empty(), "the device is stored");
    assert!(
        rows.iter()
            .all(|v| v.starts_with("v1:") && !v.contains("611222333") && !v.contains("Tienda")),
        "{rows:?}"
    );

    // A restart reconnects the stored device: no new QR.
    let qrs_before = phone.st().qrs.len();
    app.stop_server().await;
    app.start_server().await;
    // The stopped server gave its lease back, so the view it stored is shown as `starting`
    // until the new server drives the session (`a_session_nobody_runs_is_not_shown_connected`);
    // the moment between the new server's lease and its first word is waited out here.
    let again = wait_session(&app, &id, "reconnected", |v| {
        v["state"] == "connected" && phone.st().starts == 2
    })
    .await;
    assert_eq!(again["phone"], phone.number, "{again}");
    assert_eq!(phone.st().qrs.len(), qrs_before, "no QR after a restart");
    assert_eq!(phone.st().starts, 2);
}

async fn an_unscanned_qr_expires_and_a_code_pairs_instead(backend: Backend) {
    let phone = Phone::new(Duration::from_millis(150), Duration::from_millis(60));
    let app = web_app(backend, &phone, |_| {}).await;
    let id = create_number(&app, json!({})).await;
    let failed = wait_session(&app, &id, "gave up on the QR", |v| v["state"] == "failed").await;
    assert!(
        failed["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("qr-expired")),
        "{failed}"
    );
    assert_eq!(phone.st().qrs.len(), 6, "six refs, then none");
    assert_eq!(phone.st().starts, 1, "an expired QR waits for its owner");

    let path = format!("channels/{id}/session/restart");
    let (status, bad) = app
        .api(Method::POST, &path, Some(json!({"pair_phone": "call me"})))
        .await;
    assert_eq!(
        (status, &bad["error"]),
        (422, &json!("invalid-pair-phone")),
        "{bad}"
    );
    let (status, _) = app
        .api(
            Method::POST,
            &path,
            Some(json!({"pair_phone": "+34 611 222 333"})),
        )
        .await;
    assert_eq!(status, 202);
    let pairing = wait_session(&app, &id, "showed a code", |v| v["pair_code"].is_string()).await;
    assert_eq!(pairing["pair_code"], "PRGN0002", "{pairing}");
    assert!(pairing["qr"].is_null(), "{pairing}");
    let (_, seed) = connection_status(&app, "").await;
    assert_eq!(seed["pairCode"], "PRGN0002", "{seed}");
    phone.scan();
    wait_session(&app, &id, "connected", |v| v["state"] == "connected").await;

    // Not a session channel.
    let bot = app.create_bot(None).await;
    let (status, v) = app.get_json(&format!("channels/{bot}/session")).await;
    assert_eq!(
        (status, &v["error"]),
        (409, &json!("channel-has-no-session")),
        "{v}"
    );
    // A number created to pair by code starts with a code.
    let (status, bad) = app
        .api(
            Method::POST,
            "channels",
            Some(json!({"kind": "whatsapp_web", "name": "x", "pair_phone": "12"})),
        )
        .await;
    assert_eq!(
        (status, &bad["error"]),
        (422, &json!("invalid-pair-phone")),
        "{bad}"
    );
}

async fn connected_number(app: &TestApp, phone: &Phone, limits: Value) -> String {
    let id = create_number(app, json!({"limits": limits})).await;
    wait_session(app, &id, "showed a QR", |v| v["qr"].is_string()).await;
    phone.scan();
    wait_session(app, &id, "connected", |v| v["state"] == "connected").await;
    id
}

async fn send(app: &TestApp, channel: &str, to: &str, text: &str) -> String {
    let (status, m) = app
        .api(
            Method::POST,
            "messages",
            Some(json!({"channel_id": channel, "to": to, "text": text})),
        )
        .await;
    assert_eq!(status, 202, "{m}");
    m["id"].as_str().expect("id").to_owned()
}

const NO_GAP: fn() -> Value =
    || json!({"min_gap_secs": 0, "max_gap_secs": 0, "per_recipient_interval_secs": 1});

async fn drops_logouts_replacements_and_zombies(backend: Backend) {
    let phone = Phone::new(Duration::from_secs(60), Duration::from_secs(20));
    let app = web_app(backend, &phone, |s| s.whatsapp_web.ack_timeout_secs = 1).await;
    let id = connected_number(&app, &phone, NO_GAP()).await;

    // A drop: the library reconnects by itself.
    phone.emit(WaEvent::Disconnected {
        detail: "read error".into(),
    });
    wait_session(&app, &id, "reconnecting", |v| v["state"] == "reconnecting").await;
    phone.emit(WaEvent::Connected);
    wait_session(&app, &id, "connected again", |v| v["state"] == "connected").await;

    // A zombie: sends leave but nothing is acknowledged. The session restarts on its own.
    phone.set_acks(Acks::Silent);
    let starts = phone.st().starts;
    send(&app, &id, "+34600000001", "¿hola?").await;
    wait_session(&app, &id, "restarted the zombie", |v| {
        v["state"] == "connected" && v["awaiting_ack"] == 0
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while phone.st().starts == starts {
        assert!(Instant::now() < deadline, "the zombie was never restarted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    phone.set_acks(Acks::Full);
    wait_session(&app, &id, "connected after the zombie", |v| {
        v["state"] == "connected"
    })
    .await;

    // 440: another client took over. We do not fight it; the owner restarts it.
    let starts = phone.st().starts;
    phone.emit(WaEvent::Replaced);
    let replaced = wait_session(&app, &id, "replaced", |v| v["state"] == "replaced").await;
    assert!(
        replaced["detail"]
            .as_str()
            .is_some_and(|d| d.contains("another client")),
        "{replaced}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        phone.st().starts,
        starts,
        "a replaced session does not reconnect by itself"
    );
    let (status, _) = app
        .api(
            Method::POST,
            &format!("channels/{id}/session/restart"),
            None,
        )
        .await;
    assert_eq!(status, 202);
    wait_session(&app, &id, "taken back", |v| v["state"] == "connected").await;

    // 401: the device was removed on the phone. Its keys are wiped; sends fail clearly.
    phone.emit(WaEvent::LoggedOut {
        detail: "401".into(),
    });
    let out = wait_session(&app, &id, "logged out", |v| v["state"] == "logged_out").await;
    assert!(out["phone"].is_null(), "{out}");
    assert!(
        store_rows(&app, &id).await.is_empty(),
        "a logged-out device's keys are wiped"
    );
    // A message for a logged-out number waits (not an attempt) and goes once it is paired again.
    let m = send(&app, &id, "+34600000002", "hola").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, waiting) = app.get_json(&format!("messages/{m}")).await;
    assert_eq!(
        (&waiting["status"], &waiting["attempt_count"]),
        (&json!("queued"), &json!(0)),
        "{waiting}"
    );
    // Pair again, then unlink from here.
    let (status, _) = app
        .api(
            Method::POST,
            &format!("channels/{id}/session/restart"),
            None,
        )
        .await;
    assert_eq!(status, 202);
    wait_session(&app, &id, "pairing again", |v| v["qr"].is_string()).await;
    phone.scan();
    wait_session(&app, &id, "connected", |v| v["state"] == "connected").await;
    app.wait_for_status(&m, "sent", Duration::from_secs(20))
        .await;
    let (status, _) = app
        .api(Method::POST, &format!("channels/{id}/session/logout"), None)
        .await;
    assert_eq!(status, 202);
    wait_session(&app, &id, "unlinked", |v| v["state"] == "logged_out").await;
    assert_eq!(phone.st().logouts, 1);
    assert!(store_rows(&app, &id).await.is_empty());

    // Deleting a linked number ends its connection and deletes its keys.
    let (status, _) = app
        .api(
            Method::POST,
            &format!("channels/{id}/session/restart"),
            None,
        )
        .await;
    assert_eq!(status, 202);
    wait_session(&app, &id, "pairing again", |v| v["qr"].is_string()).await;
    phone.scan();
    wait_session(&app, &id, "connected", |v| v["state"] == "connected").await;
    assert!(!store_rows(&app, &id).await.is_empty());
    let (status, _) = app
        .api(Method::DELETE, &format!("channels/{id}"), None)
        .await;
    assert_eq!(status, 204);
    assert!(
        store_rows(&app, &id).await.is_empty(),
        "keys deleted with the channel"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while phone.st().active > 0 {
        assert!(
            Instant::now() < deadline,
            "the connection outlived its channel"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The provider statuses a message went through, in order.
fn statuses(m: &Value) -> Vec<String> {
    m["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["kind"] == "status")
        .filter_map(|e| e["outcome"].as_str().map(str::to_owned))
        .collect()
}

async fn wait_events(app: &TestApp, id: &str, done: impl Fn(&[String]) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, m) = app.get_json(&format!("messages/{id}")).await;
        if done(&statuses(&m)) {
            return m;
        }
        assert!(Instant::now() < deadline, "message never got there: {m:#}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A message WhatsApp only acks (one tick) stays `sent`, never delivered; one it refuses (463) is
/// `failed`. `one_tick` and `refuse` make the phone answer so from the next send on.
async fn one_tick_then_refused(
    app: &TestApp,
    id: &str,
    one_tick: impl FnOnce(),
    refuse: impl FnOnce(),
) {
    one_tick();
    let sent = send(app, id, "+34600000002", "dos").await;
    app.wait_for_status(&sent, "sent", Duration::from_secs(20))
        .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (_, m) = app.get_json(&format!("messages/{sent}")).await;
    assert_eq!(m["status"], "sent", "{m}");
    assert!(
        statuses(&m).is_empty(),
        "a server ack is not a delivery: {m}"
    );

    refuse();
    let refused = send(app, id, "+34600000003", "tres").await;
    let m = app
        .wait_for_status(&refused, "failed", Duration::from_secs(20))
        .await;
    assert_eq!(m["last_error_code"], "whatsapp-web-refused", "{m}");
}

async fn receipts_refusals_and_opt_out(backend: Backend) {
    let phone = Phone::new(Duration::from_secs(60), Duration::from_secs(20));
    let app = web_app(backend, &phone, |_| {}).await;
    let id = connected_number(&app, &phone, NO_GAP()).await;

    let read = send(&app, &id, "+34600000001", "uno").await;
    let m = wait_events(&app, &read, |seen| seen.contains(&"read".to_owned())).await;
    assert!(
        m["provider_message_id"]
            .as_str()
            .is_some_and(|p| p.starts_with("3EB0")),
        "{m}"
    );
    assert_eq!(statuses(&m), ["delivered", "read"], "{m}");

    one_tick_then_refused(
        &app,
        &id,
        || phone.set_acks(Acks::ServerOnly),
        || phone.set_acks(Acks::Refuse),
    )
    .await;
    // A burst of refusals is a sign of a ban coming: the owner is warned.
    for i in 0..4 {
        send(&app, &id, &format!("+3460000010{i}"), "otra").await;
    }
    let warned = wait_session(&app, &id, "warned of a ban", |v| v["warning"].is_string()).await;
    assert!(
        warned["warning"]
            .as_str()
            .is_some_and(|w| w.starts_with("ban-risk")),
        "{warned}"
    );
    assert_eq!(warned["state"], "connected", "{warned}");
    phone.set_acks(Acks::Full);

    // Media: an image with its caption, a document with its name.
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend((0..20_000u32).map(|i| (i % 251) as u8));
    let mut ids = Vec::new();
    for (name, kind, body) in [
        ("oferta.png", "image/png", png),
        (
            "catalogo.pdf",
            "application/pdf",
            b"%PDF-1.4\n%...\n".repeat(200),
        ),
    ] {
        let upload = app
            .client
            .post(format!("{}/api/v1/media?filename={name}", app.address))
            .bearer_auth(&app.api_key)
            .header("content-type", kind)
            .body(body)
            .send()
            .await
            .expect("upload");
        assert_eq!(upload.status().as_u16(), 201);
        let media: Value = upload.json().await.expect("json");
        let (status, m) = app
            .api(Method::POST, "messages", Some(json!({"channel_id": id, "to": "+34600000200", "text": format!("mira {name}"), "media_id": media["id"]})))
            .await;
        assert_eq!(status, 202, "{m}");
        ids.push(m["id"].as_str().expect("id").to_owned());
    }
    for m in &ids {
        app.wait_for_status(m, "sent", Duration::from_secs(20))
            .await;
    }
    // (Either may leave first: one waits for the other's per-recipient interval.)
    let mut files: Vec<_> = phone
        .sent()
        .into_iter()
        .filter_map(|s| s.media.map(|m| (s.text, m.0, m.2, m.1 > 1000)))
        .collect();
    files.sort();
    assert_eq!(
        files,
        vec![
            (
                "mira catalogo.pdf".to_owned(),
                "application/pdf".to_owned(),
                "catalogo.pdf".to_owned(),
                true
            ),
            (
                "mira oferta.png".to_owned(),
                "image/png".to_owned(),
                "oferta.png".to_owned(),
                true
            ),
        ]
    );

    // BAJA from a contact opts them out.
    opts_out(&app, "+34600000004", || async {
        phone.emit(WaEvent::Inbound {
            from: "+34600000004".into(),
            text: "BAJA".into(),
        });
    })
    .await;
}

/// A contact `phone` who writes BAJA (`write` makes them) is opted out.
async fn opts_out<F: std::future::Future<Output = ()>>(
    app: &TestApp,
    phone: &str,
    write: impl FnOnce() -> F,
) {
    let (status, c) = app
        .api(
            Method::POST,
            "contacts",
            Some(json!({"phone": phone, "name": "Luz"})),
        )
        .await;
    assert_eq!(status, 201, "{c}");
    write().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, c) = app
            .get_json(&format!("contacts/{}", c["id"].as_str().expect("id")))
            .await;
        if c["opted_out"] == true {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "BAJA from {phone} did not opt the contact out: {c}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A 200-recipient campaign over a Web session with 50–120 ms gaps and a cap of 150 a day,
/// measured from the phone's send times.
async fn a_campaign_keeps_the_gaps_and_the_daily_cap(backend: Backend) {
    let phone = Phone::new(Duration::from_secs(60), Duration::from_secs(20));
    let mut app = web_app(backend, &phone, |s| s.whatsapp_web.warmup_first_day = 0).await;
    let id = connected_number(
        &app,
        &phone,
        json!({"min_gap_secs": 0.05, "max_gap_secs": 0.12, "per_day": 150, "per_recipient_interval_secs": 1}),
    )
    .await;
    let mut csv = String::from("phone,name\n");
    for i in 0..200 {
        csv.push_str(&format!("+34600{i:06},N{i}\n"));
    }
    let (status, imp) = app
        .post_raw("contacts/imports", "text/csv", csv.into_bytes())
        .await;
    assert!(status == 201 || status == 202, "{imp}");
    let import = format!(
        "contacts/imports/{}",
        imp["id"].as_str().expect("import id")
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, i) = app.get_json(&import).await;
        if i["imported"].as_i64() == Some(200) {
            break;
        }
        assert!(Instant::now() < deadline, "import: {i}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, c) = app
        .api(Method::POST, "campaigns", Some(json!({"name": "Web", "channel_id": id, "body": "Hola {{ nombre }}", "start": true})))
        .await;
    assert_eq!(status, 201, "{c}");
    phone.wait_sent(150, Duration::from_secs(60)).await;
    // The cap holds: nothing more leaves today.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let sent = phone.sent();
    assert_eq!(sent.len(), 150, "the daily cap");
    let recipients: std::collections::HashSet<_> = sent.iter().map(|s| s.to.clone()).collect();
    assert_eq!(recipients.len(), 150, "each recipient once");
    assert!(
        sent.iter().all(|s| s.text.starts_with("Hola N")),
        "personalised"
    );
    let mut gaps: Vec<u128> = sent
        .windows(2)
        .map(|w| (w[1].at - w[0].at).as_millis())
        .collect();
    gaps.sort_unstable();
    let (min, median, max) = (gaps[0], gaps[gaps.len() / 2], gaps[gaps.len() - 1]);
    eprintln!(
        "whatsapp web gaps over {} sends: min {min} ms, median {median} ms, max {max} ms",
        sent.len()
    );
    // Departures are held to 50 ms apart; a send that reached the phone late shortens the next
    // gap as the phone measures it, never the schedule: any ten sends in a row span at least
    // nine gaps, less that one send's lateness (50 ms allowed on this noisy machine).
    let at: Vec<Instant> = sent.iter().map(|s| s.at).collect();
    for w in at.windows(10) {
        let span = w[9] - w[0];
        assert!(
            span >= Duration::from_millis(9 * 50 - 50),
            "ten sends within {span:?}: gaps {gaps:?}"
        );
    }
    assert!(min >= 20, "gaps {gaps:?}");
    assert!((50..=125).contains(&median), "median {median} ms");
    let distinct: std::collections::HashSet<_> = gaps.iter().collect();
    assert!(
        distinct.len() > 20,
        "gaps are drawn afresh, never fixed: {gaps:?}"
    );
    let (_, campaign) = app
        .get_json(&format!("campaigns/{}", c["id"].as_str().expect("id")))
        .await;
    assert_eq!(
        campaign["status"], "running",
        "the rest waits for tomorrow: {campaign}"
    );
    let (_, session) = app.get_json(&format!("channels/{id}/session")).await;
    assert_eq!(
        (&session["sent_today"], &session["cap_today"]),
        (&json!(150), &json!(150)),
        "{session}"
    );

    // The day's count survives a restart: it comes from the ledger, not from memory.
    app.stop_server().await;
    app.start_server().await;
    wait_session(&app, &id, "reconnected", |v| v["state"] == "connected").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(phone.sent().len(), 150, "the cap holds across a restart");
    let (_, session) = app.get_json(&format!("channels/{id}/session")).await;
    assert_eq!(session["sent_today"], 150, "{session}");
}

/// A number logged out mid-campaign pauses the campaign (nothing fails meanwhile); paired again
/// and resumed, it finishes with every recipient sent once.
async fn a_logout_pauses_the_numbers_campaigns(backend: Backend) {
    let phone = Phone::new(Duration::from_secs(60), Duration::from_secs(20));
    let app = web_app(backend, &phone, |_| {}).await;
    // The owner's alerts chat, where they hear that the number went down.
    let bot = app.create_bot(None).await;
    app.linked_integration(&bot, 5150).await;
    let id = connected_number(
        &app,
        &phone,
        json!({"min_gap_secs": 0.15, "max_gap_secs": 0.25, "per_recipient_interval_secs": 1}),
    )
    .await;
    for i in 0..20 {
        let (status, c) = app
            .api(
                Method::POST,
                "contacts",
                Some(json!({"phone": format!("+34601{i:06}"), "name": format!("C{i}")})),
            )
            .await;
        assert_eq!(status, 201, "{c}");
    }
    let (status, c) = app
        .api(Method::POST, "campaigns", Some(json!({"name": "Web", "channel_id": id, "body": "Hola {{ nombre }}", "start": true})))
        .await;
    assert_eq!(status, 201, "{c}");
    let campaign = format!("campaigns/{}", c["id"].as_str().expect("id"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while phone.sent().len() < 3 {
        assert!(Instant::now() < deadline, "the campaign never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    phone.emit(WaEvent::LoggedOut {
        detail: "401".into(),
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let paused = loop {
        let (_, c) = app.get_json(&campaign).await;
        if c["status"] == "paused" {
            break c;
        }
        assert!(
            Instant::now() < deadline,
            "the campaign was not paused: {c}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        paused["status_detail"]
            .as_str()
            .is_some_and(|d| d.contains("logged out")),
        "{paused}"
    );
    let told = app.wait_for_text(5150, "cannot send").await;
    assert!(
        told.contains("Tienda") && told.contains("logged out"),
        "{told}"
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    let sent_while_down = phone.sent().len();
    let (_, c) = app.get_json(&campaign).await;
    assert_eq!(
        c["counters"]["failed"], 0,
        "nothing failed while paused: {c}"
    );
    assert!(sent_while_down < 20, "{sent_while_down}");

    let (status, _) = app
        .api(
            Method::POST,
            &format!("channels/{id}/session/restart"),
            None,
        )
        .await;
    assert_eq!(status, 202);
    wait_session(&app, &id, "showed a QR", |v| v["qr"].is_string()).await;
    phone.scan();
    wait_session(&app, &id, "connected", |v| v["state"] == "connected").await;
    let (status, r) = app
        .api(Method::POST, &format!("{campaign}/resume"), None)
        .await;
    assert_eq!(status, 200, "{r}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, c) = app.get_json(&campaign).await;
        if c["status"] == "completed" {
            assert_eq!(c["counters"]["sent"], 20, "{c}");
            break;
        }
        assert!(Instant::now() < deadline, "never completed: {c}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sent = phone.sent();
    let recipients: std::collections::HashSet<_> = sent.iter().map(|s| s.to.clone()).collect();
    assert_eq!(
        (sent.len(), recipients.len()),
        (20, 20),
        "each recipient exactly once"
    );
}

/// A newly linked number sends 20 on its first day; linked two days ago, 50.
/// A drop that lasts past `drop_alert_secs` is told to the owner's alerts chat, and so is its
/// end; a blip that is over sooner is not. Nothing pauses: the number's messages wait.
async fn a_lasting_drop_is_told_to_the_owner(backend: Backend) {
    let phone = Phone::new(Duration::from_secs(60), Duration::from_secs(20));
    let app = web_app(backend, &phone, |s| s.whatsapp_web.drop_alert_secs = 1).await;
    let bot = app.create_bot(None).await;
    app.linked_integration(&bot, 5151).await;
    let id = connected_number(&app, &phone, NO_GAP()).await;
    let told = || {
        app.telegram
            .sent()
            .into_iter()
            .filter(|m| m.chat_id == 5151)
            .filter_map(|m| m.text)
            .filter(|t| t.contains("Pregonero:"))
            .collect::<Vec<_>>()
    };

    // A blip, back within the second: not worth a message.
    phone.emit(WaEvent::Disconnected {
        detail: "blip".into(),
    });
    wait_session(&app, &id, "reconnecting", |v| v["state"] == "reconnecting").await;
    phone.emit(WaEvent::Connected);
    wait_session(&app, &id, "connected", |v| v["state"] == "connected").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(told().is_empty(), "{:?}", told());

    // A drop that lasts: the owner hears of it, then of its end.
    phone.emit(WaEvent::Disconnected {
        detail: "network unreachable".into(),
    });
    let down = app.wait_for_text(5151, "is disconnected").await;
    assert!(
        down.contains("Tienda") && down.contains("network unreachable"),
        "{down}"
    );
    phone.emit(WaEvent::Connected);
    let back = app.wait_for_text(5151, "connected again").await;
    assert!(back.contains("Tienda"), "{back}");
    assert_eq!(told().len(), 2, "{:?}", told());
}

async fn a_new_number_warms_up(backend: Backend) {
    let phone = Phone::new(Duration::from_secs(60), Duration::from_secs(20));
    let app = web_app(backend, &phone, |_| {}).await;
    let id = connected_number(&app, &phone, NO_GAP()).await;
    let (_, session) = app.get_json(&format!("channels/{id}/session")).await;
    assert_eq!(session["cap_today"], 20, "{session}");
    for i in 0..30 {
        send(&app, &id, &format!("+34602{i:06}"), "hola").await;
    }
    phone.wait_sent(20, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(phone.sent().len(), 20, "the first day's cap");

    // Two days later (as the store says), the cap has grown to per_day.
    let store = DbStore::new(
        app.state.db.clone(),
        &pregonero::domain::ChannelId::from(id.as_str()),
        app.state.cipher.clone(),
    );
    store
        .set_linked_at(chrono::Utc::now() - chrono::Duration::days(2), true)
        .await
        .expect("linked_at");
    let (status, _) = app
        .api(
            Method::POST,
            &format!("channels/{id}/session/restart"),
            None,
        )
        .await;
    assert_eq!(status, 202);
    let session = wait_session(&app, &id, "grew its cap", |v| {
        v["cap_today"] == 50 && v["state"] == "connected"
    })
    .await;
    assert_eq!(session["sent_today"], 20, "{session}");
    // (The ten held back look again within the hour; new ones go now.)
    for i in 30..40 {
        send(&app, &id, &format!("+34602{i:06}"), "hola").await;
    }
    phone.wait_sent(30, Duration::from_secs(30)).await;
}

/// Another owner gets 404 on every session route of my number, and sees nothing of it.
async fn a_session_is_its_owners_only(backend: Backend) {
    let phone = Phone::new(Duration::from_secs(60), Duration::from_secs(20));
    let app = web_app(backend, &phone, |_| {}).await;
    let id = connected_number(&app, &phone, NO_GAP()).await;
    let (_, other) = app.user_with_key("beto", "operator").await;
    for (method, path) in [
        (
            reqwest::Method::GET,
            format!("/api/v1/channels/{id}/session"),
        ),
        (
            reqwest::Method::POST,
            format!("/api/v1/channels/{id}/session/restart"),
        ),
        (
            reqwest::Method::POST,
            format!("/api/v1/channels/{id}/session/logout"),
        ),
        (
            reqwest::Method::GET,
            format!("/connection-status?channel_id={id}"),
        ),
    ] {
        let req = app
            .client
            .request(method.clone(), format!("{}{path}", app.address))
            .bearer_auth(&other);
        let (status, body) = crate::helpers::status_and_json(req).await;
        assert_eq!(
            (status, &body["error"]),
            (404, &json!("channel-not-found")),
            "{method} {path}: {body}"
        );
    }
    let req = app
        .client
        .get(format!("{}/connection-status", app.address))
        .bearer_auth(&other);
    let (status, seed) = crate::helpers::status_and_json(req).await;
    assert_eq!(
        (status, &seed["state"]),
        (200, &json!("not-configured")),
        "{seed}"
    );
    // Nothing was done to the session on their behalf.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (_, v) = app.get_json(&format!("channels/{id}/session")).await;
    assert_eq!(v["state"], "connected", "{v}");
    assert_eq!(phone.st().logouts, 0);
    assert_eq!(phone.st().starts, 1);
}

/// Waits for the session like [`wait_session`], for up to `secs`: the real library takes its
/// time (a new device waits up to 10 s for the phone to share its app-state keys).
async fn wait_long(
    app: &TestApp,
    id: &str,
    secs: u64,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let (status, v) = app.get_json(&format!("channels/{id}/session")).await;
        assert_eq!(status, 200, "{v}");
        if done(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "session never {what}: {v:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The server's own engine (`real.rs`, `whatsapp-rust` over our database store) against a local
/// WhatsApp server (`wa_server.rs`): the library's QR, the phone's signed pairing, the 515
/// restart, logins by IK with the stored device, drops, 440 and 401.
async fn the_real_library_pairs_reconnects_and_is_logged_out(backend: Backend) {
    let wa = WaServer::start();
    let mut app =
        spawn_app_options(backend, FakeTelegramConfig::default(), |_| {}, wa.options()).await;
    let id = create_number(&app, json!({})).await;

    // The library's QR: our ref, then the device's noise key, identity key and ADV secret.
    let pairing = wait_long(&app, &id, 20, "showed a QR", |v| {
        v["state"] == "pairing" && v["qr"].is_string()
    })
    .await;
    let qr = pairing["qr"].as_str().expect("qr").to_owned();
    assert!(qr.starts_with("2@pregonero-fake-"), "{qr}");
    assert!(qr.split(',').count() >= 4, "{qr}");
    assert!(
        pairing["qr_url"]
            .as_str()
            .is_some_and(|u| u.starts_with("data:image/svg+xml;base64,")),
        "{pairing}"
    );

    // The phone scans it; the library checks the phone's signatures, signs back, restarts on
    // the server's 515 and logs in as the linked device.
    wa.scan(&qr);
    let on = wait_long(&app, &id, 40, "connected", |v| v["state"] == "connected").await;
    assert_eq!(on["phone"], format!("+{PHONE_USER}"), "{on}");
    assert_eq!(on["push_name"], PUSH_NAME, "{on}");
    let seen = wa.seen();
    assert_eq!((seen.registrations, seen.logins), (1, 1), "{seen:?}");
    // What the library keeps lives in our table, encrypted.
    let rows = store_rows(&app, &id).await;
    assert!(rows.len() >= 3, "the device, its keys: {rows:?}");
    assert!(
        rows.iter()
            .all(|v| v.starts_with("v1:") && !v.contains(PHONE_USER)),
        "{rows:?}"
    );

    // A restart of the server: the stored device logs in again, by IK, and shows no QR.
    app.stop_server().await;
    app.start_server().await;
    wait_long(&app, &id, 40, "reconnected", |v| {
        v["state"] == "connected" && wa.seen().logins == 2
    })
    .await;
    let seen = wa.seen();
    assert_eq!(seen.registrations, 1, "no new QR: {seen:?}");
    assert!(seen.ik >= 1, "the paired device reconnects by IK: {seen:?}");

    // The network drops: the library reconnects by itself.
    wa.drop_connections();
    wait_long(&app, &id, 40, "came back after a drop", |v| {
        v["state"] == "connected" && wa.seen().logins == 3
    })
    .await;

    // Another client takes the session over (440): we do not fight it.
    wa.replace();
    let replaced = wait_long(&app, &id, 20, "replaced", |v| v["state"] == "replaced").await;
    assert_eq!(wa.seen().logins, 3, "no reconnect after a 440: {replaced}");

    // The owner takes it back; then removes the device on the phone (401): the keys go.
    let (status, body) = app
        .api(
            Method::POST,
            &format!("channels/{id}/session/restart"),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    wait_long(&app, &id, 40, "reconnected after the restart", |v| {
        v["state"] == "connected" && wa.seen().logins == 4
    })
    .await;
    wa.remove_device();
    let out = wait_long(&app, &id, 20, "logged out", |v| v["state"] == "logged_out").await;
    assert!(
        out["phone"].is_null() || out["phone"] == format!("+{PHONE_USER}"),
        "{out}"
    );
    let gone = Instant::now() + Duration::from_secs(10);
    while !store_rows(&app, &id).await.is_empty() {
        assert!(
            Instant::now() < gone,
            "the removed device's keys are deleted: {} rows left",
            store_rows(&app, &id).await.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = wa.seen();
    assert_eq!(
        seen.max_live, 1,
        "one connection per device at a time: {seen:?}"
    );
    assert_eq!(seen.refused_logins, 0, "no login after the 401: {seen:?}");
    eprintln!(
        "the WhatsApp server saw {} handshakes ({} IK), {} logins; IQs {:?}",
        seen.handshakes, seen.ik, seen.logins, seen.iqs
    );
}

/// A number linked through the real library to `wa`'s phone.
async fn real_number(app: &TestApp, wa: &WaServer, limits: Value) -> String {
    let id = create_number(app, json!({"limits": limits})).await;
    let v = wait_long(app, &id, 20, "showed a QR", |v| v["qr"].is_string()).await;
    wa.scan(v["qr"].as_str().expect("qr"));
    wait_long(app, &id, 40, "connected", |v| v["state"] == "connected").await;
    id
}

/// Sends through the real library: device lists, the recipients' pre-key bundles (the library
/// checks their signatures and opens Signal sessions), one encrypted part per device; then the
/// server's ack, the phone's receipts, a one-tick message and a refusal reach the ledger.
async fn the_real_library_sends_and_reports_receipts(backend: Backend) {
    let wa = WaServer::start();
    let app = spawn_app_options(backend, FakeTelegramConfig::default(), |_| {}, wa.options()).await;
    let id = real_number(&app, &wa, NO_GAP()).await;

    let read = send(&app, &id, "+34600000001", "uno").await;
    let m = wait_events(&app, &read, |seen| seen.contains(&"read".to_owned())).await;
    assert_eq!(statuses(&m), ["delivered", "read"], "{m}");
    let wire = wa.seen().messages;
    assert_eq!(wire.len(), 1, "{wire:?}");
    assert_eq!(
        (wire[0].to.as_str(), wire[0].kind.as_str()),
        ("34600000001", "text"),
        "{wire:?}"
    );
    assert_eq!(m["provider_message_id"], wire[0].id, "{m}");
    assert!(
        wire[0].enc.iter().any(|t| t == "pkmsg"),
        "a first message opens a Signal session: {wire:?}"
    );
    assert_eq!(
        wire[0].read.as_deref(),
        Some("text:uno"),
        "what the recipient's phone decrypted: {wire:?}"
    );

    // Media: uploaded encrypted, then an image with its caption, a document with its name.
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend((0..20_000u32).map(|i| (i % 251) as u8));
    for (name, kind, body, to) in [
        ("oferta.png", "image/png", png, "+34600000201"),
        (
            "catalogo.pdf",
            "application/pdf",
            b"%PDF-1.4\n%...\n".repeat(200),
            "+34600000202",
        ),
    ] {
        let upload = app
            .client
            .post(format!("{}/api/v1/media?filename={name}", app.address))
            .bearer_auth(&app.api_key)
            .header("content-type", kind)
            .body(body)
            .send()
            .await
            .expect("upload");
        assert_eq!(upload.status().as_u16(), 201);
        let media: Value = upload.json().await.expect("json");
        let (status, m) = app
            .api(
                Method::POST,
                "messages",
                Some(json!({"channel_id": id, "to": to, "text": format!("mira {name}"), "media_id": media["id"]})),
            )
            .await;
        assert_eq!(status, 202, "{m}");
        let mid = m["id"].as_str().expect("id").to_owned();
        wait_events(&app, &mid, |seen| seen.contains(&"read".to_owned())).await;
    }
    let seen = wa.seen();
    let read: Vec<_> = seen
        .messages
        .iter()
        .skip(1)
        .map(|m| m.read.clone())
        .collect();
    assert_eq!(
        read,
        [
            Some("image:mira oferta.png".to_owned()),
            Some("document:catalogo.pdf".to_owned())
        ],
        "{:?}",
        seen.messages
    );
    assert_eq!(seen.uploads.len(), 2, "{:?}", seen.uploads);
    assert!(
        seen.uploads.iter().all(|n| *n > 2_000),
        "{:?}",
        seen.uploads
    );

    // Written to: BAJA opts the contact out, whether WhatsApp names the sender by number or by
    // hidden id (LID) with the number beside it.
    for (phone, lid) in [("34600000004", None), ("34600000005", Some("88776655"))] {
        opts_out(&app, &format!("+{phone}"), || wa.write(phone, lid, "BAJA")).await;
    }

    one_tick_then_refused(
        &app,
        &id,
        || wa.set_answer(Answer::ServerOnly),
        || wa.set_answer(Answer::Refuse),
    )
    .await;
    assert_eq!(wa.seen().messages.len(), 5);

    // The seed's form post over this number: a CSV and a text with a variable.
    wa.set_answer(Answer::Read);
    let csv = "telefono;nombre\n+34600000301;Eva\n+34600000302;Luis\n";
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(csv.as_bytes().to_vec())
                .file_name("c.csv")
                .mime_str("text/csv")
                .expect("mime"),
        )
        .text("message", "Hola {{ nombre }}")
        .text("channel_id", id.clone());
    let (status, out) = crate::helpers::status_and_json(
        app.client
            .post(format!("{}/send-messages", app.address))
            .bearer_auth(&app.api_key)
            .multipart(form),
    )
    .await;
    assert_eq!((status, &out["queued"]), (200, &json!(2)), "{out}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let read = loop {
        let mut read: Vec<_> = wa
            .seen()
            .messages
            .iter()
            .skip(5)
            .filter_map(|m| m.read.clone())
            .collect();
        read.sort();
        if read.len() == 2 {
            break read;
        }
        assert!(
            Instant::now() < deadline,
            "the campaign's messages: {read:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(read, ["text:Hola Eva", "text:Hola Luis"]);

    // An alert rule that writes to a WhatsApp number through this one.
    let (status, rule) = app
        .api(
            Method::POST,
            "alert-rules",
            Some(json!({"name": "deploys", "service": "deploys", "channel_id": id, "chat_id": "+34600000777"})),
        )
        .await;
    assert_eq!(status, 201, "{rule}");
    let res = app
        .client
        .post(format!("{}/events", app.address))
        .bearer_auth(&app.api_key)
        .json(&json!({"timestamp": chrono::Utc::now().to_rfc3339(), "service": "deploys", "message": "v1.2 is live"}))
        .send()
        .await
        .expect("event");
    assert_eq!(res.status().as_u16(), 202);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let alert = wa
            .seen()
            .messages
            .iter()
            .find(|m| m.to == "34600000777")
            .and_then(|m| m.read.clone());
        if let Some(alert) = alert {
            assert_eq!(alert, "text:🔔 deploys\n[deploys] v1.2 is live");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the alert never reached WhatsApp"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A connection that takes messages and acknowledges none is a zombie: restarted within the
/// ack timeout; and a pairing by phone number shows the library's 8-character code.
async fn the_real_library_restarts_a_zombie_and_pairs_by_code(backend: Backend) {
    let wa = WaServer::start();
    let app = spawn_app_options(
        backend,
        FakeTelegramConfig::default(),
        |s| s.whatsapp_web.ack_timeout_secs = 2,
        wa.options(),
    )
    .await;
    let id = real_number(&app, &wa, NO_GAP()).await;
    let logins = wa.seen().logins;
    wa.set_answer(Answer::Silent);
    send(&app, &id, "+34600000001", "uno").await;
    let v = wait_long(&app, &id, 30, "restarted the zombie", |v| {
        v["state"] == "connected" && wa.seen().logins > logins
    })
    .await;
    assert!(
        !wa.seen().messages.is_empty(),
        "the message reached the silent server: {v}"
    );

    let by_code = create_number(&app, json!({"pair_phone": "+34 611 999 888"})).await;
    let v = wait_long(&app, &by_code, 20, "showed a code", |v| {
        v["pair_code"].is_string()
    })
    .await;
    let code = v["pair_code"].as_str().expect("code");
    assert_eq!(
        code.chars().filter(char::is_ascii_alphanumeric).count(),
        8,
        "{v}"
    );
    assert!(v["qr"].is_null(), "a code, not a QR: {v}");
}

/// A server process for [`a_killed_server_restores_its_session`] (this test binary, run again on
/// this one test): the server's engine against a local WhatsApp server, on the database and data
/// folder the parent names. Its phone scans any QR it is shown when `…_SCAN` is set, and it
/// writes what the WhatsApp server saw to `seen-<node>.json`. It runs until it is killed.
#[actix_web::test]
#[ignore = "a child process of a_killed_server_restores_its_session"]
async fn wa_child_server() {
    let Ok(dir) = std::env::var("PREGONERO_WA_CHILD_DIR") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let node = std::env::var("PREGONERO_WA_CHILD_NODE").expect("node");
    let scan = std::env::var("PREGONERO_WA_CHILD_SCAN").is_ok();
    let backend = match std::env::var("PREGONERO_WA_CHILD_DB") {
        Ok(url) if !url.is_empty() => Backend::Postgres(url),
        _ => Backend::Sqlite,
    };
    let wa = WaServer::start();
    let telegram = fakes::telegram::FakeTelegram::start_with(FakeTelegramConfig::default())
        .await
        .expect("fake telegram");
    let mut settings = crate::helpers::test_settings(&backend, dir.clone(), telegram.base_url());
    settings.secret_key = std::env::var("PREGONERO_WA_CHILD_KEY")
        .ok()
        .filter(|k| !k.is_empty())
        .map(Into::into);
    settings.node_name = Some(node.clone());
    settings.whatsapp_web.lease_secs = 3;
    let app = pregonero::startup::Application::build(settings, wa.options())
        .await
        .expect("build");
    if let Some(key) = app.bootstrap_key() {
        std::fs::write(dir.join("api-key"), key).expect("write key");
    }
    let running = app.spawn().expect("spawn");
    let base = format!("http://127.0.0.1:{}", running.port);
    let tmp = dir.join(format!("{node}.tmp"));
    std::fs::write(&tmp, &base).expect("write address");
    std::fs::rename(&tmp, dir.join(format!("address-{node}"))).expect("publish address");
    let key = std::fs::read_to_string(dir.join("api-key")).expect("api key");
    let client = reqwest::Client::new();
    let mut scanned = std::collections::HashSet::new();
    loop {
        let seen = wa.seen();
        let report = json!({
            "registrations": seen.registrations, "logins": seen.logins, "ik": seen.ik,
            "max_live": seen.max_live,
        });
        std::fs::write(&tmp, report.to_string()).expect("write seen");
        std::fs::rename(&tmp, dir.join(format!("seen-{node}.json"))).expect("publish seen");
        if scan {
            let channels: Value = client
                .get(format!("{base}/api/v1/channels"))
                .bearer_auth(&key)
                .send()
                .await
                .expect("channels")
                .json()
                .await
                .expect("json");
            for c in channels["items"].as_array().into_iter().flatten() {
                let id = c["id"].as_str().unwrap_or_default();
                let v: Value = client
                    .get(format!("{base}/api/v1/channels/{id}/session"))
                    .bearer_auth(&key)
                    .send()
                    .await
                    .expect("session")
                    .json()
                    .await
                    .expect("json");
                if let Some(qr) = v["qr"].as_str()
                    && scanned.insert(qr.to_owned())
                {
                    wa.scan(qr);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A child server process; killed (SIGKILL) when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn child(dir: &std::path::Path, db: &str, key: &str, node: &str, scan: bool) -> Child {
    let log = std::fs::File::create(dir.join(format!("{node}.log"))).expect("log");
    let mut cmd = std::process::Command::new(std::env::current_exe().expect("test binary"));
    cmd.args([
        "whatsapp_web::wa_child_server",
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("PREGONERO_WA_CHILD_DIR", dir)
    .env("PREGONERO_WA_CHILD_DB", db)
    .env("PREGONERO_WA_CHILD_KEY", key)
    .env("PREGONERO_WA_CHILD_NODE", node)
    .stdout(log.try_clone().expect("log"))
    .stderr(log);
    if scan {
        cmd.env("PREGONERO_WA_CHILD_SCAN", "1");
    }
    Child(cmd.spawn().expect("start the child server"))
}

/// Waits for `name` in `dir` (a child's published file) and reads it.
async fn published(dir: &std::path::Path, name: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(s) = std::fs::read_to_string(dir.join(name)) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never appeared in {dir:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `kill -9` of the server while its number is connected: a new server process, on the same
/// database, restores the session from the stored keys (IK login, no QR) once the dead one's
/// lease runs out. The server, its engine and the WhatsApp server run as a child process.
async fn a_killed_server_restores_its_session(backend: Backend) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (db, key) = match &backend {
        Backend::Sqlite => (String::new(), String::new()),
        Backend::Postgres(url) => (url.clone(), pregonero::crypto::Cipher::generate_key()),
    };
    crate::helpers::secret(&key);
    let first = child(dir.path(), &db, &key, "wa-node-1", true);
    let base = published(dir.path(), "address-wa-node-1", Duration::from_secs(60)).await;
    let api_key = published(dir.path(), "api-key", Duration::from_secs(5)).await;
    let client = reqwest::Client::new();
    let (status, channel) = crate::helpers::status_and_json(
        client
            .post(format!("{base}/api/v1/channels"))
            .bearer_auth(&api_key)
            .json(&json!({"kind": "whatsapp_web", "name": "Tienda"})),
    )
    .await;
    assert_eq!(status, 201, "{channel}");
    let id = channel["id"].as_str().expect("id").to_owned();
    let session = |base: String| {
        let (client, api_key, id) = (client.clone(), api_key.clone(), id.clone());
        async move {
            crate::helpers::status_and_json(
                client
                    .get(format!("{base}/api/v1/channels/{id}/session"))
                    .bearer_auth(&api_key),
            )
            .await
            .1
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while session(base.clone()).await["state"] != "connected" {
        assert!(Instant::now() < deadline, "{}", session(base.clone()).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // SIGKILL: no stop, no lease handed back, no goodbye to WhatsApp.
    drop(first);
    let _second = child(dir.path(), &db, &key, "wa-node-2", false);
    let base = published(dir.path(), "address-wa-node-2", Duration::from_secs(60)).await;
    let started = Instant::now();
    let mut qr_seen = false;
    let logins = || {
        std::fs::read_to_string(dir.path().join("seen-wa-node-2.json"))
            .ok()
            .and_then(|s| serde_json::from_str::<Value>(&s).ok())
            .and_then(|v| v["logins"].as_u64())
            .unwrap_or(0)
    };
    let view = loop {
        let v = session(base.clone()).await;
        qr_seen |= v["qr"].is_string();
        // Until it holds the lease, the new process shows the view the dead one stored.
        if v["state"] == "connected" && logins() >= 1 {
            break v;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "never restored: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!qr_seen, "no QR after the kill: {view}");
    assert_eq!(view["phone"], format!("+{PHONE_USER}"), "{view}");
    let seen: Value = serde_json::from_str(
        &published(dir.path(), "seen-wa-node-2.json", Duration::from_secs(5)).await,
    )
    .expect("seen");
    assert_eq!(seen["registrations"], 0, "{seen}");
    assert!(
        seen["ik"].as_u64() >= Some(1),
        "an IK login of the stored device: {seen}"
    );
    eprintln!(
        "restored {:.1} s after the new process served (lease 3 s)",
        started.elapsed().as_secs_f64()
    );
}

crate::on_both_databases!(
    a_lasting_drop_is_told_to_the_owner,
    the_real_library_sends_and_reports_receipts,
    the_real_library_restarts_a_zombie_and_pairs_by_code,
    a_killed_server_restores_its_session,
    the_real_library_pairs_reconnects_and_is_logged_out,
    a_session_is_its_owners_only,
    a_new_number_warms_up,
    a_logout_pauses_the_numbers_campaigns,
    pairs_by_qr_and_reconnects_after_a_restart_without_one,
    an_unscanned_qr_expires_and_a_code_pairs_instead,
    drops_logouts_replacements_and_zombies,
    receipts_refusals_and_opt_out,
);

mod a_campaign_keeps_the_gaps_and_the_daily_cap {
    #[actix_web::test]
    async fn sqlite() {
        super::a_campaign_keeps_the_gaps_and_the_daily_cap(crate::helpers::Backend::Sqlite).await
    }
}

/// The store against the library's own `InMemoryBackend`: the same calls, the same answers, on
/// both databases; and nothing readable at rest.
async fn the_store_answers_like_the_librarys_own(backend: Backend) {
    use std::sync::Arc as A;
    use whatsapp_rust::wacore::{
        appstate::processor::AppStateMutationMAC,
        store::{
            InMemoryBackend,
            traits::{
                AppStateSyncKey, AppSyncStore, DeviceInfo, DeviceListRecord, LidPnMappingEntry,
                MsgSecretEntry, MsgSecretStore, ProtocolStore, SignalStore, TcTokenEntry,
            },
        },
    };
    let phone = Phone::new(Duration::from_secs(60), Duration::from_secs(20));
    let app = web_app(backend, &phone, |_| {}).await;
    let channel = pregonero::domain::ChannelId::from(create_number(&app, json!({})).await);
    let ours = DbStore::new(app.state.db.clone(), &channel, app.state.cipher.clone());
    let theirs = InMemoryBackend::new();
    macro_rules! both {
        ($call:ident ( $($arg:expr),* )) => {{
            let a = ours.$call($($arg),*).await.expect(stringify!($call));
            let b = theirs.$call($($arg),*).await.expect(stringify!($call));
            (a, b)
        }};
    }
    macro_rules! same {
        ($call:ident ( $($arg:expr),* )) => {{
            let (a, b) = both!($call($($arg),*));
            assert_eq!(format!("{a:?}"), format!("{b:?}"), stringify!($call));
            a
        }};
    }
    let addr = "34600000001.0:1";
    same!(put_identity(addr, [7u8; 32]));
    same!(put_identities_batch(&[(
        A::from("34600000002.0:1"),
        [8u8; 32]
    )]));
    same!(load_identity(addr));
    same!(load_identity("34600000002.0:1"));
    same!(delete_identity(addr));
    same!(load_identity(addr));
    same!(put_session(addr, b"session-1"));
    same!(put_session(addr, b"session-2"));
    same!(get_session(addr));
    same!(has_session(addr));
    same!(delete_session(addr));
    same!(has_session(addr));
    same!(store_prekeys_batch(
        &[
            (1, bytes::Bytes::from_static(b"p1")),
            (5, bytes::Bytes::from_static(b"p5"))
        ],
        false
    ));
    same!(store_prekey(3, b"p3", true));
    same!(mark_prekeys_uploaded(&[1, 5]));
    same!(get_max_prekey_id());
    same!(load_prekey(5));
    same!(remove_prekey(5));
    same!(get_max_prekey_id());
    same!(load_prekeys_batch(&[1, 3, 5]));
    same!(store_signed_prekey(2, b"s2"));
    same!(store_signed_prekey(1, b"s1"));
    let (a, mut b) = both!(load_all_signed_prekeys());
    b.sort();
    assert_eq!(a, b, "load_all_signed_prekeys");
    same!(remove_signed_prekey(1));
    same!(load_signed_prekey(1));
    same!(put_sender_key("group@g.us::34600000001", b"sk"));
    same!(get_sender_key("group@g.us::34600000001"));
    same!(delete_sender_key("group@g.us::34600000001"));
    same!(get_sender_key("group@g.us::34600000001"));

    let key = AppStateSyncKey {
        key_data: vec![1, 2],
        fingerprint: vec![3],
        timestamp: 42,
    };
    same!(set_sync_key(b"k1", key.clone()));
    same!(set_sync_key(
        b"k2",
        AppStateSyncKey {
            timestamp: 7,
            ..key.clone()
        }
    ));
    same!(get_sync_key(b"k1"));
    same!(get_latest_sync_key_id());
    let (a, b) = both!(get_version("regular"));
    assert_eq!(
        serde_json::to_string(&a).expect("ok"),
        serde_json::to_string(&b).expect("ok")
    );
    let mut v = a;
    v.version = 9;
    same!(set_version("regular", v.clone()));
    let (a, b) = both!(get_version("regular"));
    assert_eq!(
        (a.version, serde_json::to_string(&a).expect("ok")),
        (b.version, serde_json::to_string(&b).expect("ok"))
    );
    let macs = [
        AppStateMutationMAC {
            index_mac: vec![1; 32],
            value_mac: vec![9],
        },
        AppStateMutationMAC {
            index_mac: vec![2; 32],
            value_mac: vec![8],
        },
    ];
    same!(put_mutation_macs("regular", 9, &macs));
    same!(put_mutation_macs("critical", 9, &macs[..1]));
    same!(get_mutation_mac("regular", &[2; 32]));
    same!(delete_mutation_macs("regular", &[vec![2; 32]]));
    same!(get_mutation_mac("regular", &[2; 32]));
    same!(clear_mutation_macs("regular"));
    same!(get_mutation_mac("regular", &[1; 32]));
    same!(get_mutation_mac("critical", &[1; 32]));

    same!(set_sender_key_status(
        "g@g.us",
        &[("a:1@s.whatsapp.net", true), ("b:2@s.whatsapp.net", false)]
    ));
    same!(set_sender_key_status(
        "g@g.us",
        &[("b:2@s.whatsapp.net", true)]
    ));
    let (mut a, mut b) = both!(get_sender_key_devices("g@g.us"));
    a.sort();
    b.sort();
    assert_eq!(a, b);
    same!(delete_sender_key_device_rows(&["a:1@s.whatsapp.net"]));
    same!(get_sender_key_devices("g@g.us"));
    same!(clear_all_sender_key_devices());
    same!(get_sender_key_devices("g@g.us"));
    let entry = |pn: &str| LidPnMappingEntry {
        lid: "100000012345678".into(),
        phone_number: pn.into(),
        created_at: 1,
        updated_at: 2,
        learning_source: "usync".into(),
    };
    same!(put_lid_mapping(&entry("34600000001")));
    same!(put_lid_mapping(&entry("34600000009")));
    same!(get_pn_mapping("34600000001"));
    same!(get_pn_mapping("34600000009"));
    same!(get_lid_mapping("100000012345678"));
    same!(get_all_lid_mappings());
    same!(save_base_key(addr, "M1", b"base"));
    same!(has_same_base_key(addr, "M1", b"base"));
    same!(has_same_base_key(addr, "M1", b"other"));
    same!(delete_base_key(addr, "M1"));
    same!(has_same_base_key(addr, "M1", b"base"));
    let record = DeviceListRecord {
        user: "34600000001".into(),
        devices: vec![DeviceInfo::new(0, None), DeviceInfo::new(3, Some(1))],
        timestamp: 5,
        phash: Some("2:abc".into()),
        raw_id: None,
    };
    same!(update_device_list(record.clone()));
    same!(get_devices("34600000001"));
    same!(delete_devices("34600000001"));
    same!(get_devices("34600000001"));
    let token = |ts: i64, sender: Option<i64>| TcTokenEntry {
        token: vec![1],
        token_timestamp: ts,
        sender_timestamp: sender,
    };
    same!(put_tc_token("a@s.whatsapp.net", &token(100, None)));
    same!(put_tc_token("b@s.whatsapp.net", &token(10, Some(200))));
    same!(put_tc_token("c@s.whatsapp.net", &token(10, None)));
    same!(get_tc_token("a@s.whatsapp.net"));
    same!(delete_expired_tc_tokens(50, 150));
    let (mut a, mut b) = both!(get_all_tc_token_jids());
    a.sort();
    b.sort();
    assert_eq!(a, b);
    same!(store_sent_message("chat@s.whatsapp.net", "M9", b"payload"));
    same!(take_sent_message("chat@s.whatsapp.net", "M9"));
    same!(take_sent_message("chat@s.whatsapp.net", "M9"));
    same!(store_sent_message("chat@s.whatsapp.net", "M10", b"payload"));
    same!(delete_expired_sent_messages(i64::MAX));
    let secret = |id: &str, exp: i64, ts: i64| MsgSecretEntry {
        chat: A::from("chat@s.whatsapp.net"),
        sender: A::from("me@s.whatsapp.net"),
        msg_id: A::from(id),
        secret: [4u8; 32],
        expires_at: exp,
        message_ts: ts,
    };
    same!(put_msg_secrets(vec![
        secret("S1", 100, 5),
        secret("S2", 0, 6)
    ]));
    same!(put_msg_secrets(vec![secret("S1", 300, 2)]));
    same!(get_msg_secret_with_ts(
        "chat@s.whatsapp.net",
        "me@s.whatsapp.net",
        "S1"
    ));
    same!(delete_expired_msg_secrets(200));
    same!(get_msg_secret(
        "chat@s.whatsapp.net",
        "me@s.whatsapp.net",
        "S1"
    ));
    same!(delete_expired_msg_secrets(400));
    same!(get_msg_secret(
        "chat@s.whatsapp.net",
        "me@s.whatsapp.net",
        "S1"
    ));
    same!(get_msg_secret(
        "chat@s.whatsapp.net",
        "me@s.whatsapp.net",
        "S2"
    ));

    // The device: created, saved, loaded back whole (its keys too).
    assert!(!ours.exists().await.expect("ok"));
    ours.create().await.expect("ok");
    let mut device = ours.load().await.expect("ok").expect("created");
    device.push_name = "Tienda Ana".into();
    ours.save(&device).await.expect("ok");
    let back = ours.load().await.expect("ok").expect("saved");
    assert_eq!(
        serde_json::to_string(&back).expect("ok"),
        serde_json::to_string(&device).expect("ok")
    );

    // At rest: every value encrypted, every key an HMAC; another channel sees nothing of it.
    let rows = store_rows(&app, channel.as_str()).await;
    assert!(rows.len() > 10, "{}", rows.len());
    assert!(
        rows.iter()
            .all(|v| v.starts_with("v1:") && !v.contains("34600000") && !v.contains("Tienda"))
    );
    // A rotated secret key: the old one in previous_secret_keys still opens the session.
    let fresh = pregonero::crypto::Cipher::generate_key();
    crate::helpers::secret(&fresh);
    let old_key = pregonero::db::secret_key(&app.settings).expect("the server's key");
    let rotated = pregonero::crypto::Cipher::from_base64(&fresh)
        .expect("key")
        .with_previous([old_key.trim()])
        .expect("previous");
    let moved = DbStore::new(app.state.db.clone(), &channel, rotated);
    assert!(moved.rekey().await.expect("rekey") > 10);
    assert_eq!(
        moved.rekey().await.expect("rekey again"),
        0,
        "all moved at once"
    );
    assert_eq!(
        moved.load_identity("34600000002.0:1").await.expect("ok"),
        Some([8u8; 32])
    );
    assert!(
        moved
            .load()
            .await
            .expect("ok")
            .is_some_and(|d| d.push_name == "Tienda Ana")
    );
    let other = pregonero::domain::ChannelId::from(create_number(&app, json!({})).await);
    let stranger = DbStore::new(app.state.db.clone(), &other, app.state.cipher.clone());
    assert_eq!(
        stranger.get_session("34600000002.0:1").await.expect("ok"),
        None
    );
    assert_eq!(
        stranger.load_identity("34600000002.0:1").await.expect("ok"),
        None
    );
    assert!(!stranger.exists().await.expect("ok"));
}

crate::on_both_databases!(the_store_answers_like_the_librarys_own);

/// Another server on `a`'s database, named `node`, that runs sessions (`workers`) or only
/// serves the API.
async fn replica_of(
    a: &TestApp,
    phone: &Phone,
    node: &str,
    workers: bool,
) -> pregonero::startup::RunningApp {
    let mut settings = a.settings.clone();
    settings.node_name = Some(node.into());
    let options = RunOptions {
        workers,
        ..phone.options()
    };
    pregonero::startup::Application::build(settings, options)
        .await
        .expect("replica")
        .spawn()
        .expect("spawn replica")
}

/// Channel `id`'s session as the server on `port` shows it.
async fn session_at(client: &reqwest::Client, key: &str, port: u16, id: &str) -> Value {
    let req = client
        .get(format!(
            "http://127.0.0.1:{port}/api/v1/channels/{id}/session"
        ))
        .bearer_auth(key);
    crate::helpers::status_and_json(req).await.1
}

/// Two replicas on one PostgreSQL: one runs the session (the other stands by), and when it
/// stops the other takes the session over with the stored device, no new QR, and never both
/// at once.
#[actix_web::test]
async fn one_replica_runs_a_session_and_another_takes_it_over() {
    let Some(backend) = Backend::postgres().await else {
        return;
    };
    let phone = Phone::new(Duration::from_secs(60), Duration::from_secs(20));
    let mut a = web_app(backend, &phone, |s| s.whatsapp_web.lease_secs = 3).await;
    let id = connected_number(&a, &phone, NO_GAP()).await;
    let b = replica_of(&a, &phone, "test-node-b", true).await;
    let (client, key) = (a.client.clone(), a.api_key.clone());
    let b_session = || session_at(&client, &key, b.port, &id);
    // B knows the channel (its account sync) and stands by; its API shows A's session.
    let deadline = Instant::now() + Duration::from_secs(20);
    while b
        .state
        .web_sessions
        .peek(&pregonero::domain::ChannelId::from(id.as_str()))
        .is_none()
    {
        assert!(
            Instant::now() < deadline,
            "replica b never started the account"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let v = b_session().await;
    assert_eq!(
        (&v["state"], &v["phone"]),
        (&json!("connected"), &json!(phone.number)),
        "{v}"
    );
    assert!(
        !b.state
            .web_sessions
            .get(&pregonero::domain::ChannelId::from(id.as_str()))
            .driving()
    );
    // A restart asked through B is done by A, which runs the session.
    let starts = phone.st().starts;
    let restart = a
        .client
        .post(format!(
            "http://127.0.0.1:{}/api/v1/channels/{id}/session/restart",
            b.port
        ))
        .bearer_auth(&a.api_key);
    let (status, _) = crate::helpers::status_and_json(restart).await;
    assert_eq!(status, 202);
    let deadline = Instant::now() + Duration::from_secs(10);
    while phone.st().starts == starts {
        assert!(
            Instant::now() < deadline,
            "the restart asked through B never reached A"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_session(&a, &id, "connected again", |v| v["state"] == "connected").await;
    let qrs = phone.st().qrs.len();
    a.stop_server().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = b_session().await;
        if v["state"] == "connected" {
            assert_eq!(v["phone"], phone.number, "{v}");
            break;
        }
        assert!(Instant::now() < deadline, "replica b never took over: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(phone.st().qrs.len(), qrs, "taken over without a new QR");
    assert_eq!(
        phone.st().max_active,
        1,
        "never two connections of one device"
    );
    b.stop().await;
}

/// An API-only replica (`serve --no-workers`) shows the session its worker runs; when no
/// replica runs it (the worker stopped), it shows `starting` with the number and no QR, never
/// the stopped runner's last "connected"; and the runner's return shows it connected again.
#[actix_web::test]
async fn a_session_nobody_runs_is_not_shown_connected() {
    let Some(backend) = Backend::postgres().await else {
        return;
    };
    let phone = Phone::new(Duration::from_secs(60), Duration::from_secs(20));
    let mut a = web_app(backend, &phone, |s| s.whatsapp_web.lease_secs = 3).await;
    let id = connected_number(&a, &phone, NO_GAP()).await;
    let api_only = replica_of(&a, &phone, "test-node-api", false).await;
    let (client, key) = (a.client.clone(), a.api_key.clone());
    let view = || session_at(&client, &key, api_only.port, &id);
    let wait = |what: &'static str, done: fn(&Value) -> bool| {
        let view = &view;
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let v = view().await;
                if done(&v) {
                    return v;
                }
                assert!(Instant::now() < deadline, "never {what}: {v:#}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let on = wait("shown connected", |v| v["state"] == "connected").await;
    assert_eq!(on["phone"], phone.number, "{on}");

    a.stop_server().await;
    let off = wait("shown unattended", |v| v["state"] != "connected").await;
    assert_eq!(off["state"], "starting", "{off}");
    assert_eq!(off["phone"], phone.number, "the number stays: {off}");
    assert!(off["qr"].is_null(), "{off}");
    assert!(
        off["detail"]
            .as_str()
            .is_some_and(|d| d.contains("no replica runs this session")),
        "{off}"
    );
    // Still not connected a lease term later: nobody runs it.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(view().await["state"], "starting");

    a.start_server().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(phone.st().starts == 2 && view().await["state"] == "connected") {
        assert!(Instant::now() < deadline, "never shown connected again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    api_only.stop().await;
}

/// The dashboard's Channels page in Chromium against the scripted phone: link by QR (it
/// rotates live), see it connected with its number, unlink it (`tests/e2e/whatsapp_web.mjs`).
#[actix_web::test]
async fn linking_a_number_from_the_dashboard() {
    let phone = Phone::new(Duration::from_secs(3), Duration::from_secs(2));
    let app = web_app(Backend::Sqlite, &phone, |s| {
        s.admin_password = Some(crate::auth::LOCAL_PASSWORD.into());
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let scan_file = dir.path().join("scan");
    // The phone scans when the page says so (after it has seen the QR rotate).
    let (watch, p) = (scan_file.clone(), phone.clone());
    let scanner = tokio::spawn(async move {
        while !watch.exists() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        p.scan();
    });
    let ran = crate::dashboard::run_browser(
        &app,
        "whatsapp_web.mjs",
        &[
            ("PASSWORD", crate::auth::LOCAL_PASSWORD),
            ("SCAN_FILE", scan_file.to_str().expect("path")),
            ("PHONE", phone.number),
        ],
    )
    .await;
    scanner.abort();
    if ran.is_some() {
        assert_eq!(phone.st().logouts, 1, "unlinked from the page");
        assert!(phone.st().qrs.len() >= 2, "the page saw the QR rotate");
    }
}
