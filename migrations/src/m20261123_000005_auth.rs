//! Sign-in and accountability: OIDC and local users, scoped and expiring API keys, server-side
//! sessions, pending OIDC logins, and the audit log.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Email,
    PasswordHash,
    LastLoginAt,
}

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    Scopes,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum Sessions {
    Table,
    Id,
    UserId,
    Kind,
    CsrfToken,
    RefreshToken,
    IdToken,
    TokenExpiresAt,
    ExpiresAt,
    CreatedAt,
    LastSeenAt,
}

#[derive(DeriveIden)]
enum OidcLogins {
    Table,
    Id,
    PkceVerifier,
    Nonce,
    ReturnTo,
    CreatedAt,
}

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    Id,
    At,
    ActorId,
    ActorKind,
    Action,
    Target,
    Status,
    Ip,
    RequestId,
}

fn ts(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

fn ts_null(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .timestamp_with_time_zone()
        .null()
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite takes one column per ALTER TABLE.
        for col in [
            ColumnDef::new(Users::Email).string().null().to_owned(),
            ColumnDef::new(Users::PasswordHash)
                .string()
                .null()
                .to_owned(),
            ts_null(Users::LastLoginAt),
        ] {
            let mut col = col;
            manager
                .alter_table(
                    Table::alter()
                        .table(Users::Table)
                        .add_column(&mut col)
                        .to_owned(),
                )
                .await?;
        }
        for col in [
            ColumnDef::new(ApiKeys::Scopes)
                .string()
                .not_null()
                .default("read write")
                .to_owned(),
            ts_null(ApiKeys::ExpiresAt),
        ] {
            let mut col = col;
            manager
                .alter_table(
                    Table::alter()
                        .table(ApiKeys::Table)
                        .add_column(&mut col)
                        .to_owned(),
                )
                .await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(Sessions::Table)
                    .col(
                        ColumnDef::new(Sessions::Id)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Sessions::UserId).string_len(36).not_null())
                    .col(ColumnDef::new(Sessions::Kind).string_len(16).not_null())
                    .col(
                        ColumnDef::new(Sessions::CsrfToken)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(ColumnDef::new(Sessions::RefreshToken).text().null())
                    .col(ColumnDef::new(Sessions::IdToken).text().null())
                    .col(ts_null(Sessions::TokenExpiresAt))
                    .col(ts(Sessions::ExpiresAt))
                    .col(ts(Sessions::CreatedAt))
                    .col(ts(Sessions::LastSeenAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_sessions_user")
                    .table(Sessions::Table)
                    .col(Sessions::UserId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(OidcLogins::Table)
                    .col(
                        ColumnDef::new(OidcLogins::Id)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(OidcLogins::PkceVerifier).text().not_null())
                    .col(ColumnDef::new(OidcLogins::Nonce).string().not_null())
                    .col(ColumnDef::new(OidcLogins::ReturnTo).string().not_null())
                    .col(ts(OidcLogins::CreatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AuditLog::Table)
                    .col(
                        ColumnDef::new(AuditLog::Id)
                            .string_len(36)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ts(AuditLog::At))
                    .col(ColumnDef::new(AuditLog::ActorId).string_len(36).null())
                    .col(
                        ColumnDef::new(AuditLog::ActorKind)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(ColumnDef::new(AuditLog::Action).string().not_null())
                    .col(ColumnDef::new(AuditLog::Target).text().null())
                    .col(ColumnDef::new(AuditLog::Status).integer().not_null())
                    .col(ColumnDef::new(AuditLog::Ip).string_len(64).null())
                    .col(ColumnDef::new(AuditLog::RequestId).string_len(64).null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_audit_log_at")
                    .table(AuditLog::Table)
                    .col(AuditLog::At)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            AuditLog::Table.into_iden(),
            OidcLogins::Table.into_iden(),
            Sessions::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
