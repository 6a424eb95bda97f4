//! Media on both stores: the local folder and S3 (s3s-fs from crates.io, a real S3-compatible
//! server that checks SigV4, started here). The same scenario runs on each: raw and multipart
//! uploads, channel limits, content sniffing, multipart uploads to S3, proxied downloads,
//! presigned or signed links, deletion. Then what only S3 can show: bad credentials refused,
//! an outage that loses nothing, and WhatsApp media sent by presigned link.
use std::{process::Stdio, time::Duration};

use fakes::WindowMode;
use pregonero::config::{MediaDelivery, MediaStoreKind, Settings};
use reqwest::Method;
use serde_json::{Value, json};

use crate::{
    campaigns::wa_app_with,
    helpers::{Backend, TestApp, header, secret, spawn_app, spawn_app_with},
};

const S3_ACCESS_KEY: &str = "pregonero-test-access";
const S3_SECRET_KEY: &str = "pregonero-test-secret-0f9e8d7c";
const MB: usize = 1024 * 1024;
const WAIT: Duration = Duration::from_secs(20);

/// An s3s-fs process on a loopback port with its own folder; killed when dropped.
pub struct S3Server {
    child: Option<tokio::process::Child>,
    port: u16,
    dir: tempfile::TempDir,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
}

impl S3Server {
    /// Starts s3s-fs (built by scripts/services.sh); `None` with a printed reason when it could
    /// not be installed here.
    pub async fn start() -> Option<Self> {
        if let Ok(reason) = std::env::var("TEST_SKIP_S3") {
            eprintln!("SKIPPED S3 media store test: {reason}");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut server = Self {
            child: None,
            port,
            dir: tempfile::tempdir().expect("tempdir"),
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        server.run().await;
        Some(server)
    }

    async fn run(&mut self) {
        let bin = std::env::var("TEST_S3FS_BIN").unwrap_or_else(|_| "s3s-fs".into());
        let child = tokio::process::Command::new(&bin)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", S3_ACCESS_KEY, "--secret-key", S3_SECRET_KEY])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run {bin} ({e}); scripts/services.sh builds it, or set TEST_SKIP_S3=<reason>")
            });
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            assert!(std::time::Instant::now() < deadline, "s3s-fs did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills the server (an outage); [`Self::restart`] brings it back with the same data.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("kill s3s-fs");
            let _ = child.wait().await;
        }
    }

    /// Starts it again on the same port and folder.
    pub async fn restart(&mut self) {
        self.run().await;
    }

    /// Files stored in `bucket` (s3s-fs keeps one file per object, plus its own metadata).
    fn objects(&self, bucket: &str) -> Vec<String> {
        fn walk(dir: &std::path::Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, out);
                } else {
                    out.push(path.display().to_string());
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.dir.path().join(bucket), &mut out);
        out.retain(|p| !p.contains(".s3s") && !p.ends_with(".json"));
        out
    }

    /// Points `s` at this server's `media` bucket (created at start-up).
    pub fn configure(&self, s: &mut Settings) {
        secret(S3_SECRET_KEY);
        s.media.store = MediaStoreKind::S3;
        s.media.s3.bucket = "media".into();
        s.media.s3.endpoint = Some(self.endpoint.clone());
        s.media.s3.force_path_style = true;
        s.media.s3.access_key_id = Some(S3_ACCESS_KEY.into());
        s.media.s3.secret_access_key = Some(S3_SECRET_KEY.into());
        s.media.s3.prefix = "pregonero/".into();
        s.media.s3.part_size_bytes = 5 * MB;
        s.media.s3.create_bucket = true;
    }
}

/// Which store a scenario runs on.
enum Store {
    Local,
    S3(Box<S3Server>),
}

impl Store {
    async fn app(&self) -> TestApp {
        spawn_app_with(Backend::Sqlite, |s| self.configure(s)).await
    }

    fn configure(&self, s: &mut Settings) {
        if let Store::S3(server) = self {
            server.configure(s);
        }
    }

    /// Objects stored (files of the local folder, or objects in the bucket).
    fn objects(&self, app: &TestApp) -> usize {
        match self {
            Store::Local => std::fs::read_dir(app.settings.data_dir.join("media"))
                .map(|d| d.count())
                .unwrap_or(0),
            Store::S3(server) => server.objects("media").len(),
        }
    }
}

fn png(len: usize) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.extend((0..len.saturating_sub(8)).map(|i| (i % 251) as u8));
    bytes
}

