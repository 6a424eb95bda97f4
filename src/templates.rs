//! Message templates: Jinja syntax rendered by minijinja with each contact's variables
//! (`nombre`/`name`, `sustantivo`/`noun`, `grupo`/`group`, `telefono`/`phone` and every
//! attribute). A variable a contact lacks is an error, never an empty gap: `check` lists the
//! contacts a template cannot be rendered for before anything is sent.
use std::collections::{BTreeMap, BTreeSet};

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use minijinja::{Environment, UndefinedBehavior};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{
    auth::Caller,
    entities::{contacts, templates},
    error::{ApiError, FieldError},
    state::AppState,
};

/// Longest template body, in characters (WhatsApp's text limit).
pub const MAX_BODY_CHARS: usize = 4096;
/// Contacts listed by `check` (the total is always counted).
const CHECK_LIST: usize = 100;

/// `/api/v1/templates` routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/templates", web::post().to(create))
        .route("/templates", web::get().to(list))
        .route("/templates/{id}", web::get().to(get))
        .route("/templates/{id}", web::patch().to(update))
        .route("/templates/{id}", web::delete().to(delete))
        .route("/templates/{id}/preview", web::post().to(preview))
        .route("/templates/{id}/check", web::post().to(check));
}

/// Name of the one template in a [`Compiled`]'s environment.
const NAME: &str = "message";

/// A template body parsed once: the variables it uses, and renders for any number of contacts
/// (`check` renders an audience of thousands without parsing the body again).
pub struct Compiled {
    env: Environment<'static>,
    variables: BTreeSet<String>,
}

impl Compiled {
    /// Parses `body`; the error says why it does not parse.
    pub fn new(body: &str) -> Result<Self, String> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.add_template_owned(NAME, body.to_owned())
            .map_err(|e| e.to_string())?;
        let variables = env
            .get_template(NAME)
            .map_err(|e| e.to_string())?
            .undeclared_variables(false)
            .into_iter()
            .collect();
        Ok(Self { env, variables })
    }

    /// The variables the template uses.
    pub fn variables(&self) -> &BTreeSet<String> {
        &self.variables
    }

    /// Renders for one contact's variables.
    pub fn render(&self, vars: &BTreeMap<String, String>) -> Result<String, String> {
        self.env
            .get_template(NAME)
            .and_then(|t| t.render(minijinja::Value::from(vars.clone())))
            .map_err(|e| e.to_string())
    }

    /// The variables the template uses that `vars` has no value for.
    pub fn missing(&self, vars: &BTreeMap<String, String>) -> Vec<String> {
        self.variables
            .iter()
            .filter(|v| !vars.contains_key(v.as_str()))
            .cloned()
            .collect()
    }

    /// What stops the template from rendering for `vars`: the absent variables it needs (a
    /// variable used only under `{% if x is defined %}` is not needed), or nothing when it
    /// renders.
    pub fn blocking(&self, vars: &BTreeMap<String, String>) -> Vec<String> {
        let absent = self.missing(vars);
        if absent.is_empty() || self.render(vars).is_ok() {
            return Vec::new();
        }
        // One absent variable at a time, with the others filled in: those whose absence alone
        // breaks the render are the ones the contact must get.
        let culprits: Vec<String> = absent
            .iter()
            .filter(|candidate| {
                let mut filled = vars.clone();
                for other in absent.iter().filter(|o| o != candidate) {
                    filled.insert(other.clone(), "x".into());
                }
                self.render(&filled).is_err()
            })
            .cloned()
            .collect();
        if culprits.is_empty() {
            absent
        } else {
            culprits
        }
    }
}

/// A contact's variables: the seed's Spanish names, their English twins, and its attributes.
pub fn context(c: &contacts::Model) -> BTreeMap<String, String> {
    let mut vars: BTreeMap<String, String> = c
        .attributes
        .as_deref()
        .and_then(|a| serde_json::from_str(a).ok())
        .unwrap_or_default();
    let mut put = |keys: [&str; 2], value: Option<&String>| {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            for k in keys {
                vars.insert(k.into(), v.clone());
            }
        }
    };
    put(["nombre", "name"], c.name.as_ref());
    put(["sustantivo", "noun"], c.noun.as_ref());
    put(["grupo", "group"], c.group_name.as_ref());
    put(["telefono", "phone"], Some(&c.phone));
    vars
}

