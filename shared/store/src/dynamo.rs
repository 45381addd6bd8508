//! The DynamoDB [`ConnectionRegistry`]: live WebSocket connections and their session
//! subscriptions in one table.
//!
//! # Layout
//! One table with string keys `pk` / `sk`:
//!
//! | item | `pk` | `sk` | other attributes |
//! |---|---|---|---|
//! | connection | `CONN#<id>` | `META` | `connectionId`, `userId`, `connectedAt` (ms), `expiresAt` (ms), `ttl` (s) |
//! | subscription | `CONN#<id>` | `SUB#<session>` | `connectionId`, `sessionId`, `userId`, `expiresAt` (ms), `ttl` (s) |
//! | session mirror | `SESSION#<session>` | `CONN#<id>` | same as the subscription |
//! | user's connections | `USER#<user>` | `CONNECTIONS` | `userId`, `connections` (map: connection id → `expiresAt` ms), `version`, `ttl` (s, the latest expiry) |
//! | claimed ticket | `TICKET#<jti>` | `TICKET` | `expiresAt` (ms), `ttl` (s) |
//!
//! Session membership is read from the base table (`pk = SESSION#<id>`) with `ConsistentRead`:
//! a GSI is eventually consistent, and a fresh subscriber could miss broadcasts. Listings follow
//! `LastEvaluatedKey` to the last page. `ttl` holds epoch seconds for DynamoDB's TTL; because
//! TTL deletion lags by up to days, every read also filters on the millisecond `expiresAt`,
//! exactly like the memory adapter.
//!
//! # Write order instead of transactions
//! A subscription's two items are written with two `PutItem`s rather than one
//! `TransactWriteItems` (half the write cost; moto's transactions also break under concurrent
//! writes to a table). The order keeps every half-done operation harmless and retry-safe:
//! - `subscribe` writes the session mirror, then the `SUB#` item, so a `SUB#` item (which lets
//!   the connection submit) never exists without its mirror;
//! - `unsubscribe` and `remove_user_subscriptions` delete `SUB#` items first (a retry finds the
//!   rest through the mirrors);
//! - `remove_connection` frees the user's slot, then deletes the mirrors (a retry finds the rest
//!   through the connection's partition).
//!
//! # The per-user connection limit
//! `add_connection` writes the connection record, then admits it into the user's
//! `USER#<user>` item: read it (strongly consistent), drop the expired ids, refuse when the rest
//! reach the limit, else write it back with the new id under a condition on the `version` read
//! (`attribute_not_exists` for a new item). A lost race re-reads and tries again, a bounded
//! number of times. Only the conditional write admits, so concurrent connects of one user never
//! pass the limit; expired ids are dropped on every admission, so a lost `$disconnect` holds a
//! slot only until its record expires. The record goes first so that a failure in between leaves
//! at worst a record that no slot counts (and API Gateway has refused that connection), never a
//! slot without a record. A refused connection's record is deleted again.
//!
//! Why no `TransactWriteItems` for the record and the slot: moto restores a whole table
//! snapshot when a transaction fails its condition, erasing concurrent writes, so the local
//! stand-in could not test concurrent connects; the order above keeps every half-done admission
//! harmless instead.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, DeleteRequest, KeySchemaElement, KeyType,
    KeysAndAttributes, ReturnValue, ScalarAttributeType, TableStatus, TimeToLiveSpecification,
    TimeToLiveStatus, WriteRequest,
};
use dlab_core::ids::{ConnectionId, SessionId, UserId};
use thiserror::Error;
use tracing::{debug, warn};

use crate::error::StoreError;
use crate::model::{Connection, Subscription, now_ms};
use crate::ports::{Admission, ConnectionRegistry};

const BACKEND: &str = "dynamodb";

const PK: &str = "pk";
const SK: &str = "sk";
const CONNECTION_ID: &str = "connectionId";
const SESSION_ID: &str = "sessionId";
const USER_ID: &str = "userId";
const CONNECTED_AT: &str = "connectedAt";
const EXPIRES_AT: &str = "expiresAt";
/// Epoch seconds, the attribute DynamoDB's TTL is enabled on.
pub const TTL_ATTRIBUTE: &str = "ttl";