fn pdf(len: usize) -> Vec<u8> {
    let mut bytes = b"%PDF-1.7\n".to_vec();
    bytes.extend((0..len.saturating_sub(9)).map(|i| (i * 7 % 256) as u8));
    bytes
}

async fn upload_raw(app: &TestApp, query: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
    app.post_raw(&format!("media{query}"), content_type, body)
        .await
}

async fn download(app: &TestApp, url: &str, auth: bool) -> (u16, Vec<u8>) {
    let mut req = app.client.get(url);
    if auth {
        req = req.bearer_auth(&app.api_key);
    }
    let res = req.send().await.expect("download");
    let status = res.status().as_u16();
    (status, res.bytes().await.expect("body").to_vec())
}

async fn media_scenario(store: Store) {
    let app = store.app().await;

    // A raw upload checked against WhatsApp's limits.
    let image = png(300_000);
    let (status, m) = upload_raw(
        &app,
        "?filename=chart.png&channel=whatsapp",
        "image/png",
        image.clone(),
    )
    .await;
    assert_eq!(status, 201, "{m}");
    assert_eq!(m["size"], image.len());
    assert_eq!(
        m["sha256"],
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&image))
    );
    let image_id = m["id"].as_str().expect("id").to_owned();

    // A multipart form, 12 MiB: three parts of a multipart upload on S3.
    let doc = pdf(12 * MB + 123);
    let form = reqwest::multipart::Form::new()
        .text("note", "ignored")
        .part(
            "file",
            reqwest::multipart::Part::bytes(doc.clone())
                .file_name("report.pdf")
                .mime_str("application/pdf")
                .expect("mime"),
        );
    let res = app
        .client
        .post(format!("{}/api/v1/media?channel=whatsapp", app.address))
        .bearer_auth(&app.api_key)
        .multipart(form)
        .send()
        .await
        .expect("multipart upload");
    assert_eq!(res.status().as_u16(), 201);
    let m: Value = res.json().await.expect("json");
    assert_eq!(m["filename"], "report.pdf");
    assert_eq!(m["content_type"], "application/pdf");
    assert_eq!(m["size"], doc.len());
    let doc_id = m["id"].as_str().expect("id").to_owned();
    let stored = store.objects(&app);
    assert_eq!(stored, 2, "one object per upload");

    // Refusals leave nothing behind.
    let refusals = [
        (
            "?channel=whatsapp",
            "image/png",
            png(5 * MB + 1),
            413,
            "payload-too-large",
        ),
        (
            "?channel=whatsapp",
            "image/gif",
            b"GIF89a-animated".to_vec(),
            422,
            "unsupported-media-type-for-channel",
        ),
        (
            "?channel=telegram",
            "image/jpeg",
            png(1000),
            422,
            "content-type-mismatch",
        ),
        ("", "image/png", Vec::new(), 422, "empty-upload"),
        (
            "?filename=../etc/passwd",
            "image/png",
            png(100),
            422,
            "invalid-filename",
        ),
        ("?channel=sms", "image/png", png(100), 400, "invalid-query"),
    ];
    for (query, content_type, body, want, code) in refusals {
        let (status, e) = upload_raw(&app, query, content_type, body).await;
        assert_eq!(
            (status, e["error"].as_str()),
            (want, Some(code)),
            "{query} {content_type}: {e}"
        );
    }
    let res = app
        .client
        .post(format!("{}/api/v1/media", app.address))
        .bearer_auth(&app.api_key)
        .body(png(10))
        .send()
        .await
        .expect("upload");
    assert_eq!(res.status().as_u16(), 400, "no content type");
    assert_eq!(
        store.objects(&app),
        stored,
        "a refused upload stores nothing"
    );
    let (_, list) = app.get_json("media").await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(2), "{list}");

    // Downloads through the server, byte for byte.
    let (status, bytes) = download(
        &app,
        &format!("{}/api/v1/media/{doc_id}/content", app.address),
        true,
    )
    .await;
    assert_eq!(status, 200);
    assert!(bytes == doc, "the 12 MiB document comes back byte for byte");
    let (status, _) = download(
        &app,
        &format!("{}/api/v1/media/{doc_id}/content", app.address),
        false,
    )
    .await;
    assert_eq!(status, 401);

    // Links anyone can fetch until they expire: presigned by S3, or signed by us.
    let (status, link) = app.get_json(&format!("media/{image_id}/url")).await;
    assert_eq!(status, 200, "{link}");
    let url = link["url"].as_str().expect("url").to_owned();
    match store {
        Store::Local => assert!(url.starts_with(&app.address), "{url}"),
        Store::S3(ref s3) => assert!(
            url.starts_with(&s3.endpoint) && url.contains("X-Amz-Signature="),
            "{url}"
        ),
    }
    let (status, bytes) = download(&app, &url, false).await;
    assert_eq!(status, 200);
    assert!(bytes == image);
    let tampered = if url.ends_with('0') {
        format!("{}1", &url[..url.len() - 1])
    } else {
        format!("{}0", &url[..url.len() - 1])
    };
    let (status, _) = download(&app, &tampered, false).await;
    assert_eq!(status, 403, "a tampered signature is refused: {tampered}");

    // Deletion: refused while a template uses the file.
    let (status, t) = app
        .api(
            Method::POST,
            "templates",
            Some(json!({"name": "with image", "body": "Hola {{ nombre }}", "media_id": image_id})),
        )
        .await;
    assert_eq!(status, 201, "{t}");
    let (status, e) = app
        .api(Method::DELETE, &format!("media/{image_id}"), None)
        .await;
    assert_eq!(
        (status, e["error"].as_str()),
        (409, Some("media-in-use")),
        "{e}"
    );
    let (status, _) = app
        .api(Method::DELETE, &format!("media/{doc_id}"), None)
        .await;
    assert_eq!(status, 204);
    assert_eq!(store.objects(&app), 1, "the file left the store");
    let (status, e) = app.get_json(&format!("media/{doc_id}")).await;
    assert_eq!(
        (status, e["error"].as_str()),
        (404, Some("media-not-found"))
    );
}

