//! Contacts: CRUD with E.164 normalisation, and CSV imports (seed headers, semicolons, BOM,
//! Latin-1, bad rows, duplicates) with progress, a downloadable error report and upserts that
//! never undo an opt-out.
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::{
    helpers::{Backend, TestApp, spawn_app},
    on_both_databases,
};

async fn call(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    app.api(method, path, body).await
}

async fn upload(app: &TestApp, query: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
    app.post_raw(&format!("contacts/imports{query}"), content_type, body)
        .await
}

/// Polls an import (every 5 ms, for up to 30 s) until `reached` holds of it.
async fn poll_import(
    app: &TestApp,
    id: &str,
    what: &str,
    reached: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = call(app, Method::GET, &format!("contacts/imports/{id}"), None).await;
        assert_eq!(status, 200, "{body}");
        if reached(&body) {
            return body;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: {body}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Polls an import until it is no longer running.
async fn finished(app: &TestApp, id: &str) -> Value {
    poll_import(app, id, "import still running", |i| {
        i["status"] != "running"
    })
    .await
}

/// An import's status and counters: rows read, imported, refused.
fn outcome(import: &Value) -> (Option<&str>, Option<i64>, Option<i64>, Option<i64>) {
    (
        import["status"].as_str(),
        import["total_rows"].as_i64(),
        import["imported"].as_i64(),
        import["failed"].as_i64(),
    )
}

/// `GET …/imports/{id}/errors`: the refused rows as a CSV response.
async fn error_report(app: &TestApp, id: &str) -> reqwest::Response {
    app.client
        .get(format!(
            "{}/api/v1/contacts/imports/{id}/errors",
            app.address
        ))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .expect("errors")
}

async fn contacts_crud(backend: Backend) {
    let app = spawn_app(backend).await;
    let (status, ana) = call(
        &app,
        Method::POST,
        "contacts",
        Some(
            json!({"phone": "612 34 56 78", "name": "Ana", "noun": "Sra.", "group": "VIP",
                    "attributes": {"ciudad": "Madrid"}}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{ana}");
    assert_eq!(ana["phone"], "+34612345678", "default region ES");
    assert_eq!(ana["attributes"]["ciudad"], "Madrid");
    let id = ana["id"].as_str().expect("id").to_owned();

    let (status, err) = call(
        &app,
        Method::POST,
        "contacts",
        Some(json!({"phone": "+34612345678"})),
    )
    .await;
    assert_eq!(
        (status, err["error"].as_str()),
        (409, Some("contact-exists"))
    );
    let (status, err) = call(&app, Method::POST, "contacts", Some(json!({"phone": "12"}))).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("validation-failed")),
        "{err}"
    );
    let (status, mx) = call(
        &app,
        Method::POST,
        "contacts",
        Some(json!({"phone": "55 1234 5678", "default_region": "MX", "group": "General"})),
    )
    .await;
    assert_eq!(status, 201, "{mx}");
    assert_eq!(mx["phone"], "+525512345678");

    let (status, list) = call(&app, Method::GET, "contacts?group=VIP", None).await;
    assert_eq!(status, 200);
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1));

    // Search (the dashboard's search box): name, any case, or digits of the phone; `%` and `_`
    // are literal.
    let phones = |list: &Value| -> Vec<String> {
        let mut v: Vec<String> = list["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|c| c["phone"].as_str().expect("phone").to_owned())
            .collect();
        v.sort();
        v
    };
    for (q, expected) in [
        ("aN", vec!["+34612345678"]),
        ("5512", vec!["+525512345678"]),
        ("612 34", vec!["+34612345678"]),
        ("%25", vec![]),
        ("nobody", vec![]),
    ] {
        let (status, list) = call(&app, Method::GET, &format!("contacts?q={q}"), None).await;
        assert_eq!(status, 200, "{q}: {list}");
        assert_eq!(phones(&list), expected, "q={q}");
    }
    let (status, err) = call(
        &app,
        Method::GET,
        &format!("contacts?q={}", "x".repeat(101)),
        None,
    )
    .await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("validation-failed")),
        "{err}"
    );

    let (status, patched) = call(
        &app,
        Method::PATCH,
        &format!("contacts/{id}"),
        Some(json!({"group": "General", "opted_out": true})),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["opted_out"], true);
    assert!(patched["opted_out_at"].is_string());
    let (status, err) = call(
        &app,
        Method::PATCH,
        &format!("contacts/{id}"),
        Some(json!({"opted_out": false})),
    )
    .await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("validation-failed"))
    );

    let (status, _) = call(&app, Method::DELETE, &format!("contacts/{id}"), None).await;
    assert_eq!(status, 204);
    let (status, err) = call(&app, Method::GET, &format!("contacts/{id}"), None).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (404, Some("contact-not-found"))
    );
}

