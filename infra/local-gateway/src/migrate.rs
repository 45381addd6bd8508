//! `local-gateway migrate`: the explicit step that creates what the stores' correctness rests
//! on, before a deployment's first event and whenever the schema grows.
//!
//! Unique indexes are what make an archive insert its own dedup and collision fence, so they
//! are not left to a Lambda's cold start (six `createIndexes` per start, and a start that fails
//! while MongoDB is down): this command creates them, the local gateway runs it at start when
//! it uses MongoDB, and archive writers refuse to write until the indexes exist. Every step is
//! idempotent.

use thiserror::Error;
use tracing::info;

/// What to migrate.
#[derive(Debug, Clone)]
pub struct MigrateOptions {
    /// MongoDB connection string (the database of the deployment).
    pub mongo_uri: String,
    /// The database (`MongoDbDatabase` of the deployment).
    pub mongo_database: String,
    /// A DynamoDB endpoint (moto, LocalStack) whose connections table should be created too;
    /// on AWS the SAM template creates the table.
    pub dynamodb_endpoint: Option<String>,
    /// The connections table, with `dynamodb_endpoint`.
    pub connections_table: String,
}

/// Why the migration failed.
#[derive(Debug, Error)]
pub enum MigrateError {
    /// MongoDB could not be reached, or refused an index.
    #[error("migrating MongoDB database {database}")]
    Mongo {
        /// The database.
        database: String,
        /// Why.
        #[source]
        source: dlab_store::StoreError,
    },
    /// The connections table could not be created.
    #[error("creating the DynamoDB table {table}")]
    Dynamo {
        /// The table.
        table: String,
        /// Why.
        #[source]
        source: dlab_store::StoreError,
    },
}

/// Creates every MongoDB index the adapters rely on (and the DynamoDB table when an endpoint is
/// given). Safe to run again: existing indexes are left as they are.
pub async fn migrate(options: &MigrateOptions) -> Result<(), MigrateError> {
    let mut config = dlab_store::mongo::MongoConfig::new(&options.mongo_uri);
    config.database = options.mongo_database.clone();
    let mongo_err = |source| MigrateError::Mongo {
        database: options.mongo_database.clone(),
        source,
    };
    let stores = dlab_store::mongo::MongoStores::open(&config)
        .await
        .map_err(mongo_err)?;
    stores.ensure_indexes().await.map_err(mongo_err)?;
    info!(database = %options.mongo_database, "mongodb indexes created or already present");
    if let Some(endpoint) = &options.dynamodb_endpoint {
        let client = aws_sdk_dynamodb::Client::new(&crate::app::aws_config(endpoint).await);
        dlab_store::dynamo::create_table(&client, &options.connections_table)
            .await
            .map_err(|source| MigrateError::Dynamo {
                table: options.connections_table.clone(),
                source,
            })?;
        info!(table = %options.connections_table, "dynamodb connections table ready");
    }
    Ok(())
}
