//! `wa_session_store`: a WhatsApp Web session's protocol state (device keys, identities,
//! pre-keys, Signal sessions, sender keys, app-state keys and versions, LID mappings), one row per
//! record, written through the library's storage traits as it changes. The key is an HMAC of the
//! record's own key (which names the contact's phone) and the value is encrypted with the server's
//! secret key, so the table says nothing without it.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum WaSessionStore {
    Table,
    ChannelId,
    Ns,
    K,
    V,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(WaSessionStore::Table)
                    .col(
                        ColumnDef::new(WaSessionStore::ChannelId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(ColumnDef::new(WaSessionStore::Ns).string_len(16).not_null())
                    .col(ColumnDef::new(WaSessionStore::K).string_len(64).not_null())
                    .col(ColumnDef::new(WaSessionStore::V).text().not_null())
                    .col(
                        ColumnDef::new(WaSessionStore::UpdatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(WaSessionStore::ChannelId)
                            .col(WaSessionStore::Ns)
                            .col(WaSessionStore::K),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(WaSessionStore::Table).to_owned())
            .await
    }
}