#[actix_web::test]
async fn media_on_the_local_store() {
    media_scenario(Store::Local).await;
}

#[actix_web::test]
async fn media_on_s3() {
    let Some(s3) = S3Server::start().await else {
        return;
    };
    media_scenario(Store::S3(Box::new(s3))).await;
}

/// Wrong credentials: S3 checks the signature and the server refuses to start, saying why.
#[actix_web::test]
async fn s3_with_a_wrong_secret_stops_the_start() {
    let Some(s3) = S3Server::start().await else {
        return;
    };
    let data_dir = tempfile::tempdir().expect("tempdir");
    let mut settings = crate::helpers::test_settings(
        &Backend::Sqlite,
        data_dir.path().to_owned(),
        "http://127.0.0.1:9".into(),
    );
    s3.configure(&mut settings);
    settings.media.s3.secret_access_key = Some("not-the-secret".into());
    let err = pregonero::startup::Application::build(settings, Default::default())
        .await
        .err()
        .expect("the start fails");
    let message = format!("{err:#}");
    assert!(
        message.contains("media store") && message.contains("bucket"),
        "{message}"
    );
}

/// S3 down: uploads get 503 with Retry-After; a message with media waits and is sent once S3
/// is back, never failed.
#[actix_web::test]
async fn an_s3_outage_delays_media_but_loses_nothing() {
    let Some(s3) = S3Server::start().await else {
        return;
    };
    let mut store = Store::S3(Box::new(s3));
    let app = spawn_app_with(Backend::Sqlite, |s| {
        store.configure(s);
        s.delivery.max_attempts = 50;
    })
    .await;
    let channel = app.create_bot(None).await;
    app.telegram.add_chat(77);
    let image = png(50_000);
    let (status, m) = upload_raw(
        &app,
        "?filename=a.png&channel=telegram",
        "image/png",
        image.clone(),
    )
    .await;
    assert_eq!(status, 201, "{m}");
    let Store::S3(s3) = &mut store else {
        unreachable!()
    };
    s3.stop().await;

    let res = app
        .client
        .post(format!("{}/api/v1/media", app.address))
        .bearer_auth(&app.api_key)
        .header("content-type", "image/png")
        .body(png(100))
        .send()
        .await
        .expect("upload");
    assert_eq!(res.status().as_u16(), 503);
    assert!(res.headers().contains_key("retry-after"));
    let e: Value = res.json().await.expect("json");
    assert_eq!(e["error"], "media-store-unavailable");

    let (status, msg) = app
        .api(
            Method::POST,
            "messages",
            Some(json!({"channel_id": channel, "to": "77", "text": "chart", "media_id": m["id"]})),
        )
        .await;
    assert_eq!(status, 202, "{msg}");
    let id = msg["id"].as_str().expect("id").to_owned();
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (_, m) = app.get_json(&format!("messages/{id}")).await;
        assert_ne!(m["status"], "failed", "{m}");
        if m["last_error_code"] == "media-store-unavailable" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no retry recorded: {m}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s3.restart().await;
    app.wait_for_status(&id, "sent", WAIT).await;
    let sent = app.telegram.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].method, "sendPhoto");
}

