//! Webhooks: status callbacks of accepted messages and inbound user messages, signed with the
//! number's app secret (`X-Hub-Signature-256`) and retried with backoff.
//!
//! Every POST goes through one dispatcher task on the runtime that started the fake, so the HTTP
//! client and its pooled connections stay on one runtime.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::{mpsc, oneshot};

use super::error;
use super::message::{Outgoing, parse_recipient};
use super::state::{Number, State};
use super::{Shared, WindowMode};

/// Attempts per webhook POST before it counts as failed.
const ATTEMPTS: u32 = 5;
/// Pause after the first failed attempt; doubled after each further one.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// `entry[].id` of every webhook.
const WABA_ID: &str = "102290129340398";

/// Where and how to POST a webhook.
#[derive(Clone, Debug)]
pub(super) struct Target {
    url: String,
    app_secret: String,
}

/// Work for the dispatcher.
pub(super) enum Job {
    /// One POST; its outcome goes to `reply`.
    Post {
        target: Target,
        body: Value,
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// The status webhooks of one message, in order, each after `delay`; dropped if the fake is
    /// reset (`epoch` changes) or stopped meanwhile.
    Statuses {
        target: Target,
        bodies: Vec<Value>,
        delay: Duration,
        epoch: u64,
    },
}

/// Runs each job as its own task until the fake stops.
pub(super) async fn dispatch(
    shared: Arc<Shared>,
    client: reqwest::Client,
    mut jobs: mpsc::UnboundedReceiver<Job>,
) {
    while let Some(job) = jobs.recv().await {
        let shared = Arc::clone(&shared);
        let client = client.clone();
        actix_web::rt::spawn(async move {
            match job {
                Job::Post {
                    target,
                    body,
                    reply,
                } => {
                    let outcome = post(&shared, &client, &target, &body).await;
                    // The caller may have given up waiting; nothing to do then.
                    let _ignored = reply.send(outcome);
                }
                Job::Statuses {
                    target,
                    bodies,
                    delay,
                    epoch,
                } => {
                    for body in bodies {
                        tokio::time::sleep(delay).await;
                        let current = shared.state().epoch == epoch;
                        if !current || shared.stopped.load(Ordering::SeqCst) {
                            return;
                        }
                        // A status the server refused is not retried further; go on with the
                        // next one, as Meta does.
                        let _outcome = post(&shared, &client, &target, &body).await;
                    }
                }
            }
        });
    }
}

/// `sha256=<hex HMAC-SHA256(body, app_secret)>`.
pub(super) fn signature(app_secret: &str, body: &[u8]) -> String {
    // HMAC takes keys of any length, so `new_from_slice` cannot fail.
    let hex = <Hmac<Sha256> as Mac>::new_from_slice(app_secret.as_bytes()).map_or_else(
        |_| String::new(),
        |mut mac| {
            mac.update(body);
            hex::encode(mac.finalize().into_bytes())
        },
    );
    format!("sha256={hex}")
}

/// POSTs `body` until the server answers 2xx, [`ATTEMPTS`] times at most; records the outcome.
async fn post(
    shared: &Shared,
    client: &reqwest::Client,
    target: &Target,
    body: &Value,
) -> Result<(), String> {
    let raw = serde_json::to_vec(body).map_err(|e| format!("can't serialize webhook: {e}"))?;
    let signature = signature(&target.app_secret, &raw);
    let mut backoff = FIRST_BACKOFF;
    let mut last_error = String::new();
    for attempt in 1..=ATTEMPTS {
        let outcome = client
            .post(&target.url)
            .header("Content-Type", "application/json")
            .header("X-Hub-Signature-256", &signature)
            .body(raw.clone())
            .send()
            .await;
        match outcome {
            Ok(res) if res.status().is_success() => {
                shared.state().stats.webhooks_posted += 1;
                return Ok(());
            }
            Ok(res) => last_error = format!("answered {}", res.status()),
            Err(e) => last_error = format!("connection failed: {}", e.without_url()),
        }
        if attempt < ATTEMPTS {
            shared.state().stats.webhook_retries += 1;
            tokio::time::sleep(backoff).await;
            backoff = backoff.saturating_mul(2);
        }
    }
    let description = format!(
        "POST {} ({}) {last_error} after {ATTEMPTS} attempts",
        target.url,
        describe(body)
    );
    let mut state = shared.state();
    state.stats.webhooks_failed += 1;
    state.webhook_failures.push(description.clone());
    Err(description)
}

/// `status sent of wamid.…` / `inbound message from …`, for failure descriptions.
fn describe(body: &Value) -> String {
    let value = &body["entry"][0]["changes"][0]["value"];
    if let Some(status) = value["statuses"][0].as_object() {
        let name = status.get("status").and_then(Value::as_str).unwrap_or("?");
        let id = status.get("id").and_then(Value::as_str).unwrap_or("?");
        return format!("status {name} of {id}");
    }
    let from = value["messages"][0]["from"].as_str().unwrap_or("?");
    format!("inbound message from {from}")
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The webhook envelope around a `value` object of number `id`.
fn envelope(id: &str, number: &Number, key: &str, items: Value) -> Value {
    let mut value = json!({
        "messaging_product": "whatsapp",
        "metadata": {
            "display_phone_number": number.display_phone_number,
            "phone_number_id": id,
        },
    });
    if let Some(obj) = value.as_object_mut() {
        obj.insert(key.to_owned(), items);
    }
    json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": WABA_ID, "changes": [{ "field": "messages", "value": value }] }],
    })
}

