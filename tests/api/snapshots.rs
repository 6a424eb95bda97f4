//! Chart snapshots in Debian's Chromium: a chart-like page served here (a canvas drawn by script
//! after a delay, shown only with the right session cookie) is captured, stored and delivered
//! as a photo; the cookie goes to the chart's host only; a page that never gets ready fails
//! after the timeout and the signal still goes out; a killed browser is replaced; premium
//! snapshots go before free ones.
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, spawn_app_with, status_and_json};

const COOKIE: &str = "s3ssion-for-the-chart";
const CHAT: i64 = 4242;
const WAIT: Duration = Duration::from_secs(60);

/// One request to the chart server: host, path, cookie header.
type Request = (String, String, Option<String>);

/// What the chart server saw.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Request>>>);

impl Seen {
    fn all(&self) -> Vec<Request> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn charts(&self) -> Vec<String> {
        self.all()
            .into_iter()
            .filter_map(|(_, path, _)| path.strip_prefix("/chart/").map(str::to_owned))
            .collect()
    }
}

/// Serves `/chart/{id}`: with the session cookie, a page whose canvas appears after a delay
/// (`slow-…` charts take longer, `never` never draws one); without it, a login page. The page
/// also loads a pixel from `localhost` (another host than the chart's 127.0.0.1).
async fn chart_server() -> (u16, Seen) {
    let seen = Seen::default();
    let data = web::Data::new(seen.clone());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(data.clone())
            .default_service(web::to(serve))
    })
    .workers(1)
    .listen(listener)
    .expect("listen")
    .run();
    actix_web::rt::spawn(server);
    (port, seen)
}

async fn serve(req: HttpRequest, seen: web::Data<Seen>) -> HttpResponse {
    let host = req.connection_info().host().to_owned();
    let cookie = req
        .headers()
        .get("cookie")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let path = req.path().to_owned();
    seen.0.lock().unwrap_or_else(|e| e.into_inner()).push((
        host.clone(),
        path.clone(),
        cookie.clone(),
    ));
    let Some(chart) = path.strip_prefix("/chart/") else {
        return HttpResponse::Ok()
            .content_type("image/gif")
            .body(&b"GIF89a"[..]);
    };
    let signed_in = cookie.is_some_and(|c| c.contains(&format!("sessionid={COOKIE}")));
    if !signed_in || chart == "never" {
        return HttpResponse::Ok()
            .content_type("text/html")
            .body("<!doctype html><p>Please sign in to see this chart</p>");
    }
    let delay = if chart.starts_with("slow") { 900 } else { 300 };
    let port = host.rsplit(':').next().unwrap_or("80");
    HttpResponse::Ok().content_type("text/html").body(format!(
        r##"<!doctype html><html><body style="margin:0;background:#fff">
<img src="http://localhost:{port}/pixel.gif" width="1" height="1">
<script>
setTimeout(() => {{
  const c = document.createElement('canvas');
  c.width = window.innerWidth; c.height = window.innerHeight;
  document.body.appendChild(c);
  const g = c.getContext('2d');
  g.fillStyle = '#131722'; g.fillRect(0, 0, c.width, c.height);
  for (let i = 0; i < 60; i++) {{
    g.fillStyle = i % 2 ? '#26a69a' : '#ef5350';
    g.fillRect(20 + i * 20, 150 + (i * 37) % 200, 12, 60 + (i * 53) % 120);
  }}
}}, {delay});
</script></body></html>"##
    ))
}

fn chromium() -> Option<String> {
    if let Ok(reason) = std::env::var("TEST_SKIP_BROWSER") {
        eprintln!("SKIPPED chart snapshot test: {reason}");
        return None;
    }
    Some(std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()))
}