const CONNECTIONS: &str = "connections";
const VERSION: &str = "version";

const META_SK: &str = "META";
const CONN_PREFIX: &str = "CONN#";
const SUB_PREFIX: &str = "SUB#";
const SESSION_PREFIX: &str = "SESSION#";
const USER_PREFIX: &str = "USER#";
const USER_CONNECTIONS_SK: &str = "CONNECTIONS";
const TICKET_PREFIX: &str = "TICKET#";
const TICKET_SK: &str = "TICKET";

/// How often an admission re-reads after losing a race for the user's item. Each loss means
/// another admission (or removal) of that user succeeded, so a bound a little above any
/// sensible limit settles every contender of a burst.
const ADMIT_ATTEMPTS: u32 = 32;

/// DynamoDB's limit of write requests in one `BatchWriteItem`.
const BATCH_WRITE_MAX: usize = 25;
/// How often unprocessed items of a batch are retried before giving up.
const BATCH_RETRIES: u32 = 8;
/// First back-off between retries of unprocessed items; doubled each time.
const BATCH_BACKOFF: Duration = Duration::from_millis(25);
/// How long [`create_table`] waits for a new table to become active.
const TABLE_ACTIVE_TIMEOUT: Duration = Duration::from_secs(60);

type Item = HashMap<String, AttributeValue>;

/// A stored item could not be decoded.
#[derive(Debug, Error)]
enum DecodeError {
    #[error("attribute {attribute} is missing or not {expected}")]
    WrongType {
        attribute: &'static str,
        expected: &'static str,
    },
}

/// Unprocessed items remained after every retry of a batch write.
#[derive(Debug, Error)]
#[error("{count} write requests were still unprocessed after {BATCH_RETRIES} retries")]
struct UnprocessedItems {
    count: usize,
}

/// The user's connections item kept changing under an admission.
#[derive(Debug, Error)]
#[error("the connections of user {user} changed under {ADMIT_ATTEMPTS} admission attempts")]
struct Contended {
    user: UserId,
}

/// A new table did not become active in time.
#[derive(Debug, Error)]
#[error("table {table} is still {status:?} after {TABLE_ACTIVE_TIMEOUT:?}")]
struct TableNotActive {
    table: String,
    status: Option<TableStatus>,
}

/// Connections and subscriptions in one DynamoDB table (see the module docs for the layout).
#[derive(Debug, Clone)]
pub struct DynamoConnectionRegistry {
    client: Client,
    table: String,
    page_size: Option<i32>,
}

