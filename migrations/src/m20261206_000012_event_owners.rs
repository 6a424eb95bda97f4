//! Events get owners: the seed's `POST /events` took no credentials and its events were
//! everybody's. Now each event is its caller's, queries read one owner's, and an idempotency key
//! is its owner's (stored as `<owner id>/<key>`, so the one unique column still holds).
//!
//! Events stored before this go to the first admin (the operator who ran the open routes), so
//! upgrading loses none; on a server with no users yet they stay ownerless until retention
//! deletes them.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Events {
    Table,
    OwnerId,
    IdempotencyKey,
    Service,
    Timestamp,
    Seq,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Events::Table)
                    .add_column(ColumnDef::new(Events::OwnerId).string_len(36).null())
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        if manager.get_database_backend() == sea_orm_migration::sea_orm::DatabaseBackend::Postgres {
            // Room for the owner id in front of a 255-character key and a batch index after it.
            manager
                .alter_table(
                    Table::alter()
                        .table(Events::Table)
                        .modify_column(
                            ColumnDef::new(Events::IdempotencyKey)
                                .string_len(320)
                                .null(),
                        )
                        .to_owned(),
                )
                .await?;
        }
        db.execute_unprepared(
            "UPDATE events SET owner_id = (SELECT id FROM users WHERE role = 'admin' \
             ORDER BY created_at LIMIT 1) WHERE owner_id IS NULL",
        )
        .await?;
        db.execute_unprepared(
            "UPDATE events SET idempotency_key = owner_id || '/' || idempotency_key \
             WHERE idempotency_key IS NOT NULL AND owner_id IS NOT NULL",
        )
        .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_events_owner_timestamp")
                    .table(Events::Table)
                    .col(Events::OwnerId)
                    .col(Events::Timestamp)
                    .col(Events::Seq)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_events_owner_service_timestamp")
                    .table(Events::Table)
                    .col(Events::OwnerId)
                    .col(Events::Service)
                    .col(Events::Timestamp)
                    .col(Events::Seq)
                    .to_owned(),
            )
            .await?;
        // Every query names an owner now; `ix_events_timestamp` stays for retention.
        manager
            .drop_index(
                Index::drop()
                    .name("ix_events_service_timestamp")
                    .table(Events::Table)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name("ix_events_service_timestamp")
                    .table(Events::Table)
                    .col(Events::Service)
                    .col(Events::Timestamp)
                    .col(Events::Seq)
                    .to_owned(),
            )
            .await?;
        for ix in [
            "ix_events_owner_timestamp",
            "ix_events_owner_service_timestamp",
        ] {
            manager
                .drop_index(Index::drop().name(ix).table(Events::Table).to_owned())
                .await?;
        }
        manager
            .get_connection()
            .execute_unprepared(
                "UPDATE events SET idempotency_key = substr(idempotency_key, length(owner_id) + 2) \
                 WHERE idempotency_key IS NOT NULL AND owner_id IS NOT NULL",
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Events::Table)
                    .drop_column(Events::OwnerId)
                    .to_owned(),
            )
            .await
    }
}