#[derive(Debug, Serialize)]
struct TemplateView {
    id: String,
    name: String,
    body: String,
    media_id: Option<String>,
    variables: Vec<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<templates::Model> for TemplateView {
    fn from(t: templates::Model) -> Self {
        Self {
            variables: Compiled::new(&t.body)
                .map(|c| c.variables().iter().cloned().collect())
                .unwrap_or_default(),
            id: t.id,
            name: t.name,
            body: t.body,
            media_id: t.media_id,
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateBody {
    name: Option<String>,
    body: Option<String>,
    media_id: Option<String>,
}

fn field(name: &str, code: &'static str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: name.into(),
        code,
        message: message.into(),
    }
}

async fn validate(state: &AppState, caller: &Caller, b: &TemplateBody) -> Result<(), ApiError> {
    let mut errors = Vec::new();
    if let Some(name) = &b.name
        && (name.trim().is_empty() || name.chars().count() > 200)
    {
        errors.push(field("name", "invalid-format", "1 to 200 characters"));
    }
    if let Some(body) = &b.body {
        if body.trim().is_empty() || body.chars().count() > MAX_BODY_CHARS {
            errors.push(field(
                "body",
                "invalid-format",
                format!("1 to {MAX_BODY_CHARS} characters"),
            ));
        } else if let Err(e) = Compiled::new(body) {
            errors.push(field("body", "invalid-template", e));
        }
    }
    if let Some(media_id) = &b.media_id {
        let owned = crate::media::find_owned(&state.db, &caller.user_id, media_id)
            .await?
            .is_some();
        if !owned {
            errors.push(field(
                "media_id",
                "not-found",
                format!("no media `{media_id}`"),
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Invalid(errors))
    }
}

async fn find(state: &AppState, caller: &Caller, id: &str) -> Result<templates::Model, ApiError> {
    templates::Entity::find_by_id(id.to_owned())
        .one(&state.db)
        .await?
        .filter(|t| caller.can_access(&t.owner_id))
        .ok_or_else(|| ApiError::NotFound("template-not-found", format!("no template `{id}`")))
}

/// `POST /api/v1/templates`.
async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<TemplateBody>,
) -> Result<HttpResponse, ApiError> {
    let b = body.into_inner();
    let mut required = Vec::new();
    if b.name.is_none() {
        required.push(field("name", "required", "a name is required"));
    }
    if b.body.is_none() {
        required.push(field("body", "required", "a body is required"));
    }
    if !required.is_empty() {
        return Err(ApiError::Invalid(required));
    }
    validate(&state, &caller, &b).await?;
    let now = state.clock.now();
    let row = templates::ActiveModel {
        id: Set(uuid::Uuid::now_v7().to_string()),
        owner_id: Set(caller.user_id.clone()),
        name: Set(b.name.unwrap_or_default().trim().to_owned()),
        body: Set(b.body.unwrap_or_default()),
        media_id: Set(b.media_id),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&state.db)
    .await?;
    Ok(HttpResponse::Created().json(TemplateView::from(row)))
}

/// `GET /api/v1/templates`.
async fn list(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    let rows = templates::Entity::find()
        .filter(templates::Column::OwnerId.eq(caller.user_id.clone()))
        .order_by_asc(templates::Column::Name)
        .all(&state.db)
        .await?;
    let list: Vec<TemplateView> = rows.into_iter().map(TemplateView::from).collect();
    Ok(HttpResponse::Ok().json(json!({ "templates": list })))
}

/// `GET /api/v1/templates/{id}`.
async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(TemplateView::from(find(&state, &caller, &id).await?)))
}

/// `PATCH /api/v1/templates/{id}`.
async fn update(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    body: web::Json<TemplateBody>,
) -> Result<HttpResponse, ApiError> {
    let t = find(&state, &caller, &id).await?;
    let b = body.into_inner();
    validate(&state, &caller, &b).await?;
    let mut active = t.into_active_model();
    if let Some(name) = b.name {
        active.name = Set(name.trim().to_owned());
    }
    if let Some(body) = b.body {
        active.body = Set(body);
    }
    if let Some(media_id) = b.media_id {
        active.media_id = Set(Some(media_id));
    }
    active.updated_at = Set(state.clock.now());
    let row = active.update(&state.db).await?;
    Ok(HttpResponse::Ok().json(TemplateView::from(row)))
}

/// `DELETE /api/v1/templates/{id}`.
async fn delete(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let t = find(&state, &caller, &id).await?;
    templates::Entity::delete_by_id(t.id)
        .exec(&state.db)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PreviewBody {
    contact_id: String,
}

/// `POST /api/v1/templates/{id}/preview {contact_id}`: the text that contact would get, or
/// `422 missing-variables` naming what the contact lacks.
async fn preview(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    body: web::Json<PreviewBody>,
) -> Result<HttpResponse, ApiError> {
    let t = find(&state, &caller, &id).await?;
    let contact = contacts::Entity::find_by_id(body.contact_id.clone())
        .one(&state.db)
        .await?
        .filter(|c| c.owner_id == t.owner_id)
        .ok_or_else(|| {
            ApiError::NotFound(
                "contact-not-found",
                format!("no contact `{}`", body.contact_id),
            )
        })?;
    let vars = context(&contact);
    let compiled =
        Compiled::new(&t.body).map_err(|e| ApiError::Unprocessable("invalid-template", e))?;
    let lacking = compiled.blocking(&vars);
    if !lacking.is_empty() {
        return Err(ApiError::Unprocessable(
            "missing-variables",
            format!(
                "contact {} has no value for: {}",
                contact.id,
                lacking.join(", ")
            ),
        ));
    }
    let text = compiled
        .render(&vars)
        .map_err(|e| ApiError::Unprocessable("render-failed", e))?;
    Ok(HttpResponse::Ok().json(json!({
        "template_id": t.id, "contact_id": contact.id, "text": text, "media_id": t.media_id,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckBody {
    /// Only contacts of these groups (default: all of the owner's contacts).
    groups: Option<Vec<String>>,
}

/// `POST /api/v1/templates/{id}/check {groups}`: which of the audience's contacts lack a
/// variable the template uses (opted-out contacts are not in an audience).
async fn check(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    body: web::Json<CheckBody>,
) -> Result<HttpResponse, ApiError> {
    let t = find(&state, &caller, &id).await?;
    let compiled =
        Compiled::new(&t.body).map_err(|e| ApiError::Unprocessable("invalid-template", e))?;
    let mut checked = 0u64;
    let mut affected = 0u64;
    let mut listed = Vec::new();
    let mut after = String::new();
    // Pages of contacts by id, so an audience of millions is never in memory at once.
    loop {
        let mut q = contacts::Entity::find()
            .filter(contacts::Column::OwnerId.eq(t.owner_id.clone()))
            .filter(contacts::Column::OptedOut.eq(false))
            .filter(contacts::Column::Id.gt(after.clone()))
            .order_by_asc(contacts::Column::Id)
            .limit(5_000);
        if let Some(groups) = &body.groups {
            q = q.filter(contacts::Column::GroupName.is_in(groups.clone()));
        }
        let page = q.all(&state.db).await?;
        let Some(last) = page.last() else { break };
        after = last.id.clone();
        for c in &page {
            checked += 1;
            let lacking = compiled.blocking(&context(c));
            if !lacking.is_empty() {
                affected += 1;
                if listed.len() < CHECK_LIST {
                    listed.push(json!({"contact_id": c.id, "phone": c.phone, "missing": lacking}));
                }
            }
        }
    }
    Ok(HttpResponse::Ok().json(json!({
        "template_id": t.id,
        "variables": compiled.variables(),
        "contacts_checked": checked,
        "contacts_missing_variables": affected,
        "contacts": listed,
        "ready": affected == 0,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_missing_and_render() {
        let body = "Hola {{ sustantivo }} {{ nombre }}, {% if ciudad is defined %}en {{ ciudad }}{% endif %} tu grupo es {{ grupo }}";
        let t = Compiled::new(body).expect("parses");
        let vars = t.variables();
        assert_eq!(
            vars.iter().map(String::as_str).collect::<Vec<_>>(),
            ["ciudad", "grupo", "nombre", "sustantivo"]
        );
        let ctx = BTreeMap::from([
            ("nombre".to_owned(), "Ana".to_owned()),
            ("sustantivo".to_owned(), "Sra.".to_owned()),
            ("grupo".to_owned(), "VIP".to_owned()),
            ("ciudad".to_owned(), "Madrid".to_owned()),
        ]);
        assert!(t.missing(&ctx).is_empty());
        assert_eq!(
            t.render(&ctx).expect("renders"),
            "Hola Sra. Ana, en Madrid tu grupo es VIP"
        );
        let mut partial = ctx.clone();
        partial.remove("grupo");
        assert_eq!(t.missing(&partial), ["grupo"]);
        assert!(
            t.render(&partial).is_err(),
            "strict: a missing variable is an error"
        );
        assert_eq!(t.blocking(&partial), ["grupo"]);
        let mut no_city = ctx.clone();
        no_city.remove("ciudad");
        assert!(
            t.blocking(&no_city).is_empty(),
            "an optional variable is not needed"
        );
        assert_eq!(
            t.render(&no_city).expect("renders"),
            "Hola Sra. Ana,  tu grupo es VIP"
        );
        assert!(Compiled::new("Hola {{ nombre").is_err());
    }
}