impl DynamoConnectionRegistry {
    /// A registry on `table`, reading full (1 MB) query pages.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            page_size: None,
        }
    }

    /// Caps every query page at `items` items (at least 1); every page is still read. Tests use
    /// a small page to prove that listings follow `LastEvaluatedKey`.
    pub fn with_page_size(mut self, items: u32) -> Self {
        self.page_size = Some(items.clamp(1, i32::MAX as u32) as i32);
        self
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Every item of partition `pk` (optionally only sort keys starting with `sk_prefix`),
    /// strongly consistent, following `LastEvaluatedKey` to the last page.
    async fn query_all(
        &self,
        operation: &'static str,
        pk: String,
        sk_prefix: Option<&str>,
    ) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut query = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .expression_attribute_names("#pk", PK)
                .expression_attribute_values(":pk", AttributeValue::S(pk.clone()))
                .set_exclusive_start_key(start.take())
                .set_limit(self.page_size);
            query = match sk_prefix {
                Some(prefix) => query
                    .key_condition_expression("#pk = :pk AND begins_with(#sk, :sk)")
                    .expression_attribute_names("#sk", SK)
                    .expression_attribute_values(":sk", AttributeValue::S(prefix.to_owned())),
                None => query.key_condition_expression("#pk = :pk"),
            };
            let page = query
                .send()
                .await
                .map_err(|e| StoreError::unavailable(BACKEND, operation, e))?;
            items.extend(page.items.unwrap_or_default());
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(items),
            }
        }
    }

    /// Deletes items by `(pk, sk)` with `BatchWriteItem` in chunks of 25, retrying unprocessed
    /// items with exponential back-off.
    async fn delete_keys(
        &self,
        operation: &'static str,
        keys: BTreeSet<(String, String)>,
    ) -> Result<(), StoreError> {
        let keys: Vec<(String, String)> = keys.into_iter().collect();
        for chunk in keys.chunks(BATCH_WRITE_MAX) {
            let mut pending = chunk
                .iter()
                .map(|(pk, sk)| {
                    DeleteRequest::builder()
                        .set_key(Some(key(pk.clone(), sk.clone())))
                        .build()
                        .map(|d| WriteRequest::builder().delete_request(d).build())
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| StoreError::unavailable(BACKEND, operation, e))?;
            let mut attempt = 0;
            loop {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, pending)
                    .send()
                    .await
                    .map_err(|e| StoreError::unavailable(BACKEND, operation, e))?;
                pending = out
                    .unprocessed_items
                    .and_then(|mut m| m.remove(&self.table))
                    .unwrap_or_default();
                if pending.is_empty() {
                    break;
                }
                if attempt == BATCH_RETRIES {
                    return Err(StoreError::unavailable(
                        BACKEND,
                        operation,
                        UnprocessedItems {
                            count: pending.len(),
                        },
                    ));
                }
                debug!(
                    table = %self.table,
                    unprocessed = pending.len(),
                    attempt,
                    "retrying unprocessed batch writes"
                );
                tokio::time::sleep(BATCH_BACKOFF * 2u32.pow(attempt)).await;
                attempt += 1;
            }
        }
        Ok(())
    }

    async fn get(
        &self,
        operation: &'static str,
        pk: String,
        sk: String,
    ) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::unavailable(BACKEND, operation, e))?;
        Ok(out.item)
    }

    async fn delete_returning(
        &self,
        operation: &'static str,
        pk: String,
        sk: String,
    ) -> Result<bool, StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| StoreError::unavailable(BACKEND, operation, e))?;
        Ok(out.attributes.is_some_and(|a| !a.is_empty()))
    }
}

impl DynamoConnectionRegistry {
    /// One attempt to admit `connection` into its user's item: `None` when the item changed
    /// since it was read.
    async fn try_admit(
        &self,
        connection: &Connection,
        limit: usize,
    ) -> Result<Option<Admission>, StoreError> {
        const OP: &str = "add_connection";
        let user = &connection.user_id;
        let read = self
            .get(OP, user_pk(user), USER_CONNECTIONS_SK.to_owned())
            .await?;
        let (version, mut slots) = match &read {
            Some(item) => decode_slots(item)?,
            None => (0, BTreeMap::new()),
        };
        let now = now_ms();
        slots.retain(|_, expires_at| *expires_at > now);
        if !slots.contains_key(connection.id.as_str()) && slots.len() >= limit {
            return Ok(Some(Admission::Refused { open: slots.len() }));
        }
        slots.insert(connection.id.to_string(), connection.expires_at);
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(slots_item(user, version + 1, &slots)));
        let put = match read {
            None => put
                .condition_expression("attribute_not_exists(#pk)")
                .expression_attribute_names("#pk", PK),
            Some(_) => put
                .condition_expression("#v = :v")
                .expression_attribute_names("#v", VERSION)
                .expression_attribute_values(":v", number(version)),
        };
        match put.send().await {
            Ok(_) => Ok(Some(Admission::Admitted)),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(StoreError::unavailable(BACKEND, OP, e)),
        }
    }

    /// Removes `id` from its user's item (nothing when it is not there).
    async fn free_slot(&self, user: &UserId, id: &ConnectionId) -> Result<(), StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(user_pk(user), USER_CONNECTIONS_SK.to_owned())))
            .update_expression("REMOVE #c.#id SET #v = #v + :one")
            .condition_expression("attribute_exists(#c.#id)")
            .expression_attribute_names("#c", CONNECTIONS)
            .expression_attribute_names("#id", id.as_str())
            .expression_attribute_names("#v", VERSION)
            .expression_attribute_values(":one", number(1))
            .send()
            .await;
        match out {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(StoreError::unavailable(BACKEND, "remove_connection", e)),
        }
    }
}

