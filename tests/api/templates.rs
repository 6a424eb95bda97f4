//! Templates: variables checked at creation, preview per contact, and the audience check that
//! lists the contacts a template cannot be rendered for before anything is sent.
use reqwest::Method;
use serde_json::{Value, json};

use crate::{
    helpers::{Backend, TestApp, spawn_app},
    on_both_databases,
};

async fn call(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    app.api(method, path, body).await
}

async fn contact(app: &TestApp, body: Value) -> String {
    let (status, c) = call(app, Method::POST, "contacts", Some(body)).await;
    assert_eq!(status, 201, "{c}");
    c["id"].as_str().expect("id").to_owned()
}

async fn templates_preview_and_missing_variables(backend: Backend) {
    let app = spawn_app(backend).await;
    let ana = contact(
        &app,
        json!({"phone": "+34612345678", "name": "Ana", "noun": "Sra.", "group": "VIP",
               "attributes": {"ciudad": "Madrid"}}),
    )
    .await;
    let luis = contact(
        &app,
        json!({"phone": "+34699111222", "name": "Luis", "group": "VIP"}),
    )
    .await;
    let _other = contact(
        &app,
        json!({"phone": "+34699111333", "name": "Eva", "noun": "Sra.", "group": "General"}),
    )
    .await;
    let _gone = contact(
        &app,
        json!({"phone": "+34699111444", "group": "VIP", "opted_out": true}),
    )
    .await;

    // A template that does not parse is refused with the reason.
    let (status, err) = call(
        &app,
        Method::POST,
        "templates",
        Some(json!({"name": "x", "body": "Hola {{ nombre"})),
    )
    .await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["errors"][0]["code"], "invalid-template");

    let body = "Hola {{ sustantivo }} {{ nombre }}{% if ciudad is defined %} de {{ ciudad }}{% endif %}, eres {{ grupo }}";
    let (status, t) = call(
        &app,
        Method::POST,
        "templates",
        Some(json!({"name": "bienvenida", "body": body})),
    )
    .await;
    assert_eq!(status, 201, "{t}");
    assert_eq!(
        t["variables"],
        json!(["ciudad", "grupo", "nombre", "sustantivo"])
    );
    let id = t["id"].as_str().expect("id").to_owned();

    let (status, p) = call(
        &app,
        Method::POST,
        &format!("templates/{id}/preview"),
        Some(json!({"contact_id": ana})),
    )
    .await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["text"], "Hola Sra. Ana de Madrid, eres VIP");

    // Luis has no `sustantivo`: the preview says so instead of sending "Hola  Luis".
    let (status, err) = call(
        &app,
        Method::POST,
        &format!("templates/{id}/preview"),
        Some(json!({"contact_id": luis})),
    )
    .await;
    assert_eq!(
        (status, err["error"].as_str()),
        (422, Some("missing-variables")),
        "{err}"
    );
    assert!(
        err["message"]
            .as_str()
            .is_some_and(|m| m.contains("sustantivo"))
    );

    // The audience check: VIP, opted-out contacts excluded; Luis is listed with what he lacks.
    let (status, c) = call(
        &app,
        Method::POST,
        &format!("templates/{id}/check"),
        Some(json!({"groups": ["VIP"]})),
    )
    .await;
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["contacts_checked"], 2);
    assert_eq!(c["contacts_missing_variables"], 1);
    assert_eq!(c["ready"], false);
    assert_eq!(c["contacts"][0]["contact_id"], luis.as_str());
    assert_eq!(c["contacts"][0]["missing"], json!(["sustantivo"]));
    let (_, c) = call(
        &app,
        Method::POST,
        &format!("templates/{id}/check"),
        Some(json!({"groups": ["General"]})),
    )
    .await;
    assert_eq!(
        (c["contacts_checked"].as_u64(), c["ready"].as_bool()),
        (Some(1), Some(true)),
        "{c}"
    );

    // Edit, list, delete.
    let (status, t) = call(
        &app,
        Method::PATCH,
        &format!("templates/{id}"),
        Some(json!({"body": "Hola {{ nombre }}"})),
    )
    .await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["variables"], json!(["nombre"]));
    let (_, list) = call(&app, Method::GET, "templates", None).await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1));
    let (status, err) = call(
        &app,
        Method::POST,
        "templates",
        Some(json!({"name": "m", "body": "x", "media_id": "nope"})),
    )
    .await;
    assert_eq!(
        (status, err["errors"][0]["field"].as_str()),
        (400, Some("media_id"))
    );
    assert_eq!(
        call(&app, Method::DELETE, &format!("templates/{id}"), None)
            .await
            .0,
        204
    );
    let (status, err) = call(&app, Method::GET, &format!("templates/{id}"), None).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (404, Some("template-not-found"))
    );
}

on_both_databases!(templates_preview_and_missing_variables);
