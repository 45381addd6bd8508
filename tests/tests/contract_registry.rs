//! The `ConnectionRegistry` contract against the memory adapter and against DynamoDB (moto),
//! plus checks of the DynamoDB item layout that the contract cannot see.
//!
//! The DynamoDB registry reads pages of [`PAGE_SIZE`] items, so a 250-connection session needs
//! dozens of pages: a registry that stopped at the first page fails. Each test creates its own
//! table (uuid name) with `create_table`.

use std::collections::HashMap;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::config::Credentials;
use aws_sdk_dynamodb::types::AttributeValue;
use dlab_core::ids::{ConnectionId, SessionId, UserId};
use dlab_store::StoreError;
use dlab_store::dynamo::{DynamoConnectionRegistry, TTL_ATTRIBUTE, create_table};
use dlab_store::memory::MemoryConnectionRegistry;
use dlab_store::model::{Connection, Subscription, now_ms};
use dlab_store::{Admission, ConnectionRegistry};
use dlab_tests::contract::registry;
use dlab_tests::servers::{self, Server};
use uuid::Uuid;

/// Query page size forced on the DynamoDB registry.
const PAGE_SIZE: u32 = 7;

/// A DynamoDB client for moto: `AWS_ENDPOINT_URL` (default moto's URL), and test region and
/// credentials when the environment has none.
async fn moto_client() -> aws_sdk_dynamodb::Client {
    let mut loader =
        aws_config::defaults(BehaviorVersion::latest()).endpoint_url(Server::Moto.url());
    if std::env::var_os("AWS_REGION").is_none() && std::env::var_os("AWS_DEFAULT_REGION").is_none()
    {
        loader = loader.region(Region::new("us-east-1"));
    }
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
        loader =
            loader.credentials_provider(Credentials::new("test", "test", None, None, "dlab-tests"));
    }
    aws_sdk_dynamodb::Client::new(&loader.load().await)
}

/// A fresh table on moto, or `None` when the test should skip.
async fn fresh_table() -> Option<(aws_sdk_dynamodb::Client, String)> {
    if !servers::require(Server::Moto) {
        return None;
    }
    let client = moto_client().await;
    let table = format!("dlab-test-connections-{}", Uuid::new_v4().simple());
    create_table(&client, &table).await.unwrap_or_else(|e| {
        panic!(
            "creating table {table} on moto at {}: {e:?}",
            Server::Moto.url()
        )
    });
    Some((client, table))
}

/// A DynamoDB registry with small pages on a fresh table.
async fn dynamo() -> Option<DynamoConnectionRegistry> {
    let (client, table) = fresh_table().await?;
    Some(DynamoConnectionRegistry::new(client, table).with_page_size(PAGE_SIZE))
}

macro_rules! contract {
    ($($body:ident),* $(,)?) => {
        mod memory {
            use super::*;
            $(
                #[tokio::test]
                async fn $body() {
                    registry::$body(&MemoryConnectionRegistry::new()).await;
                }
            )*
        }

        mod dynamo {
            use super::*;
            $(
                #[tokio::test]
                async fn $body() {
                    let Some(store) = super::dynamo().await else { return };
                    registry::$body(&store).await;
                }
            )*
        }
    };
}

contract!(
    put_and_get_connection,
    expired_connection_is_not_returned,
    subscribe_is_idempotent,
    subscriptions_of_lists_sessions_sorted,
    large_session_is_listed_completely,
    unsubscribe_removes_one_subscription,
    remove_connection_removes_all_subscriptions,
    remove_user_subscriptions_removes_only_that_user,
    connection_limit_admits_up_to_the_limit,
    expired_connections_do_not_count,
    disconnect_frees_a_slot,
    concurrent_connects_never_pass_the_limit,
    tickets_are_claimed_once,
    connection_in_reads_the_connection_and_its_subscription,
);

#[tokio::test]
async fn dynamo_whole_contract_on_one_table_with_default_pages() {
    let Some((client, table)) = fresh_table().await else {
        return;
    };
    registry::run_all(&DynamoConnectionRegistry::new(client, table)).await;
}

type Item = HashMap<String, AttributeValue>;

async fn scan(client: &aws_sdk_dynamodb::Client, table: &str) -> Vec<Item> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let page = client
            .scan()
            .table_name(table)
            .consistent_read(true)
            .set_exclusive_start_key(start)
            .send()
            .await
            .expect("scan");
        items.extend(page.items.unwrap_or_default());
        match page.last_evaluated_key {
            Some(key) if !key.is_empty() => start = Some(key),
            _ => return items,
        }
    }
}

fn s(item: &Item, name: &str) -> String {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .unwrap_or_else(|| panic!("string attribute {name} in {item:?}"))
        .clone()
}

fn n(item: &Item, name: &str) -> u64 {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .unwrap_or_else(|| panic!("number attribute {name} in {item:?}"))
        .parse()
        .expect("number")
}

#[tokio::test]
async fn dynamo_items_are_mirrored_with_ttl_in_seconds_and_removed_together() {
    let Some((client, table)) = fresh_table().await else {
        return;
    };
    let store = DynamoConnectionRegistry::new(client.clone(), table.clone());
    let sub = Subscription {
        connection_id: ConnectionId::new("L0SM9cOFvHcCIhw="),
        session_id: SessionId::new(Uuid::new_v4().to_string()),
        user_id: UserId::new("user-1"),
        expires_at: now_ms() + 7_200_500,
    };
    store.subscribe(&sub).await.unwrap();

    let mut items = scan(&client, &table).await;
    items.sort_by_key(|i| s(i, "pk"));
    let keys: Vec<(String, String)> = items.iter().map(|i| (s(i, "pk"), s(i, "sk"))).collect();
    assert_eq!(
        keys,
        vec![
            (
                format!("CONN#{}", sub.connection_id),
                format!("SUB#{}", sub.session_id)
            ),
            (
                format!("SESSION#{}", sub.session_id),
                format!("CONN#{}", sub.connection_id)
            ),
        ]
    );
    for item in &items {
        assert_eq!(s(item, "userId"), "user-1");
        assert_eq!(n(item, "expiresAt"), sub.expires_at);
        assert_eq!(
            n(item, TTL_ATTRIBUTE),
            sub.expires_at.div_ceil(1000),
            "ttl is epoch seconds"
        );
    }

    let removed = store.remove_connection(&sub.connection_id).await.unwrap();
    assert_eq!(removed, vec![sub]);
    assert!(
        scan(&client, &table).await.is_empty(),
        "both mirrors are deleted"
    );
}