/// A pause of up to `attempt` × 8 ms, random so that contenders spread out.
fn jitter(attempt: u32) -> Duration {
    let random = u64::from(uuid::Uuid::new_v4().as_bytes()[0]);
    Duration::from_millis(random % (8 * u64::from(attempt + 1)))
}

#[async_trait]
impl ConnectionRegistry for DynamoConnectionRegistry {
    async fn add_connection(
        &self,
        connection: &Connection,
        limit: usize,
    ) -> Result<Admission, StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(connection_item(connection)))
            .send()
            .await
            .map_err(|e| StoreError::unavailable(BACKEND, "add_connection", e))?;
        for attempt in 0..ADMIT_ATTEMPTS {
            match self.try_admit(connection, limit).await? {
                Some(Admission::Admitted) => return Ok(Admission::Admitted),
                Some(refused @ Admission::Refused { .. }) => {
                    self.delete_returning(
                        "add_connection",
                        conn_pk(&connection.id),
                        META_SK.to_owned(),
                    )
                    .await?;
                    return Ok(refused);
                }
                None => {
                    debug!(user = %connection.user_id, attempt, "admission lost a race; retrying");
                    tokio::time::sleep(jitter(attempt)).await;
                }
            }
        }
        Err(StoreError::unavailable(
            BACKEND,
            "add_connection",
            Contended {
                user: connection.user_id.clone(),
            },
        ))
    }

    async fn claim_ticket(&self, jti: uuid::Uuid, expires_at_ms: u64) -> Result<bool, StoreError> {
        let mut item = key(format!("{TICKET_PREFIX}{jti}"), TICKET_SK.to_owned());
        item.insert(EXPIRES_AT.to_owned(), number(expires_at_ms));
        item.insert(TTL_ATTRIBUTE.to_owned(), number(ttl_seconds(expires_at_ms)));
        let out = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .send()
            .await;
        match out {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(StoreError::unavailable(BACKEND, "claim_ticket", e)),
        }
    }

    async fn connection(&self, id: &ConnectionId) -> Result<Option<Connection>, StoreError> {
        let Some(item) = self
            .get("connection", conn_pk(id), META_SK.to_owned())
            .await?
        else {
            return Ok(None);
        };
        let connection = decode_connection(&item)?;
        Ok((connection.expires_at > now_ms()).then_some(connection))
    }

    /// One strongly consistent `BatchGetItem` of the connection record and the connection's
    /// mirror of the subscription (the two items `connection` and `is_subscribed` read), so a
    /// submit costs one DynamoDB read instead of two.
    async fn connection_in(
        &self,
        id: &ConnectionId,
        session: &SessionId,
    ) -> Result<Option<(Connection, bool)>, StoreError> {
        const OPERATION: &str = "connection_in";
        let meta = key(conn_pk(id), META_SK.to_owned());
        let sub = key(conn_pk(id), sub_sk(session));
        let mut pending = KeysAndAttributes::builder()
            .set_keys(Some(vec![meta, sub]))
            .consistent_read(true)
            .build()
            .map_err(|e| StoreError::unavailable(BACKEND, OPERATION, e))?;
        let mut items = Vec::with_capacity(2);
        let mut attempt = 0;
        loop {
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.table, pending)
                .send()
                .await
                .map_err(|e| StoreError::unavailable(BACKEND, OPERATION, e))?;
            if let Some(found) = out.responses.and_then(|mut r| r.remove(&self.table)) {
                items.extend(found);
            }
            match out.unprocessed_keys.and_then(|mut u| u.remove(&self.table)) {
                Some(rest) if !rest.keys.is_empty() => pending = rest,
                _ => break,
            }
            if attempt == BATCH_RETRIES {
                return Err(StoreError::unavailable(
                    BACKEND,
                    OPERATION,
                    UnprocessedItems {
                        count: pending.keys.len(),
                    },
                ));
            }
            tokio::time::sleep(BATCH_BACKOFF * 2u32.pow(attempt)).await;
            attempt += 1;
        }
        let now = now_ms();
        let mut connection = None;
        let mut subscribed = false;
        for item in &items {
            if item.get(SK).and_then(|v| v.as_s().ok()).map(String::as_str) == Some(META_SK) {
                connection = Some(decode_connection(item)?);
            } else {
                subscribed = get_n(item, EXPIRES_AT)? > now;
            }
        }
        Ok(connection
            .filter(|c| c.expires_at > now)
            .map(|c| (c, subscribed)))
    }

    async fn subscribe(&self, subscription: &Subscription) -> Result<(), StoreError> {
        for mirror in [Mirror::Session, Mirror::Connection] {
            self.client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(subscription_item(subscription, mirror)))
                .send()
                .await
                .map_err(|e| StoreError::unavailable(BACKEND, "subscribe", e))?;
        }
        Ok(())
    }

    async fn unsubscribe(
        &self,
        connection: &ConnectionId,
        session: &SessionId,
    ) -> Result<bool, StoreError> {
        let by_connection = self
            .delete_returning("unsubscribe", conn_pk(connection), sub_sk(session))
            .await?;
        let by_session = self
            .delete_returning("unsubscribe", session_pk(session), conn_sk(connection))
            .await?;
        Ok(by_connection || by_session)
    }

    async fn is_subscribed(
        &self,
        connection: &ConnectionId,
        session: &SessionId,
    ) -> Result<bool, StoreError> {
        let Some(item) = self
            .get("is_subscribed", conn_pk(connection), sub_sk(session))
            .await?
        else {
            return Ok(false);
        };
        Ok(get_n(&item, EXPIRES_AT)? > now_ms())
    }

    async fn subscriptions_of(
        &self,
        connection: &ConnectionId,
    ) -> Result<Vec<SessionId>, StoreError> {
        let items = self
            .query_all("subscriptions_of", conn_pk(connection), Some(SUB_PREFIX))
            .await?;
        let mut sessions = items
            .iter()
            .map(|item| get_s(item, SESSION_ID).map(SessionId::from))
            .collect::<Result<Vec<_>, _>>()?;
        sessions.sort();
        Ok(sessions)
    }

    async fn session_connections(
        &self,
        session: &SessionId,
    ) -> Result<Vec<Subscription>, StoreError> {
        let items = self
            .query_all("session_connections", session_pk(session), None)
            .await?;
        let now = now_ms();
        let mut live = Vec::with_capacity(items.len());
        for item in &items {
            let subscription = decode_subscription(item)?;
            if subscription.expires_at > now {
                live.push(subscription);
            }
        }
        Ok(live)
    }

    async fn remove_connection(&self, id: &ConnectionId) -> Result<Vec<Subscription>, StoreError> {
        let items = self
            .query_all("remove_connection", conn_pk(id), None)
            .await?;
        let mut mirrors = BTreeSet::new();
        let mut own = BTreeSet::new();
        let mut removed = Vec::new();
        for item in &items {
            let sk = get_s(item, SK)?;
            if sk == META_SK {
                self.free_slot(&UserId::from(get_s(item, USER_ID)?), id)
                    .await?;
            } else if sk.starts_with(SUB_PREFIX) {
                let subscription = decode_subscription(item)?;
                mirrors.insert((
                    session_pk(&subscription.session_id),
                    conn_sk(&subscription.connection_id),
                ));
                removed.push(subscription);
            }
            own.insert((get_s(item, PK)?, sk));
        }
        // Mirrors first: a retry after a failure finds the rest through the CONN# partition.
        self.delete_keys("remove_connection", mirrors).await?;
        self.delete_keys("remove_connection", own).await?;
        removed.sort_by(|a, b| a.session_id.cmp(&b.session_id));
        Ok(removed)
    }

    async fn remove_user_subscriptions(
        &self,
        user: &UserId,
        sessions: &[SessionId],
    ) -> Result<Vec<Subscription>, StoreError> {
        let mut removed = Vec::new();
        for session in sessions {
            let items = self
                .query_all("remove_user_subscriptions", session_pk(session), None)
                .await?;
            let mut own = BTreeSet::new();
            let mut mirrors = BTreeSet::new();
            for item in &items {
                let subscription = decode_subscription(item)?;
                if &subscription.user_id != user {
                    continue;
                }
                own.insert((conn_pk(&subscription.connection_id), sub_sk(session)));
                mirrors.insert((session_pk(session), conn_sk(&subscription.connection_id)));
                removed.push(subscription);
            }
            // Subscriptions first (they grant submit): a retry after a failure finds the rest
            // through the mirrors.
            self.delete_keys("remove_user_subscriptions", own).await?;
            self.delete_keys("remove_user_subscriptions", mirrors)
                .await?;
        }
        Ok(removed)
    }
}