/// WhatsApp media by presigned S3 link (Meta fetches it), and by uploaded media id (uploaded
/// once per number).
#[actix_web::test]
async fn whatsapp_media_by_link_and_by_id() {
    let Some(s3) = S3Server::start().await else {
        return;
    };
    let wa = wa_app_with(Backend::Sqlite, WindowMode::Off, None, |s| {
        s3.configure(s);
        s.whatsapp.send_media_as = MediaDelivery::Link;
    })
    .await;
    let image = png(40_000);
    let (status, m) = upload_raw(
        &wa.app,
        "?filename=promo.png&channel=whatsapp",
        "image/png",
        image.clone(),
    )
    .await;
    assert_eq!(status, 201, "{m}");
    let (status, msg) = wa
        .app
        .api(Method::POST, "messages", Some(json!({"channel_id": wa.channel, "to": "+34600000001", "text": "Oferta", "media_id": m["id"]})))
        .await;
    assert_eq!(status, 202, "{msg}");
    wa.app
        .wait_for_status(msg["id"].as_str().expect("id"), "sent", WAIT)
        .await;
    let sent = wa.fake.sent();
    assert_eq!(sent[0].kind, "image");
    assert_eq!(sent[0].body.as_deref(), Some("Oferta"));
    assert!(sent[0].media_id.is_none());
    let link = sent[0].media_link.clone().expect("sent by link");
    assert!(link.starts_with(&s3.endpoint), "{link}");
    let (status, bytes) = download(&wa.app, &link, false).await;
    assert_eq!(status, 200, "Meta can fetch the presigned link");
    assert!(bytes == image);

    // The same file by upload on a local store: one upload, then the id twice.
    let wa = wa_app_with(Backend::Sqlite, WindowMode::Off, None, |_| {}).await;
    let (status, m) = upload_raw(
        &wa.app,
        "?filename=promo.png&channel=whatsapp",
        "image/png",
        image,
    )
    .await;
    assert_eq!(status, 201, "{m}");
    for to in ["+34600000001", "+34600000002"] {
        let (status, msg) = wa
            .app
            .api(Method::POST, "messages", Some(json!({"channel_id": wa.channel, "to": to, "text": "Oferta", "media_id": m["id"]})))
            .await;
        assert_eq!(status, 202, "{msg}");
        wa.app
            .wait_for_status(msg["id"].as_str().expect("id"), "sent", WAIT)
            .await;
    }
    let sent = wa.fake.sent();
    let ids: Vec<_> = sent
        .iter()
        .map(|s| s.media_id.clone().expect("by id"))
        .collect();
    assert_eq!(ids[0], ids[1], "uploaded once, sent twice by id");
    assert!(sent.iter().all(|s| s.media_link.is_none()));
}

/// A stored file never runs on the API's origin: an uploaded page or SVG is a sandboxed
/// download; a picture still shows inline, sandboxed too.
#[actix_web::test]
async fn uploaded_pages_are_sandboxed_downloads() {
    // Arrange
    let app = spawn_app(Backend::Sqlite).await;
    let (status, page) = upload_raw(
        &app,
        "?filename=x.html",
        "text/html",
        b"<script>alert(1)</script>".to_vec(),
    )
    .await;
    assert_eq!(status, 201, "{page}");
    let (status, picture) = upload_raw(&app, "?filename=p.png", "image/png", png(64)).await;
    assert_eq!(status, 201, "{picture}");

    for (m, disposition) in [(&page, "attachment"), (&picture, "inline")] {
        // Act
        let res = app
            .client
            .get(format!(
                "{}/api/v1/media/{}/content",
                app.address,
                m["id"].as_str().expect("id")
            ))
            .bearer_auth(&app.api_key)
            .send()
            .await
            .expect("download");

        // Assert
        assert_eq!(res.status().as_u16(), 200);
        assert!(
            header(&res, "content-disposition").starts_with(disposition),
            "{m}"
        );
        assert!(header(&res, "content-security-policy").contains("sandbox"));
        assert_eq!(header(&res, "x-content-type-options"), "nosniff");
    }
}
