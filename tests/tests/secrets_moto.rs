//! Secret settings read from AWS Secrets Manager at cold start (moto's Secrets Manager): the
//! value named by `<NAME>_SECRET_ARN` replaces the plain variable, and a secret that cannot be
//! read refuses the start, naming the setting.

use dlab_service::config::{
    ConfigError, JWT_SECRET, JWT_SECRET_ARN, REDIS_URL, REDIS_URL_SECRET_ARN, Vars,
};
use dlab_service::secrets::SecretsManager;
use dlab_tests::servers::{Server, require};
use dlab_tests::ws_world::aws_test_config;

#[tokio::test]
async fn secrets_named_by_arn_are_read_from_secrets_manager() {
    if !require(Server::Moto) {
        return;
    }
    let sdk = aws_test_config().await;
    let client = aws_sdk_secretsmanager::Client::new(&sdk);
    let name = format!("dlab-test-redis-{}", uuid::Uuid::new_v4().simple());
    let created = client
        .create_secret()
        .name(&name)
        .secret_string("rediss://default:s3cret@cache.example:6379")
        .send()
        .await
        .expect("create the secret in moto");
    let arn = created.arn().expect("an ARN").to_owned();
    let mut vars = Vars::from_pairs([
        (REDIS_URL, "redis://plain-value-must-not-win:6379"),
        (REDIS_URL_SECRET_ARN, arn.as_str()),
    ]);
    let reader = SecretsManager::new(&sdk);
    vars.resolve_secrets(&[(REDIS_URL, REDIS_URL_SECRET_ARN)], Some(&reader))
        .await
        .expect("resolve");
    assert_eq!(
        vars.get(REDIS_URL).as_deref(),
        Some("rediss://default:s3cret@cache.example:6379")
    );

    let missing = format!(
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:dlab-missing-{}-AbCdEf",
        uuid::Uuid::new_v4().simple()
    );
    let mut vars = Vars::from_pairs([(JWT_SECRET_ARN, missing.as_str())]);
    let err = vars
        .resolve_secrets(&[(JWT_SECRET, JWT_SECRET_ARN)], Some(&reader))
        .await
        .expect_err("an unknown secret");
    assert!(
        matches!(
            err,
            ConfigError::Secret {
                name: JWT_SECRET,
                ..
            }
        ),
        "{err}"
    );
    println!("refused: {}", dlab_store::Chain(&err));
}