/// A server that captures charts from the chart server, its admin delivering to a chat.
async fn app_with_charts(
    backend: Backend,
    port: u16,
    chromium: String,
    tweak: impl FnOnce(&mut pregonero::config::Settings),
) -> (TestApp, String) {
    let app = spawn_app_with(backend, |s| {
        let snap = &mut s.signals.snapshots;
        snap.enabled = true;
        snap.chromium_path = Some(chromium.into());
        snap.chart_url_template = format!("http://127.0.0.1:{port}/chart/{{chart_id}}");
        snap.settle_ms = 100;
        snap.timeout_secs = 15;
        tweak(s);
    })
    .await;
    let channel = app.create_bot(None).await;
    app.telegram.add_chat(CHAT);
    let (status, body) = app
        .api(
            reqwest::Method::PUT,
            "signals/profile",
            Some(json!({
                "channel_id": channel,
                "recipient": CHAT.to_string(),
                "tradingview_cookies": {"sessionid": COOKIE, "sessionid_sign": "v2:abc"},
            })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["has_tradingview_cookies"], true);
    assert!(
        !body.to_string().contains(COOKIE),
        "cookies are never shown"
    );
    crate::helpers::secret(COOKIE);
    let token = token_of(&app, &app.api_key).await;
    (app, token)
}

async fn token_of(app: &TestApp, key: &str) -> String {
    let req = app
        .client
        .post(format!("{}/api/v1/signals/profile/token", app.address))
        .bearer_auth(key)
        .json(&json!({}));
    let (status, body) = status_and_json(req).await;
    assert_eq!(status, 201, "{body}");
    let token = body["token"].as_str().expect("token").to_owned();
    crate::helpers::secret(&token);
    token
}

async fn post_alert(app: &TestApp, token: &str, chart: &str, text: &str) -> Value {
    let req = app
        .client
        .post(format!("{}/webhook/u/{token}?chart={chart}", app.address))
        .header("content-type", "text/plain")
        .body(text.to_owned());
    let (status, body) = status_and_json(req).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn wait_for_screenshot(app: &TestApp, id: &str, want: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, signal) = app.get_json(&format!("signals/{id}")).await;
        if signal["screenshot_status"] == want {
            return signal;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "signal {id} never reached {want}: {signal}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Width, height and how many different byte values the image data holds (after inflating).
fn png_facts(png: &[u8]) -> (u32, u32, usize) {
    use std::io::Read;
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    let width = u32::from_be_bytes(png[16..20].try_into().expect("width"));
    let height = u32::from_be_bytes(png[20..24].try_into().expect("height"));
    let (mut i, mut idat) = (8, Vec::new());
    while i + 8 <= png.len() {
        let len = u32::from_be_bytes(png[i..i + 4].try_into().expect("len")) as usize;
        if &png[i + 4..i + 8] == b"IDAT" {
            idat.extend_from_slice(&png[i + 8..i + 8 + len]);
        }
        i += 12 + len;
    }
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(&idat[..])
        .read_to_end(&mut raw)
        .expect("inflate");
    let mut distinct = [false; 256];
    for b in &raw {
        distinct[*b as usize] = true;
    }
    (width, height, distinct.iter().filter(|d| **d).count())
}

async fn a_chart_is_captured_stored_and_sent_as_a_photo(backend: Backend) {
    let Some(chromium) = chromium() else { return };
    // Arrange
    let (port, seen) = chart_server().await;
    let (app, token) = app_with_charts(backend, port, chromium, |_| {}).await;

    // Act
    let answer = post_alert(
        &app,
        &token,
        "Q7w5R5x8",
        "Ticker: BINANCE:BTCUSDT\nSignal: BUY",
    )
    .await;

    // Assert: answered before the capture, then captured, stored and sent as a photo.
    assert_eq!(answer["screenshot_status"], "pending");
    assert!(answer["estimated_wait"].as_u64() > Some(0));
    let id = answer["signal_id"].as_str().expect("id");
    let signal = wait_for_screenshot(&app, id, "completed").await;
    let url = signal["screenshot_url"]
        .as_str()
        .expect("a link to the picture");
    let png = app
        .client
        .get(url)
        .send()
        .await
        .expect("picture")
        .bytes()
        .await
        .expect("bytes");
    let (width, height, distinct) = png_facts(&png);
    assert_eq!((width, height), (1280, 720), "the configured viewport");
    assert!(
        distinct > 16,
        "the chart was drawn, not a blank page ({distinct} byte values)"
    );
    let photo = app
        .telegram
        .wait_until(WAIT, |t| {
            t.sent()
                .iter()
                .any(|m| m.chat_id == CHAT && m.method == "sendPhoto")
        })
        .await;
    assert!(
        photo,
        "a photo reached the chat: {:#?}",
        app.telegram.sent()
    );
    let sent = app.telegram.sent();
    let caption = sent
        .iter()
        .find(|m| m.method == "sendPhoto")
        .and_then(|m| m.caption.clone())
        .unwrap_or_default();
    assert!(caption.contains("BINANCE:BTCUSDT"), "{caption}");
    assert_eq!(sent.len(), 1, "sent once, with its picture");

    // The session cookie went to the chart's host, never to another one.
    let requests = seen.all();
    assert!(
        requests
            .iter()
            .any(|(host, path, cookie)| host.starts_with("127.0.0.1")
                && path == "/chart/Q7w5R5x8"
                && cookie.as_deref().is_some_and(|c| c.contains(COOKIE))),
        "{requests:?}"
    );
    let pixel: Vec<_> = requests
        .iter()
        .filter(|(host, _, _)| host.starts_with("localhost"))
        .collect();
    assert!(
        !pixel.is_empty(),
        "the page loaded its pixel from localhost"
    );
    assert!(
        pixel.iter().all(|(_, _, cookie)| cookie.is_none()),
        "a cookie reached another host: {pixel:?}"
    );
}

crate::on_both_databases!(a_chart_is_captured_stored_and_sent_as_a_photo);

#[actix_web::test]
async fn a_chart_that_never_renders_fails_after_its_tries_and_the_signal_still_goes_out() {
    let Some(chromium) = chromium() else { return };
    let (port, seen) = chart_server().await;
    let (app, token) = app_with_charts(Backend::Sqlite, port, chromium, |s| {
        // Long enough for a loaded machine's browser to ask for the page in each try (with 3 s
        // a CI run beside the three-replica tests saw both tries time out before any request).
        s.signals.snapshots.timeout_secs = 8;
        s.signals.snapshots.attempts = 2;
        s.signals.snapshots.backoff_secs = 1;
    })
    .await;

    let answer = post_alert(&app, &token, "never", "Ticker: NYSE:KO\nPrice: 61.02").await;
    let id = answer["signal_id"].as_str().expect("id");
    let signal = wait_for_screenshot(&app, id, "failed").await;

    assert!(signal["screenshot_url"].is_null());
    // Two tries, as the server recorded them. The chart server sees one page load per try that
    // got as far as asking for the page; on a loaded machine a try can time out while the
    // browser is still opening one, so it sees one or two.
    use sea_orm::EntityTrait;
    let row = pregonero::entities::signals::Entity::find_by_id(id.to_owned())
        .one(&app.inspect_db().await)
        .await
        .expect("query")
        .expect("the signal");
    assert_eq!(row.snapshot_attempts, 2, "two tries");
    let loads = seen.charts().iter().filter(|c| *c == "never").count();
    assert!((1..=2).contains(&loads), "{loads} page loads for two tries");
    let text = app.wait_for_text(CHAT, "NYSE:KO").await;
    assert!(text.contains("61.02"), "{text}");
}

#[actix_web::test]
async fn a_killed_browser_is_replaced() {
    let Some(chromium) = chromium() else { return };
    let (port, _) = chart_server().await;
    let (app, token) = app_with_charts(Backend::Sqlite, port, chromium, |_| {}).await;
    let first = post_alert(&app, &token, "one", "Ticker: BINANCE:ETHUSDT").await;
    wait_for_screenshot(&app, first["signal_id"].as_str().expect("id"), "completed").await;
    let pid = app
        .state
        .snapshots
        .browser_pid()
        .await
        .expect("a browser runs");

    // Act: the browser process dies.
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());

    // Assert: the next chart is captured by a new one.
    let second = post_alert(&app, &token, "two", "Ticker: BINANCE:SOLUSDT").await;
    wait_for_screenshot(&app, second["signal_id"].as_str().expect("id"), "completed").await;
    let again = app
        .state
        .snapshots
        .browser_pid()
        .await
        .expect("a browser runs");
    assert_ne!(pid, again);
}

#[actix_web::test]
async fn a_premium_snapshot_submitted_last_goes_before_free_ones() {
    let Some(chromium) = chromium() else { return };
    // Arrange: one capture at a time; the admin on premium, another user on free.
    let (port, seen) = chart_server().await;
    let (app, premium_token) = app_with_charts(Backend::Sqlite, port, chromium, |s| {
        s.signals.snapshots.concurrency = 1;
    })
    .await;
    let (_, me) = app.get_json("signals/profile").await;
    let me = me["user_id"].as_str().expect("id").to_owned();
    let (status, _) = app
        .api(
            reqwest::Method::PUT,
            &format!("users/{me}/plan"),
            Some(json!({"plan": "premium"})),
        )
        .await;
    assert_eq!(status, 204);
    let db = app.inspect_db().await;
    let free_user = pregonero::auth::repo::create_user(&db, "free trader", "operator")
        .await
        .expect("user");
    let free_key = pregonero::auth::repo::create_api_key(&db, &free_user.id, "k")
        .await
        .expect("key");
    crate::helpers::secret(&free_key);
    let req = app
        .client
        .put(format!("{}/api/v1/signals/profile", app.address))
        .bearer_auth(&free_key)
        .json(&json!({"tradingview_cookies": {"sessionid": COOKIE}}));
    assert_eq!(status_and_json(req).await.0, 200);
    let free_token = token_of(&app, &free_key).await;

    // Act: three free signals, then a premium one, while the first free one is captured.
    for n in 1..=3 {
        post_alert(
            &app,
            &free_token,
            &format!("slow-free-{n}"),
            "Ticker: NYSE:KO",
        )
        .await;
    }
    post_alert(&app, &premium_token, "slow-premium", "Ticker: NYSE:KO").await;

    // Assert
    let deadline = tokio::time::Instant::now() + WAIT;
    while seen.charts().len() < 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            seen.charts()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        seen.charts(),
        ["slow-free-1", "slow-premium", "slow-free-2", "slow-free-3"],
        "the premium snapshot jumps the queue (the first free one had already started)"
    );
}
