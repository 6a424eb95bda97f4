//! `legacy_tokens`: integrations imported from Pingui keep their clients' tokens. Each row ties
//! one of our integrations to the Pingui integration it came from: Pingui's id, chat and token
//! hash (to find the row a presented token belongs to) and Pingui's `JWT_SECRET`, encrypted with
//! the server's key (to check the token's signature). Revoking our integration ends the token.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum LegacyTokens {
    Table,
    IntegrationId,
    Source,
    LegacyId,
    ChatId,
    TokenHash,
    Secret,
    SecretFingerprint,
    ImportedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(LegacyTokens::Table)
                    .col(
                        ColumnDef::new(LegacyTokens::IntegrationId)
                            .string_len(36)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(LegacyTokens::Source)
                            .string_len(32)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(LegacyTokens::LegacyId)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(ColumnDef::new(LegacyTokens::ChatId).string_len(64).null())
                    .col(
                        ColumnDef::new(LegacyTokens::TokenHash)
                            .string_len(128)
                            .null(),
                    )
                    .col(ColumnDef::new(LegacyTokens::Secret).text().not_null())
                    .col(
                        ColumnDef::new(LegacyTokens::SecretFingerprint)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(LegacyTokens::ImportedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        // One row per Pingui integration of one Pingui installation (its secret): importing the
        // same database twice adds nothing.
        manager
            .create_index(
                Index::create()
                    .name("ux_legacy_tokens_origin")
                    .table(LegacyTokens::Table)
                    .col(LegacyTokens::Source)
                    .col(LegacyTokens::SecretFingerprint)
                    .col(LegacyTokens::LegacyId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        for (name, col) in [
            ("ix_legacy_tokens_token_hash", LegacyTokens::TokenHash),
            ("ix_legacy_tokens_legacy_id", LegacyTokens::LegacyId),
            ("ix_legacy_tokens_chat_id", LegacyTokens::ChatId),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(LegacyTokens::Table)
                        .col(col)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(LegacyTokens::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}
