//! A function's cold start contacts no backend: the ports are built lazily, so `$connect`
//! (which needs only the connection registry) works while Redis and MongoDB are down, and the
//! first command to a dead backend fails as `unavailable` instead of the start failing.

use std::sync::Arc;

use dlab_core::ids::{ConnectionId, UserId};
use dlab_service::config::{CONNECTIONS_TABLE, Config, JWT_SECRET, MONGODB_URI, REDIS_URL, Vars};
use dlab_service::deps::Deps;
use dlab_service::lambda::WsLambda;
use dlab_store::memory::MemoryNotifier;
use dlab_tests::servers::{Server, require};
use dlab_tests::ws_world::{aws_test_config, connect_event, message_event};

const SECRET: &str = "cold-start-test-secret-of-32-bytes!";

fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn a_cold_start_contacts_no_backend_and_connect_works_while_redis_and_mongodb_are_down() {
    if !require(Server::Moto) {
        return;
    }
    let sdk = aws_test_config().await;
    let table = format!("cold-start-{}", uuid::Uuid::new_v4().simple());
    dlab_store::dynamo::create_table(&aws_sdk_dynamodb::Client::new(&sdk), &table)
        .await
        .expect("table");
    let vars = Vars::from_pairs([
        (JWT_SECRET, SECRET.to_owned()),
        (REDIS_URL, format!("redis://127.0.0.1:{}", closed_port())),
        (
            MONGODB_URI,
            format!(
                "mongodb://127.0.0.1:{}/?directConnection=true",
                closed_port()
            ),
        ),
        (CONNECTIONS_TABLE, table.clone()),
    ]);
    let config = Config::from_vars(&vars).expect("config");
    // With eager connections this fails: nothing listens on either port.
    let deps = Deps::from_config(&config, &sdk, Arc::new(MemoryNotifier::new()))
        .await
        .expect("the cold start contacts no backend");
    let edge = WsLambda::with_deps(deps.clone());
    let ticket = deps.auth.issue_ticket(&UserId::new("alice")).ticket;
    let connection = ConnectionId::new(format!("c-{}", uuid::Uuid::new_v4().simple()));
    let answer = edge.handle(connect_event(&connection, Some(&ticket))).await;
    assert_eq!(answer.status_code, 200, "$connect needs only the registry");
    assert!(
        deps.registry
            .connection(&connection)
            .await
            .unwrap()
            .is_some(),
        "stored on DynamoDB"
    );
    // A message needs Redis (rate limits): refused as unavailable, not a crash.
    let notifier = MemoryNotifier::new();
    let mut rx = notifier.open(&connection);
    let mut deps2 = deps.clone();
    deps2.notifier = Arc::new(notifier);
    let edge = WsLambda::with_deps(deps2);
    edge.handle(message_event(&connection, r#"{"action":"ping"}"#))
        .await;
    let frame: serde_json::Value = serde_json::from_slice(&rx.recv().await.unwrap()).unwrap();
    assert_eq!(frame["event"], "error");
    assert_eq!(frame["data"]["code"], "unavailable", "{frame}");
}