async fn csv_import_reports_bad_rows_and_upserts(backend: Backend) {
    let app = spawn_app(backend).await;
    // An opted-out contact the file mentions again must stay opted out.
    let (_, existing) = call(
        &app,
        Method::POST,
        "contacts",
        Some(json!({"phone": "+34 699 111 222", "name": "Old name", "opted_out": true})),
    )
    .await;

    // The seed's columns, semicolons, a BOM, a Latin-1 row, bad and duplicate rows.
    let mut file = b"\xEF\xBB\xBFnombre;sustantivo;grupo;telefono;ciudad\r\n".to_vec();
    file.extend_from_slice(b"Ana;Sra.;VIP;612 345 678;Madrid\r\n");
    file.extend_from_slice(b"Jos\xe9;Sr.;General;+34 699 111 222;Sevilla\r\n");
    file.extend_from_slice(b"Sin telefono;Sr.;General;;Bilbao\r\n");
    file.extend_from_slice(b"Malo;Sr.;General;12;Vigo\r\n");
    file.extend_from_slice(b"Ana otra vez;Sra.;VIP;0034612345678;Madrid\r\n");
    file.extend_from_slice(b"Luis;Sr.;General;+1 202 555 0143;Boston\r\n");
    let (status, started) = upload(&app, "?filename=clientes.csv", "text/csv", file).await;
    assert_eq!(status, 202, "{started}");
    assert_eq!(started["status"], "running");
    let id = started["id"].as_str().expect("id").to_owned();

    let done = finished(&app, &id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        (
            done["total_rows"].as_i64(),
            done["imported"].as_i64(),
            done["failed"].as_i64()
        ),
        (Some(6), Some(3), Some(3)),
        "{done}"
    );
    assert_eq!(done["filename"], "clientes.csv");

    // The error report, as CSV.
    let res = error_report(&app, &id).await;
    assert_eq!(res.status().as_u16(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .expect("ct")
            .starts_with("text/csv")
    );
    let report = res.text().await.expect("text");
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines[0], "row,phone,error,message");
    assert!(lines[1].starts_with("4,,phone-missing,"), "{report}");
    assert!(lines[2].starts_with("5,12,phone-invalid,"), "{report}");
    assert!(
        lines[3].starts_with("6,0034612345678,duplicate-in-file,"),
        "{report}"
    );
    assert_eq!(lines.len(), 4);

    // What was written: E.164, the seed's fields, attributes, Latin-1 decoded; the opt-out kept.
    let (_, list) = call(&app, Method::GET, "contacts?limit=10", None).await;
    let contacts = list["items"].as_array().expect("contacts");
    assert_eq!(contacts.len(), 3);
    let by_phone = |p: &str| contacts.iter().find(|c| c["phone"] == p).cloned().expect(p);
    let ana = by_phone("+34612345678");
    assert_eq!(
        (
            ana["name"].as_str(),
            ana["noun"].as_str(),
            ana["group"].as_str()
        ),
        (Some("Ana"), Some("Sra."), Some("VIP"))
    );
    assert_eq!(ana["attributes"]["ciudad"], "Madrid");
    assert_eq!(ana["source"], format!("import:{id}"));
    let jose = by_phone("+34699111222");
    assert_eq!(jose["id"], existing["id"], "upserted, not duplicated");
    assert_eq!(jose["name"], "José");
    assert_eq!(jose["opted_out"], true, "an import never undoes an opt-out");
    assert_eq!(by_phone("+12025550143")["name"], "Luis");
}

