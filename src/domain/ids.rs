//! Ids as types of their own, so one kind of id cannot be passed where another is expected
//! (`NewMessage { owner_id: ChannelId(..) }` does not compile). They are the text the database
//! stores (UUIDv7 for the rows this server creates), serialise as plain strings, and are the
//! entities' own field types (`messages::Model::channel_id` is a `ChannelId`), so a row's id goes
//! where that kind of id is expected and nowhere else.

macro_rules! id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize,
            serde::Deserialize, sea_orm::DeriveValueType, utoipa::ToSchema,
        )]
        #[serde(transparent)]
        pub struct $name(String);

        /// As a route's `{id}` (every route names its one id so).
        impl utoipa::IntoParams for $name {
            fn into_params(
                parameter_in: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
            ) -> Vec<utoipa::openapi::path::Parameter> {
                vec![
                    utoipa::openapi::path::ParameterBuilder::new()
                        .name("id")
                        .parameter_in(parameter_in().unwrap_or_default())
                        .required(utoipa::openapi::Required::True)
                        .description(Some(concat!("The ", stringify!($name), ".")))
                        .schema(Some(utoipa::openapi::ObjectBuilder::new().schema_type(
                            utoipa::openapi::schema::Type::String,
                        )))
                        .build(),
                ]
            }
        }

        /// Needed of a primary key's type; ids here are text and never come from a counter.
        impl sea_orm::TryFromU64 for $name {
            fn try_from_u64(n: u64) -> Result<Self, sea_orm::DbErr> {
                Ok(Self(n.to_string()))
            }
        }

        impl $name {
            /// A fresh, time-ordered id (UUIDv7).
            pub fn generate() -> Self {
                Self(uuid::Uuid::now_v7().to_string())
            }

            /// The id as stored.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The stored text.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl From<&$name> for sea_orm::Value {
            fn from(id: &$name) -> Self {
                id.0.as_str().into()
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id!(
    /// A user (owner of everything else).
    UserId
);
id!(
    /// A channel account (bot, number, webhook endpoint).
    ChannelId
);
id!(
    /// A message of the ledger.
    MessageId
);
id!(
    /// An alert integration.
    IntegrationId
);
id!(
    /// A stored media file.
    MediaId
);
id!(
    /// A campaign.
    CampaignId
);
id!(
    /// A contact.
    ContactId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_their_text_in_json_and_distinct_types() {
        let id = ChannelId::from("0190-abc");
        assert_eq!(
            serde_json::to_string(&id).expect("serialises"),
            "\"0190-abc\""
        );
        let back: ChannelId = serde_json::from_str("\"0190-abc\"").expect("parses");
        assert_eq!(back, id);
        assert_eq!(id.to_string(), "0190-abc");
        assert_ne!(UserId::generate(), UserId::generate());
    }
}