#[tokio::test]
async fn dynamo_limit_and_ticket_items_carry_their_ttl() {
    let Some((client, table)) = fresh_table().await else {
        return;
    };
    let store = DynamoConnectionRegistry::new(client.clone(), table.clone());
    let user = UserId::new(format!("u-{}", Uuid::new_v4().simple()));
    let expires_at = now_ms() + 7_200_500;
    let connection = Connection {
        id: ConnectionId::new("Xy9Zab12Cd34Ef="),
        user_id: user.clone(),
        connected_at: now_ms(),
        expires_at,
    };
    assert_eq!(
        store.add_connection(&connection, 10).await.unwrap(),
        Admission::Admitted
    );
    let jti = Uuid::new_v4();
    let ticket_expiry = now_ms() + 60_000;
    assert!(store.claim_ticket(jti, ticket_expiry).await.unwrap());

    let items = scan(&client, &table).await;
    let find = |pk: &str| {
        items
            .iter()
            .find(|i| s(i, "pk") == pk)
            .unwrap_or_else(|| panic!("an item {pk} in {items:?}"))
    };
    let slots = find(&format!("USER#{user}"));
    assert_eq!(s(slots, "sk"), "CONNECTIONS");
    assert_eq!(
        slots["connections"]
            .as_m()
            .expect("a map")
            .get(connection.id.as_str()),
        Some(&AttributeValue::N(expires_at.to_string()))
    );
    assert_eq!(n(slots, TTL_ATTRIBUTE), expires_at.div_ceil(1000));
    let ticket = find(&format!("TICKET#{jti}"));
    assert_eq!(n(ticket, TTL_ATTRIBUTE), ticket_expiry.div_ceil(1000));

    store.remove_connection(&connection.id).await.unwrap();
    let items = scan(&client, &table).await;
    let slots = items
        .iter()
        .find(|i| s(i, "pk") == format!("USER#{user}"))
        .expect("the user item stays");
    assert!(
        slots["connections"].as_m().expect("a map").is_empty(),
        "remove_connection frees the slot"
    );
}

#[tokio::test]
async fn dynamo_remove_connection_deletes_more_than_one_batch() {
    let Some((client, table)) = fresh_table().await else {
        return;
    };
    let store =
        DynamoConnectionRegistry::new(client.clone(), table.clone()).with_page_size(PAGE_SIZE);
    let c = ConnectionId::new(format!("{}=", Uuid::new_v4().simple()));
    let u = UserId::new("user-2");
    let mut sessions = Vec::new();
    for _ in 0..30 {
        let session = SessionId::new(Uuid::new_v4().to_string());
        store
            .subscribe(&Subscription {
                connection_id: c.clone(),
                session_id: session.clone(),
                user_id: u.clone(),
                expires_at: now_ms() + 60_000,
            })
            .await
            .unwrap();
        sessions.push(session);
    }
    sessions.sort();
    let removed = store.remove_connection(&c).await.unwrap();
    let removed: Vec<SessionId> = removed.into_iter().map(|s| s.session_id).collect();
    assert_eq!(removed, sessions);
    assert!(
        scan(&client, &table).await.is_empty(),
        "60 items deleted in batches of 25"
    );
}

#[tokio::test]
async fn dynamo_create_table_is_idempotent() {
    let Some((client, table)) = fresh_table().await else {
        return;
    };
    create_table(&client, &table).await.expect("second create");
    let ttl = client
        .describe_time_to_live()
        .table_name(&table)
        .send()
        .await
        .expect("describe_time_to_live")
        .time_to_live_description
        .expect("TTL description");
    assert_eq!(ttl.attribute_name.as_deref(), Some(TTL_ATTRIBUTE));
    assert_eq!(
        ttl.time_to_live_status,
        Some(aws_sdk_dynamodb::types::TimeToLiveStatus::Enabled)
    );
}

#[tokio::test]
async fn dynamo_errors_are_unavailable_and_keep_the_sdk_error() {
    if !servers::require(Server::Moto) {
        return;
    }
    let store = DynamoConnectionRegistry::new(
        moto_client().await,
        format!("dlab-test-missing-{}", Uuid::new_v4().simple()),
    );
    let err = store
        .session_connections(&SessionId::new("s"))
        .await
        .expect_err("missing table");
    let StoreError::Unavailable {
        backend, operation, ..
    } = &err
    else {
        panic!("expected Unavailable, got {err:?}");
    };
    assert_eq!((*backend, *operation), ("dynamodb", "session_connections"));
    let source = std::error::Error::source(&err).expect("source kept");
    assert!(
        source
            .downcast_ref::<aws_sdk_dynamodb::error::SdkError<
                aws_sdk_dynamodb::operation::query::QueryError,
            >>()
            .is_some_and(|e| e
                .as_service_error()
                .is_some_and(|q| q.is_resource_not_found_exception())),
        "source is the SDK's ResourceNotFound error: {source:?}"
    );
}