/// A file of several batches: 3,000 good rows around a run of 1,500 bad ones, so batches end on
/// good rows (1,000 a batch) and on refused ones (1,000 at most). Every row is counted once,
/// every good one is stored and listable, every bad one is in the report with its line.
async fn a_file_of_many_batches_loses_no_row(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut file = b"nombre;grupo;telefono\n".to_vec();
    let mut good = 0;
    for i in 0..4_500u32 {
        let phone = if (1_200..2_700).contains(&i) {
            "12".to_owned()
        } else {
            good += 1;
            format!("6{:08}", 10_000_000 + i)
        };
        file.extend_from_slice(format!("P{i};G{};{phone}\n", i % 3).as_bytes());
    }
    let (status, started) = upload(&app, "", "text/csv", file).await;
    assert_eq!(status, 202, "{started}");
    let id = started["id"].as_str().expect("id").to_owned();
    let done = finished(&app, &id).await;
    assert_eq!(
        outcome(&done),
        (Some("completed"), Some(4_500), Some(good), Some(1_500)),
        "{done}"
    );

    let mut listed = 0;
    let mut cursor = String::new();
    loop {
        let (status, page) = call(
            &app,
            Method::GET,
            &format!("contacts?limit=1000&cursor={cursor}"),
            None,
        )
        .await;
        assert_eq!(status, 200, "{page}");
        let contacts = page["items"].as_array().expect("contacts");
        for c in contacts {
            assert!(c["created_at"].is_string(), "{c}");
            assert_eq!(c["source"], format!("import:{id}"));
        }
        listed += contacts.len();
        match page["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(listed, 3_000);

    let report = error_report(&app, &id).await.text().await.expect("text");
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines.len(), 1 + 1_500);
    // Line 1 is the header: data row i is on line i + 2.
    assert!(
        lines[1].starts_with("1202,12,phone-invalid,"),
        "{}",
        lines[1]
    );
    assert!(
        lines[1_500].starts_with("2701,12,phone-invalid,"),
        "{}",
        lines[1_500]
    );
}

async fn unusable_uploads_are_refused_at_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let (status, err) = upload(
        &app,
        "",
        "text/csv",
        b"nombre,ciudad\nAna,Madrid\n".to_vec(),
    )
    .await;
    assert_eq!(
        (status, err["error"].as_str()),
        (422, Some("invalid-csv")),
        "{err}"
    );
    assert!(
        err["message"]
            .as_str()
            .is_some_and(|m| m.contains("no phone column"))
    );
    let (status, err) = upload(&app, "", "text/csv", Vec::new()).await;
    assert_eq!((status, err["error"].as_str()), (422, Some("empty-upload")));
    let (status, err) = upload(&app, "", "application/json", b"{}".to_vec()).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("unsupported-media-type"))
    );
    let (status, err) = upload(
        &app,
        "?default_region=XX",
        "text/csv",
        b"phone\n1\n".to_vec(),
    )
    .await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("validation-failed"))
    );
    let (_, list) = call(&app, Method::GET, "contacts/imports", None).await;
    assert_eq!(
        list["items"].as_array().map(Vec::len),
        Some(0),
        "refused uploads leave nothing"
    );
}

/// A stop in the middle of an import leaves it `running` with its file kept; the next start runs
/// it again from the top (upserts make that harmless) and it completes with every row counted
/// once and every contact stored once.
async fn an_import_cut_by_a_stop_resumes_at_the_next_start(backend: Backend) {
    use pregonero::entities::{contact_imports, contacts};
    use sea_orm::{EntityTrait, PaginatorTrait};

    let mut app = spawn_app(backend).await;
    // Large enough that the stop lands mid-import even on a fast hour (60,000 rows once finished
    // in 0.55 s, before the stop took effect).
    const ROWS: i64 = 300_000;
    let mut file = b"nombre;telefono\n".to_vec();
    for i in 0..ROWS {
        file.extend_from_slice(format!("P{i};6{:08}\n", 10_000_000 + i).as_bytes());
    }
    let (status, started) = upload(&app, "", "text/csv", file).await;
    assert_eq!(status, 202, "{started}");
    let id = started["id"].as_str().expect("id").to_owned();
    // Stop as soon as the first batch is written.
    poll_import(&app, &id, "nothing written", |i| {
        i["total_rows"].as_i64() > Some(0)
    })
    .await;
    app.stop_server().await;

    let db = app.inspect_db().await;
    let cut = contact_imports::Entity::find_by_id(id.clone())
        .one(&db)
        .await
        .expect("query")
        .expect("import");
    assert_eq!(cut.status, "running", "{cut:?}");
    assert!(
        cut.total_rows < ROWS,
        "the stop came too late to test: {cut:?}"
    );
    let upload_file = app
        .settings
        .data_dir
        .join("imports")
        .join(format!("{id}.csv"));
    assert!(
        upload_file.exists(),
        "the upload is kept for the next start"
    );

    app.start_server().await;
    let done = finished(&app, &id).await;
    assert_eq!(
        outcome(&done),
        (Some("completed"), Some(ROWS), Some(ROWS), Some(0)),
        "{done}"
    );
    let stored = contacts::Entity::find().count(&db).await.expect("count");
    assert_eq!(stored, ROWS as u64);
    assert!(!upload_file.exists(), "a finished import's file is deleted");
}

on_both_databases!(
    contacts_crud,
    an_import_cut_by_a_stop_resumes_at_the_next_start,
    csv_import_reports_bad_rows_and_upserts,
    a_file_of_many_batches_loses_no_row,
    unusable_uploads_are_refused_at_once
);
