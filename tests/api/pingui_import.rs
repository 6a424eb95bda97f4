//! `pregonero import pingui`: Pingui's integrations come over with their chats, scopes and
//! statuses, and the tokens their clients hold (HS256 JWTs signed with Pingui's `JWT_SECRET`)
//! keep working until the integration is revoked here.
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::{
    helpers::{Backend, TestApp, spawn_app},
    on_both_databases,
};

const SECRET: &str = "pingui's jwt secret";

fn sign(claims: Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign")
}

/// A Pingui database as its schema has it (`Integrations`, Sequelize's columns).
fn pingui_db(path: &std::path::Path, rows: &[(i64, i64, Option<String>, &str, &str)]) {
    let conn = rusqlite::Connection::open(path).expect("pingui db");
    conn.execute_batch(
        "CREATE TABLE Integrations (
           id INTEGER PRIMARY KEY AUTOINCREMENT, chatId INTEGER NOT NULL,
           tokenHash STRING NOT NULL, scope STRING NOT NULL, rateLimit INTEGER NOT NULL,
           status TEXT DEFAULT 'pending', createdAt DATE NOT NULL, updatedAt DATE NOT NULL)",
    )
    .expect("schema");
    for (id, chat, hash, scope, status) in rows {
        conn.execute(
            "INSERT INTO Integrations VALUES (?1, ?2, ?3, ?4, 10, ?5, '2026-01-01', '2026-01-01')",
            rusqlite::params![
                id,
                chat,
                hash.clone().unwrap_or_else(|| "$2b$10$opaque".into()),
                scope,
                status
            ],
        )
        .expect("row");
    }
}