/// Creates the connections table if it does not exist (idempotent), waits until it is active,
/// and enables TTL on [`TTL_ATTRIBUTE`]. For local runs and tests; deployed tables come from the
/// SAM template. A backend that cannot enable TTL (some emulators) only gets a warning: reads
/// filter expired items anyway.
pub async fn create_table(client: &Client, table: &str) -> Result<(), StoreError> {
    let attribute = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
    };
    let key_element = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
    };
    let build_error = |e| StoreError::unavailable(BACKEND, "create_table", e);
    let created = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute(PK).map_err(build_error)?)
        .attribute_definitions(attribute(SK).map_err(build_error)?)
        .key_schema(key_element(PK, KeyType::Hash).map_err(build_error)?)
        .key_schema(key_element(SK, KeyType::Range).map_err(build_error)?)
        .send()
        .await;
    match created {
        Ok(_) => {}
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_in_use_exception()) => {}
        Err(e) => return Err(StoreError::unavailable(BACKEND, "create_table", e)),
    }
    wait_active(client, table).await?;
    enable_ttl(client, table).await
}

async fn wait_active(client: &Client, table: &str) -> Result<(), StoreError> {
    let deadline = tokio::time::Instant::now() + TABLE_ACTIVE_TIMEOUT;
    loop {
        let out = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| StoreError::unavailable(BACKEND, "describe_table", e))?;
        let status = out.table.and_then(|t| t.table_status);
        if matches!(status, Some(TableStatus::Active) | None) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(StoreError::unavailable(
                BACKEND,
                "create_table",
                TableNotActive {
                    table: table.to_owned(),
                    status,
                },
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn enable_ttl(client: &Client, table: &str) -> Result<(), StoreError> {
    match client
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
    {
        Ok(out) => {
            let description = out.time_to_live_description;
            let status = description
                .as_ref()
                .and_then(|d| d.time_to_live_status.clone());
            let attribute = description.and_then(|d| d.attribute_name);
            if matches!(
                status,
                Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
            ) && attribute.as_deref() == Some(TTL_ATTRIBUTE)
            {
                return Ok(());
            }
        }
        Err(e) => {
            warn!(table, error = %DisplayErrorContext(&e), "cannot read the table's TTL setting; reads filter expired items anyway");
            return Ok(());
        }
    }
    let specification = TimeToLiveSpecification::builder()
        .attribute_name(TTL_ATTRIBUTE)
        .enabled(true)
        .build()
        .map_err(|e| StoreError::unavailable(BACKEND, "create_table", e))?;
    if let Err(e) = client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(specification)
        .send()
        .await
    {
        warn!(table, error = %DisplayErrorContext(&e), "cannot enable TTL; reads filter expired items anyway");
    }
    Ok(())
}

/// Which copy of a subscription an item is.
#[derive(Debug, Clone, Copy)]
enum Mirror {
    /// `pk = CONN#<id>, sk = SUB#<session>`: the connection's subscriptions.
    Connection,
    /// `pk = SESSION#<session>, sk = CONN#<id>`: the session's members.
    Session,
}

fn conn_pk(id: &ConnectionId) -> String {
    format!("{CONN_PREFIX}{id}")
}

fn conn_sk(id: &ConnectionId) -> String {
    format!("{CONN_PREFIX}{id}")
}

fn sub_sk(session: &SessionId) -> String {
    format!("{SUB_PREFIX}{session}")
}

fn session_pk(session: &SessionId) -> String {
    format!("{SESSION_PREFIX}{session}")
}

fn user_pk(user: &UserId) -> String {
    format!("{USER_PREFIX}{user}")
}

fn slots_item(user: &UserId, version: u64, slots: &BTreeMap<String, u64>) -> Item {
    let mut item = key(user_pk(user), USER_CONNECTIONS_SK.to_owned());
    item.insert(USER_ID.to_owned(), AttributeValue::S(user.to_string()));
    item.insert(VERSION.to_owned(), number(version));
    item.insert(
        CONNECTIONS.to_owned(),
        AttributeValue::M(
            slots
                .iter()
                .map(|(id, at)| (id.clone(), number(*at)))
                .collect(),
        ),
    );
    let latest = slots.values().copied().max().unwrap_or(0);
    item.insert(TTL_ATTRIBUTE.to_owned(), number(ttl_seconds(latest)));
    item
}

/// The `version` and the connection id → expiry map of a user's item.
fn decode_slots(item: &Item) -> Result<(u64, BTreeMap<String, u64>), StoreError> {
    let version = get_n(item, VERSION)?;
    let Some(AttributeValue::M(map)) = item.get(CONNECTIONS) else {
        return Err(StoreError::corrupt(
            BACKEND,
            "connection registry item",
            DecodeError::WrongType {
                attribute: CONNECTIONS,
                expected: "a map",
            },
        ));
    };
    let mut slots = BTreeMap::new();
    for (id, at) in map {
        let at = match at {
            AttributeValue::N(n) => n.parse().ok(),
            _ => None,
        }
        .ok_or_else(|| {
            StoreError::corrupt(
                BACKEND,
                "connection registry item",
                DecodeError::WrongType {
                    attribute: CONNECTIONS,
                    expected: "an unsigned integer",
                },
            )
        })?;
        slots.insert(id.clone(), at);
    }
    Ok((version, slots))
}

fn key(pk: String, sk: String) -> Item {
    HashMap::from([
        (PK.to_owned(), AttributeValue::S(pk)),
        (SK.to_owned(), AttributeValue::S(sk)),
    ])
}

fn number(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// Epoch seconds for DynamoDB's TTL, rounded up so TTL never deletes a live item.
fn ttl_seconds(expires_at_ms: u64) -> u64 {
    expires_at_ms.div_ceil(1000)
}

fn connection_item(connection: &Connection) -> Item {
    let mut item = key(conn_pk(&connection.id), META_SK.to_owned());
    item.insert(
        CONNECTION_ID.to_owned(),
        AttributeValue::S(connection.id.to_string()),
    );
    item.insert(
        USER_ID.to_owned(),
        AttributeValue::S(connection.user_id.to_string()),
    );
    item.insert(CONNECTED_AT.to_owned(), number(connection.connected_at));
    item.insert(EXPIRES_AT.to_owned(), number(connection.expires_at));
    item.insert(
        TTL_ATTRIBUTE.to_owned(),
        number(ttl_seconds(connection.expires_at)),
    );
    item
}

fn subscription_item(subscription: &Subscription, mirror: Mirror) -> Item {
    let mut item = match mirror {
        Mirror::Connection => key(
            conn_pk(&subscription.connection_id),
            sub_sk(&subscription.session_id),
        ),
        Mirror::Session => key(
            session_pk(&subscription.session_id),
            conn_sk(&subscription.connection_id),
        ),
    };
    item.insert(
        CONNECTION_ID.to_owned(),
        AttributeValue::S(subscription.connection_id.to_string()),
    );
    item.insert(
        SESSION_ID.to_owned(),
        AttributeValue::S(subscription.session_id.to_string()),
    );
    item.insert(
        USER_ID.to_owned(),
        AttributeValue::S(subscription.user_id.to_string()),
    );
    item.insert(EXPIRES_AT.to_owned(), number(subscription.expires_at));
    item.insert(
        TTL_ATTRIBUTE.to_owned(),
        number(ttl_seconds(subscription.expires_at)),
    );
    item
}

fn get_s(item: &Item, name: &'static str) -> Result<String, StoreError> {
    match item.get(name) {
        Some(AttributeValue::S(s)) => Ok(s.clone()),
        _ => Err(StoreError::corrupt(
            BACKEND,
            "connection registry item",
            DecodeError::WrongType {
                attribute: name,
                expected: "a string",
            },
        )),
    }
}

fn get_n(item: &Item, name: &'static str) -> Result<u64, StoreError> {
    match item.get(name) {
        Some(AttributeValue::N(n)) => n.parse().map_err(|_| {
            StoreError::corrupt(
                BACKEND,
                "connection registry item",
                DecodeError::WrongType {
                    attribute: name,
                    expected: "an unsigned integer",
                },
            )
        }),
        _ => Err(StoreError::corrupt(
            BACKEND,
            "connection registry item",
            DecodeError::WrongType {
                attribute: name,
                expected: "an unsigned integer",
            },
        )),
    }
}

fn decode_connection(item: &Item) -> Result<Connection, StoreError> {
    Ok(Connection {
        id: ConnectionId::from(get_s(item, CONNECTION_ID)?),
        user_id: UserId::from(get_s(item, USER_ID)?),
        connected_at: get_n(item, CONNECTED_AT)?,
        expires_at: get_n(item, EXPIRES_AT)?,
    })
}

fn decode_subscription(item: &Item) -> Result<Subscription, StoreError> {
    Ok(Subscription {
        connection_id: ConnectionId::from(get_s(item, CONNECTION_ID)?),
        session_id: SessionId::from(get_s(item, SESSION_ID)?),
        user_id: UserId::from(get_s(item, USER_ID)?),
        expires_at: get_n(item, EXPIRES_AT)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_round_trip_and_ttl_is_in_seconds() {
        let connection = Connection {
            id: "abc=".into(),
            user_id: "u1".into(),
            connected_at: 1_000,
            expires_at: 7_200_001,
        };
        let item = connection_item(&connection);
        assert_eq!(decode_connection(&item).unwrap(), connection);
        assert_eq!(item[TTL_ATTRIBUTE], AttributeValue::N("7201".into()));
        assert_eq!(item[PK], AttributeValue::S("CONN#abc=".into()));
        assert_eq!(item[SK], AttributeValue::S("META".into()));

        let subscription = Subscription {
            connection_id: "abc=".into(),
            session_id: "s1".into(),
            user_id: "u1".into(),
            expires_at: 5_000,
        };
        let by_session = subscription_item(&subscription, Mirror::Session);
        assert_eq!(by_session[PK], AttributeValue::S("SESSION#s1".into()));
        assert_eq!(by_session[SK], AttributeValue::S("CONN#abc=".into()));
        assert_eq!(decode_subscription(&by_session).unwrap(), subscription);
        let by_connection = subscription_item(&subscription, Mirror::Connection);
        assert_eq!(by_connection[PK], AttributeValue::S("CONN#abc=".into()));
        assert_eq!(by_connection[SK], AttributeValue::S("SUB#s1".into()));
        assert_eq!(decode_subscription(&by_connection).unwrap(), subscription);
    }

    #[test]
    fn a_missing_attribute_is_corrupt() {
        let item = key("CONN#x".into(), "META".into());
        assert!(matches!(
            decode_connection(&item),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
