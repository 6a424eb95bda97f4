//! Contacts' part in a message's life: nobody who opted out is sent to, and a message from a
//! contact opens their 24 h window or opts them out.
use futures::future::BoxFuture;
use sea_orm::{DatabaseConnection, DbErr};

use crate::{
    outbox::{
        hooks::{Inbound, Listener, SqlVeto, Veto},
        repo::MessageRow,
    },
    telemetry::redact,
};

/// The contacts listener.
pub struct ContactsListener {
    /// Texts that opt the sender out (`whatsapp.opt_out_keywords`), compared without case.
    pub opt_out_keywords: Vec<String>,
}

/// The campaign contact of the claimed message is gone or opted out (what
/// [`super::repo::is_opted_out`] answers).
const OPTED_OUT_SQL: &str = "messages.contact_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM \
     contacts WHERE contacts.id = messages.contact_id AND NOT contacts.opted_out)";

impl Listener for ContactsListener {
    fn name(&self) -> &'static str {
        "contacts"
    }

    fn veto_sql(&self) -> Option<SqlVeto> {
        Some(SqlVeto {
            condition: OPTED_OUT_SQL,
            code: "opted-out",
            detail: "the contact opted out",
        })
    }

    fn veto<'a>(
        &'a self,
        db: &'a DatabaseConnection,
        msg: &'a MessageRow,
    ) -> BoxFuture<'a, Result<Option<Veto>, DbErr>> {
        Box::pin(async move {
            // A campaign contact who opted out after the campaign started is never sent to.
            let Some(contact_id) = &msg.contact_id else {
                return Ok(None);
            };
            Ok(super::repo::is_opted_out(db, contact_id)
                .await?
                .then(|| Veto {
                    code: "opted-out",
                    detail: "the contact opted out".into(),
                }))
        })
    }

    fn inbound<'a>(
        &'a self,
        db: &'a DatabaseConnection,
        m: &'a Inbound<'a>,
    ) -> BoxFuture<'a, Result<(), DbErr>> {
        Box::pin(async move {
            let opt_out = self
                .opt_out_keywords
                .iter()
                .any(|k| k.eq_ignore_ascii_case(m.text.trim()));
            let found = super::repo::record_inbound(db, m.owner_id, m.from, m.at, opt_out).await?;
            if opt_out {
                tracing::info!(contact = %redact(m.from), found, "contact opted out by message");
            }
            Ok(())
        })
    }
}