/// Runs `pregonero import pingui` against the test server's database; returns its output.
fn import(app: &TestApp, db: &std::path::Path, secret: &str) -> (bool, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pregonero"));
    cmd.args(["import", "pingui", "--db"])
        .arg(db)
        .env("PINGUI_JWT_SECRET", secret)
        .env("PREGONERO_DATA_DIR", &app.settings.data_dir)
        .env("PREGONERO_LOG_FORMAT", "json")
        .env_remove("PREGONERO_DATABASE_URL");
    if let Some(url) = &app.settings.database_url {
        cmd.env("PREGONERO_DATABASE_URL", url);
    }
    if let Some(key) = &app.settings.secret_key {
        use secrecy::ExposeSecret;
        cmd.env("PREGONERO_SECRET_KEY", key.expose_secret());
    }
    let out = cmd.output().expect("run pregonero import");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

async fn alert_code(app: &TestApp, token: &str, text: &str) -> (u16, Value) {
    let res = app.alert(token, &json!({"message": text})).await;
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn old_tokens_work_after_import_and_stop_after_revoke(backend: Backend) {
    // Arrange: our bot, and Pingui's database with four integrations.
    let app = spawn_app(backend).await;
    app.create_bot(None).await;
    // The chats talked to Pingui's bot before: Telegram knows them.
    for chat in [5551, 5552, 5553, 5554] {
        app.telegram.add_chat(chat);
    }
    let by_hash = sign(
        json!({"chatId": 5551, "scope": "alert", "iat": 1_767_225_600}),
        SECRET,
    );
    let by_claims = sign(json!({"id": 2, "chatId": 5552}), SECRET);
    let of_revoked = sign(json!({"id": 3, "chatId": 5553}), SECRET);
    let hash = hex::encode(Sha256::digest(by_hash.as_bytes()));
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("pingui.db");
    pingui_db(
        &db,
        &[
            (1, 5551, Some(hash), "alert", "active"),
            (2, 5552, None, "", "active"),
            (3, 5553, None, "alert", "revoked"),
            (4, 5554, None, "alert", "archived"),
        ],
    );

    // Act: import, twice (the second run adds nothing).
    let (ok, first) = import(&app, &db, SECRET);
    assert!(ok, "{first}");
    let (ok, again) = import(&app, &db, SECRET);
    assert!(ok, "{again}");

    // Assert: three imported (two active, one revoked), one refused with why; then nothing new.
    assert!(
        first.contains("4 Pingui integrations read: 3 imported (2 active, 0 pending, 1 revoked), 0 imported before, 1 refused"),
        "{first}"
    );
    assert!(
        first.contains("refused #4: unknown status `archived`"),
        "{first}"
    );
    assert!(!first.contains(SECRET), "the secret is never printed");
    assert!(
        again.contains("0 imported (0 active, 0 pending, 0 revoked), 3 imported before"),
        "{again}"
    );
    let (_, list) = app.get_json("integrations").await;
    let imported = list["items"].as_array().expect("items");
    assert_eq!(imported.len(), 3, "{list}");
    let one = imported
        .iter()
        .find(|i| i["name"] == "Pingui #1")
        .expect("#1");
    assert_eq!(
        (one["status"].as_str(), one["chat_id"].as_str()),
        (Some("active"), Some("5551"))
    );
    assert_eq!(one["scopes"], json!(["alert:send"]));

    // The old tokens work: found by Pingui's token hash, or by what their claims name.
    assert_eq!(alert_code(&app, &by_hash, "disk full").await.0, 202);
    app.wait_for_text(5551, "disk full").await;
    assert_eq!(alert_code(&app, &by_claims, "cpu hot").await.0, 202);
    app.wait_for_text(5552, "cpu hot").await;

    // Refused: a revoked one, a forged one, one naming another chat, an expired one.
    let refused = [
        (of_revoked.clone(), "token-revoked"),
        (
            sign(json!({"id": 2, "chatId": 5552}), "not the secret"),
            "invalid-token",
        ),
        (
            sign(json!({"id": 2, "chatId": 9999}), SECRET),
            "invalid-token",
        ),
        (
            sign(json!({"id": 2, "chatId": 5552, "exp": 1_000_000}), SECRET),
            "token-expired",
        ),
    ];
    for (token, code) in &refused {
        let (status, body) = alert_code(&app, token, "no").await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some(*code)),
            "{body}"
        );
    }

    // #1's token may only send (Pingui's scope `alert`); #2's had no scope Pingui named, so all.
    let res = app
        .client
        .post(format!("{}/api/revokeIntegration", app.address))
        .bearer_auth(&by_hash)
        .json(&json!({}))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status().as_u16(), 403, "alert scope only");

    // Revoked here, natively for #1 and with its own old token (Pingui's route) for #2.
    let res = app
        .client
        .delete(format!(
            "{}/api/v1/integrations/{}",
            app.address,
            one["id"].as_str().expect("id")
        ))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status().as_u16(), 200);
    let res = app
        .client
        .post(format!("{}/api/revokeIntegration", app.address))
        .bearer_auth(&by_claims)
        .json(&json!({}))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status().as_u16(), 200);
    for token in [&by_hash, &by_claims] {
        let (status, body) = alert_code(&app, token, "after").await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("token-revoked")),
            "{body}"
        );
    }
}

on_both_databases!(old_tokens_work_after_import_and_stop_after_revoke);

/// The import refuses plainly: no secret, no bot, a file that is not Pingui's.
#[actix_web::test]
async fn the_import_says_what_is_missing() {
    let app = spawn_app(Backend::Sqlite).await;
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("pingui.db");
    pingui_db(&db, &[(1, 5551, None, "alert", "active")]);

    let (ok, out) = import(&app, &db, "");
    assert!(
        !ok && out.contains("set PINGUI_JWT_SECRET to Pingui's JWT_SECRET"),
        "{out}"
    );
    let (ok, out) = import(&app, &db, SECRET);
    assert!(
        !ok && out.contains("that owner has no Telegram bot"),
        "{out}"
    );
    app.create_bot(None).await;
    let other = dir.path().join("other.db");
    rusqlite::Connection::open(&other)
        .expect("db")
        .execute_batch("CREATE TABLE t (x)")
        .expect("table");
    let (ok, out) = import(&app, &other, SECRET);
    assert!(
        !ok && out.contains("no Pingui `Integrations` table"),
        "{out}"
    );
}