/// The webhook target of number `id`, if it has a webhook.
fn target(state: &State, id: &str, number: &Number) -> Option<Target> {
    state.webhooks.get(id).map(|url| Target {
        url: url.clone(),
        app_secret: number.app_secret.clone(),
    })
}

/// Decides the fate of an accepted message: `Some(code)` if it gets a `failed` status.
pub(super) fn failure_for(state: &State, id: &str, message: &Outgoing) -> Option<i64> {
    let outside_window = state.window_mode == WindowMode::AsyncFailed
        && !message.is_template()
        && !state.window_open(id, &message.wa_id);
    if outside_window {
        Some(error::RE_ENGAGEMENT)
    } else if state.undeliverable.contains(&message.wa_id) {
        Some(error::UNDELIVERABLE)
    } else {
        None
    }
}

/// An accepted message, as [`schedule_statuses`] needs it.
#[derive(Clone, Copy)]
pub(super) struct Accepted<'a> {
    pub(super) id: &'a str,
    pub(super) number: &'a Number,
    pub(super) message: &'a Outgoing,
    pub(super) wamid: &'a str,
    /// The code of the `failed` status it gets instead of sent/delivered/read.
    pub(super) failed: Option<i64>,
    /// Its sequence number (every second one is shuffled with `shuffle_statuses`).
    pub(super) seq: u64,
}

/// Schedules the status webhooks of an accepted message (nothing if the number has no webhook).
///
/// Timestamps follow the events: `sent` and `delivered` at acceptance, `read` one second later,
/// whatever order they are posted in.
pub(super) fn schedule_statuses(shared: &Shared, state: &State, accepted: &Accepted<'_>) {
    let Accepted {
        id,
        number,
        message,
        wamid,
        failed,
        seq,
    } = *accepted;
    let Some(target) = target(state, id, number) else {
        return;
    };
    let at = now_secs();
    let status = |name: &str, timestamp: u64| {
        let (category, billable, kind) = if message.is_template() {
            ("marketing", true, "regular")
        } else {
            ("service", false, "free_customer_service")
        };
        let item = json!({
            "id": wamid,
            "status": name,
            "timestamp": timestamp.to_string(),
            "recipient_id": message.wa_id,
            "pricing": {
                "billable": billable,
                "pricing_model": "PMP",
                "type": kind,
                "category": category,
            },
        });
        envelope(id, number, "statuses", json!([item]))
    };
    let bodies = if let Some(code) = failed {
        let details = if code == error::RE_ENGAGEMENT {
            "Message failed to send because more than 24 hours have passed since the customer last replied to this number."
        } else {
            "Message failed to send because the recipient can't receive it."
        };
        let item = json!({
            "id": wamid,
            "status": "failed",
            "timestamp": at.to_string(),
            "recipient_id": message.wa_id,
            "errors": [{
                "code": code,
                "title": error::title(code),
                "message": error::title(code),
                "error_data": { "details": details },
            }],
        });
        vec![envelope(id, number, "statuses", json!([item]))]
    } else {
        let mut bodies = vec![status("sent", at)];
        let delivered = status("delivered", at);
        if shared.send_read {
            let read = status("read", at + 1);
            if shared.shuffle_statuses && seq % 2 == 0 {
                bodies.extend([read, delivered]);
            } else {
                bodies.extend([delivered, read]);
            }
        } else {
            bodies.push(delivered);
        }
        bodies
    };
    // The dispatcher only goes away when the fake stops; then nothing needs posting.
    let _ignored = shared.jobs.send(Job::Statuses {
        target,
        bodies,
        delay: shared.status_delay,
        epoch: state.epoch,
    });
}

/// See [`super::FakeWhatsApp::inbound`].
pub(super) async fn inbound(
    shared: &Shared,
    id: &str,
    from: &str,
    text: &str,
) -> Result<(), String> {
    let wa_id = parse_recipient(from)
        .ok_or_else(|| format!("`from` must be 8 to 15 digits with an optional +, got {from:?}"))?;
    let (target, body) = {
        let mut state = shared.state();
        let number = state
            .numbers
            .get(id)
            .cloned()
            .ok_or_else(|| format!("unknown phone_number_id {id:?}"))?;
        state.open_window(id, &wa_id);
        state.count_throughput(id);
        state.stats.inbound += 1;
        let seq = state.next_seq();
        let contacts = json!([{ "profile": { "name": format!("User {wa_id}") }, "wa_id": wa_id }]);
        let messages = json!([{
            "from": wa_id,
            "id": wamid(&wa_id, seq),
            "timestamp": now_secs().to_string(),
            "type": "text",
            "text": { "body": text },
        }]);
        let mut body = envelope(id, &number, "messages", messages);
        if let Some(value) = body["entry"][0]["changes"][0]["value"].as_object_mut() {
            value.insert("contacts".to_owned(), contacts);
        }
        let target = target(&state, id, &number)
            .ok_or_else(|| format!("phone_number_id {id:?} has no webhook URL"))?;
        (target, body)
    };
    let (reply, outcome) = oneshot::channel();
    shared
        .jobs
        .send(Job::Post {
            target,
            body,
            reply,
        })
        .map_err(|_| "the fake is stopped".to_owned())?;
    outcome
        .await
        .map_err(|_| "the fake is stopped".to_owned())?
}

/// A unique WhatsApp-looking message id (well under 128 characters).
pub(super) fn wamid(wa_id: &str, seq: u64) -> String {
    let salt: u32 = rand::random();
    format!("wamid.HBgL{wa_id}FQIAERgS{seq:016X}{salt:08X}")
}
