//! What the template routes do: validate, store, preview and check against an audience.
use serde::{Deserialize, Serialize};

use super::{
    Compiled, MAX_BODY_CHARS, TemplateError, context,
    repo::{self, TemplateRow},
};
use crate::{
    auth::Caller,
    contacts,
    domain::{ContactId, MediaId},
    error::FieldError,
    state::AppState,
};

/// Contacts listed by `check` (the total is always counted).
const CHECK_LIST: usize = 100;
/// Contacts read per page by `check`.
const CHECK_PAGE: u64 = 5_000;

/// The fields of a create (all required) or an update (any).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TemplateChange)]
pub struct Fields {
    /// 1 to 200 characters. Required to create.
    name: Option<String>,
    /// Jinja syntax (`Hola {{ sustantivo }} {{ nombre }}`), up to 4096 characters. Required to
    /// create.
    #[schema(max_length = 4096)]
    body: Option<String>,
    /// One of the caller's files, sent with every message made from the template.
    media_id: Option<MediaId>,
}

async fn validate(state: &AppState, caller: &Caller, b: &Fields) -> Result<(), TemplateError> {
    let mut errors = Vec::new();
    if let Some(name) = &b.name
        && (name.trim().is_empty() || name.chars().count() > 200)
    {
        errors.push(FieldError::new(
            "name",
            "invalid-format",
            "1 to 200 characters",
        ));
    }
    if let Some(body) = &b.body {
        if body.trim().is_empty() || body.chars().count() > MAX_BODY_CHARS {
            errors.push(FieldError::new(
                "body",
                "invalid-format",
                format!("1 to {MAX_BODY_CHARS} characters"),
            ));
        } else if let Err(e) = Compiled::new(body) {
            errors.push(FieldError::new("body", "invalid-template", e));
        }
    }
    if let Some(media_id) = &b.media_id {
        let owned = crate::media::find_owned(&state.db, &caller.user_id, media_id)
            .await?
            .is_some();
        if !owned {
            errors.push(FieldError::new(
                "media_id",
                "not-found",
                format!("no media `{media_id}`"),
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(TemplateError::Invalid(errors))
    }
}

/// The template `id` if the caller may see it.
pub async fn find(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<TemplateRow, TemplateError> {
    repo::find(&state.db, id)
        .await?
        .filter(|t| caller.can_access(&t.owner_id))
        .ok_or_else(|| TemplateError::NotFound(id.to_owned()))
}

/// Stores a new template of the caller's.
pub async fn create(
    state: &AppState,
    caller: &Caller,
    b: Fields,
) -> Result<TemplateRow, TemplateError> {
    let mut required = Vec::new();
    if b.name.is_none() {
        required.push(FieldError::new("name", "required", "a name is required"));
    }
    if b.body.is_none() {
        required.push(FieldError::new("body", "required", "a body is required"));
    }
    if !required.is_empty() {
        return Err(TemplateError::Invalid(required));
    }
    validate(state, caller, &b).await?;
    let name = b.name.unwrap_or_default();
    let body = b.body.unwrap_or_default();
    Ok(repo::insert(
        &state.db,
        &caller.user_id,
        name.trim(),
        &body,
        b.media_id,
        state.clock.now(),
    )
    .await?)
}

/// One page of the caller's templates, oldest first.
pub async fn list(
    state: &AppState,
    caller: &Caller,
    page: &crate::page::PageRequest,
) -> Result<crate::page::Page<TemplateRow>, TemplateError> {
    Ok(repo::list_for(&state.db, &caller.user_id, page).await?)
}

/// Changes the fields that are given.
pub async fn update(
    state: &AppState,
    caller: &Caller,
    id: &str,
    b: Fields,
) -> Result<TemplateRow, TemplateError> {
    let t = find(state, caller, id).await?;
    validate(state, caller, &b).await?;
    let name = b.name.map(|n| n.trim().to_owned());
    Ok(repo::update(&state.db, t, name, b.body, b.media_id, state.clock.now()).await?)
}

/// Deletes a template.
pub async fn delete(state: &AppState, caller: &Caller, id: &str) -> Result<(), TemplateError> {
    let t = find(state, caller, id).await?;
    Ok(repo::delete(&state.db, &t.id).await?)
}

/// The text one contact would get.
pub struct Preview {
    /// The template.
    pub template: TemplateRow,
    /// The contact.
    pub contact_id: ContactId,
    /// The rendered text.
    pub text: String,
}

/// Renders the template for one of its owner's contacts, or says which variables it lacks.
pub async fn preview(
    state: &AppState,
    caller: &Caller,
    id: &str,
    contact_id: &ContactId,
) -> Result<Preview, TemplateError> {
    let t = find(state, caller, id).await?;
    let contact = contacts::repo::find_owned(&state.db, &t.owner_id, contact_id)
        .await?
        .ok_or_else(|| TemplateError::ContactNotFound(contact_id.clone()))?;
    let vars = context(&contact);
    let compiled = Compiled::new(&t.body).map_err(TemplateError::Unparsable)?;
    let lacking = compiled.blocking(&vars);
    if !lacking.is_empty() {
        return Err(TemplateError::MissingVariables {
            contact_id: contact.id,
            lacking,
        });
    }
    let text = compiled
        .render(&vars)
        .map_err(TemplateError::RenderFailed)?;
    Ok(Preview {
        template: t,
        contact_id: contact.id,
        text,
    })
}

/// What `check` found (keys in the order the answer always had).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = TemplateCheck)]
pub struct Check {
    /// The first 100 contacts that lack a variable.
    contacts: Vec<CheckedContact>,
    /// Contacts in the audience.
    contacts_checked: u64,
    /// Contacts the template cannot be rendered for.
    contacts_missing_variables: u64,
    /// `true` when every contact has what the template needs.
    ready: bool,
    template_id: String,
    /// The variables the template uses.
    variables: Vec<String>,
}

/// A contact the template cannot be rendered for.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = TemplateCheckContact)]
pub struct CheckedContact {
    contact_id: ContactId,
    /// The variables it lacks.
    missing: Vec<String>,
    phone: String,
}

/// Walks the audience (the owner's reachable contacts, of `groups` when given) and counts
/// those the template cannot be rendered for, listing the first [`CHECK_LIST`].
pub async fn check(
    state: &AppState,
    caller: &Caller,
    id: &str,
    groups: Option<Vec<String>>,
) -> Result<Check, TemplateError> {
    let t = find(state, caller, id).await?;
    let compiled = Compiled::new(&t.body).map_err(TemplateError::Unparsable)?;
    let groups = groups.unwrap_or_default();
    let (mut checked, mut affected) = (0u64, 0u64);
    let mut listed = Vec::new();
    let mut after = String::new();
    loop {
        let page = contacts::repo::reachable_page(
            &state.db,
            &t.owner_id,
            &groups,
            &[],
            &after,
            CHECK_PAGE,
        )
        .await?;
        let Some(last) = page.last() else { break };
        after = last.id.to_string();
        for c in &page {
            checked += 1;
            let lacking = compiled.blocking(&context(c));
            if !lacking.is_empty() {
                affected += 1;
                if listed.len() < CHECK_LIST {
                    listed.push(CheckedContact {
                        contact_id: c.id.clone(),
                        missing: lacking,
                        phone: c.phone.clone(),
                    });
                }
            }
        }
    }
    Ok(Check {
        contacts: listed,
        contacts_checked: checked,
        contacts_missing_variables: affected,
        ready: affected == 0,
        template_id: t.id,
        variables: compiled.variables().iter().cloned().collect(),
    })
}
