//! The SAM template's key values, which `sam validate --lint` cannot judge.
//!
//! cfn-lint checks types and references, but not that the WebSocket API routes on `action`, that
//! the routes are the protocol's, that each function is built from a crate of this workspace, or
//! that a permission is scoped to this API and this table. These tests read
//! `infra/template.yaml` and check exactly that, and least privilege per function: each function
//! gets exactly the environment variables and the permissions of its row in [`NEEDS`], secrets
//! only as Secrets Manager ARNs, and `secretsmanager:GetSecretValue` on exactly those secrets.
//!
//! # Layout
//! - loading: YAML → JSON, CloudFormation short tags (`!Ref`, `!Sub`, `!GetAtt`, …) turned into
//!   their long forms, `Globals.Function` merged into every function;
//! - one test per property: API, routes, functions, environment, secrets, rules, reserved
//!   concurrency, IAM, logs, table, outputs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};
use serde_norway::Value as Yaml;

/// The WebSocket routes of the protocol and the function behind each.
const ROUTES: &[(&str, &str)] = &[
    ("$connect", "WsConnectFunction"),
    ("$disconnect", "WsDisconnectFunction"),
    ("$default", "WsDefaultFunction"),
    ("subscribe", "WsSubscribeFunction"),
    ("submit", "WsSubmitFunction"),
    ("replay", "WsReplayFunction"),
];

/// The DynamoDB actions the connection registry uses.
const TABLE_ACTIONS: &[&str] = &[
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:Query",
    "dynamodb:BatchWriteItem",
];

/// API Gateway's integration timeout, in seconds.
const INTEGRATION_TIMEOUT_S: i64 = 29;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The parsed template (short tags in long form) and what the tests need from it.
struct Template {
    doc: Value,
}

impl Template {
    fn load() -> Self {
        let path = workspace_root().join("infra/template.yaml");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let yaml: Yaml = serde_norway::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()));
        Self {
            doc: to_json(&yaml),
        }
    }

    fn resources(&self) -> &Map<String, Value> {
        self.doc["Resources"]
            .as_object()
            .expect("Resources is a mapping")
    }

    fn resource(&self, id: &str) -> &Value {
        self.resources()
            .get(id)
            .unwrap_or_else(|| panic!("resource {id} is missing"))
    }

    fn of_type<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = (&'a String, &'a Value)> + 'a {
        self.resources()
            .iter()
            .filter(move |(_, r)| r["Type"] == kind)
    }

    fn parameter(&self, name: &str) -> &Value {
        let p = &self.doc["Parameters"][name];
        assert!(p.is_object(), "parameter {name} is missing");
        p
    }

    /// Every `AWS::Serverless::Function` with `Globals.Function` merged under its own properties
    /// (environment variables merged key by key, as SAM does).
    fn functions(&self) -> BTreeMap<String, Function> {
        let globals = self.doc["Globals"]["Function"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        self.of_type("AWS::Serverless::Function")
            .map(|(id, r)| {
                let mut props = globals.clone();
                let own = r["Properties"].as_object().cloned().unwrap_or_default();
                for (k, v) in own {
                    if k == "Environment" {
                        let vars = props
                            .entry("Environment")
                            .or_insert_with(|| json!({"Variables": {}}))
                            .as_object_mut()
                            .expect("Environment is a mapping")
                            .entry("Variables")
                            .or_insert_with(|| json!({}));
                        for (name, value) in v["Variables"].as_object().cloned().unwrap_or_default()
                        {
                            vars[name] = value;
                        }
                    } else {
                        props.insert(k, v);
                    }
                }
                (
                    id.clone(),
                    Function {
                        props: Value::Object(props),
                        metadata: r["Metadata"].clone(),
                    },
                )
            })
            .collect()
    }
}

struct Function {
    props: Value,
    metadata: Value,
}

impl Function {
    fn binary(&self) -> &str {
        self.metadata["BuildProperties"]["Binary"]
            .as_str()
            .unwrap_or("")
    }

    /// Every environment variable (after the Globals merge), by name.
    fn env_vars(&self) -> BTreeMap<String, Value> {
        self.props["Environment"]["Variables"]
            .as_object()
            .map(|vars| vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }
}

/// YAML → JSON, with CloudFormation's short tags in long form: `!Ref X` → `{"Ref": "X"}`,
/// `!GetAtt A.B` → `{"Fn::GetAtt": ["A", "B"]}`, `!Sub s` → `{"Fn::Sub": s}`, and so on.
fn to_json(yaml: &Yaml) -> Value {
    match yaml {
        Yaml::Null => Value::Null,
        Yaml::Bool(b) => Value::Bool(*b),
        Yaml::Number(n) => {
            if let Some(i) = n.as_i64() {
                json!(i)
            } else if let Some(u) = n.as_u64() {
                json!(u)
            } else {
                json!(n.as_f64())
            }
        }
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Sequence(items) => Value::Array(items.iter().map(to_json).collect()),
        Yaml::Mapping(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Yaml::String(s) => s.clone(),
                        other => panic!("non-string key in the template: {other:?}"),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        Yaml::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let tag = tag.trim_start_matches('!');
            let value = to_json(&tagged.value);
            match tag {
                "Ref" => json!({ "Ref": value }),
                "Condition" => json!({ "Condition": value }),
                "GetAtt" => match value {
                    Value::String(s) => {
                        let (resource, attribute) = s
                            .split_once('.')
                            .unwrap_or_else(|| panic!("!GetAtt {s} has no attribute"));
                        json!({ "Fn::GetAtt": [resource, attribute] })
                    }
                    other => json!({ "Fn::GetAtt": other }),
                },
                other => json!({ format!("Fn::{other}"): value }),
            }
        }
    }
}

fn is_ref(value: &Value, target: &str) -> bool {
    value == &json!({ "Ref": target })
}

/// The string of a `Fn::Sub` (either form), or a plain string.
fn sub_text(value: &Value) -> Option<&str> {
    match value {
        Value::String(s) => Some(s),
        Value::Object(o) => match o.get("Fn::Sub")? {
            Value::String(s) => Some(s),
            Value::Array(a) => a.first()?.as_str(),
            _ => None,
        },
        _ => None,
    }
}

/// Crates in functions/ (folder name = package name, checked against its Cargo.toml).
fn function_crates() -> BTreeSet<String> {
    let dir = workspace_root().join("functions");
    let mut crates = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).expect("functions/ is readable") {
        let path = entry.expect("directory entry").path();
        let manifest = path.join("Cargo.toml");
        if !manifest.is_file() {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&manifest).unwrap();
        assert!(
            text.lines()
                .any(|l| l.trim() == format!("name = \"{name}\"")),
            "functions/{name}/Cargo.toml does not name its package {name:?}"
        );
        crates.insert(name);
    }
    crates
}

/// `ws-submit` → `WsSubmitFunction` (STYLE: crate names match SAM logical names).
fn logical_id(crate_name: &str) -> String {
    let mut id: String = crate_name
        .split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect();
    id.push_str("Function");
    id
}

#[test]
fn is_a_sam_template() {
    let t = Template::load();
    assert_eq!(t.doc["Transform"], "AWS::Serverless-2016-10-31");
}

#[test]
fn websocket_api_routes_on_the_action_field() {
    let t = Template::load();
    let apis: Vec<_> = t.of_type("AWS::ApiGatewayV2::Api").collect();
    assert_eq!(
        apis.len(),
        1,
        "exactly one raw ApiGatewayV2 API: the WebSocket API"
    );
    let (id, api) = apis[0];
    assert_eq!(id, "WebSocketApi");
    assert_eq!(api["Properties"]["ProtocolType"], "WEBSOCKET");
    assert_eq!(
        api["Properties"]["RouteSelectionExpression"],
        "$request.body.action"
    );
}

#[test]
fn websocket_routes_are_the_protocol_actions_each_on_its_function() {
    let t = Template::load();
    let routes: BTreeMap<String, &Value> = t
        .of_type("AWS::ApiGatewayV2::Route")
        .map(|(_, r)| {
            assert!(is_ref(&r["Properties"]["ApiId"], "WebSocketApi"));
            (
                r["Properties"]["RouteKey"]
                    .as_str()
                    .expect("RouteKey is a string")
                    .to_owned(),
                &r["Properties"],
            )
        })
        .collect();
    let expected: BTreeSet<String> = ROUTES.iter().map(|(k, _)| k.to_string()).collect();
    assert_eq!(
        routes.keys().cloned().collect::<BTreeSet<_>>(),
        expected,
        "the WebSocket route keys"
    );

    for (key, function) in ROUTES {
        let route = routes[*key];
        let target = sub_text(&route["Target"]).expect("Target is a !Sub");
        let integration_id = target
            .strip_prefix("integrations/${")
            .and_then(|s| s.strip_suffix('}'))
            .unwrap_or_else(|| panic!("route {key}: Target {target:?} is not integrations/${{X}}"));
        let integration = &t.resource(integration_id)["Properties"];
        assert_eq!(integration["IntegrationType"], "AWS_PROXY", "route {key}");
        assert!(is_ref(&integration["ApiId"], "WebSocketApi"));
        let uri = sub_text(&integration["IntegrationUri"]).expect("IntegrationUri is a !Sub");
        assert!(
            uri.contains(&format!("${{{function}.Arn}}")) && uri.ends_with("/invocations"),
            "route {key} must invoke {function}, got {uri}"
        );

        // API Gateway may invoke the function for this route of this API's stage only.
        let permissions: Vec<_> = t
            .of_type("AWS::Lambda::Permission")
            .filter(|(_, p)| is_ref(&p["Properties"]["FunctionName"], function))
            .collect();
        assert_eq!(permissions.len(), 1, "one invoke permission for {function}");
        let p = &permissions[0].1["Properties"];
        assert_eq!(p["Action"], "lambda:InvokeFunction");
        assert_eq!(p["Principal"], "apigateway.amazonaws.com");
        let source = sub_text(&p["SourceArn"]).expect("SourceArn is a !Sub");
        assert!(
            source.ends_with(&format!(":${{WebSocketApi}}/${{StageName}}/{key}")),
            "{function}'s SourceArn must be scoped to this API, stage and route: {source}"
        );
    }
}

#[test]
fn websocket_stage_deploys_every_route() {
    let t = Template::load();
    let deployments: Vec<_> = t.of_type("AWS::ApiGatewayV2::Deployment").collect();
    assert_eq!(deployments.len(), 1);
    let (deployment_id, deployment) = deployments[0];
    let depends: BTreeSet<&str> = match &deployment["DependsOn"] {
        Value::String(s) => [s.as_str()].into(),
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => BTreeSet::new(),
    };
    for (route_id, _) in t.of_type("AWS::ApiGatewayV2::Route") {
        assert!(
            depends.contains(route_id.as_str()),
            "{deployment_id} must depend on {route_id}, or it may deploy without it"
        );
    }

    let stage = &t.resource("WebSocketStage")["Properties"];
    assert!(is_ref(&stage["ApiId"], "WebSocketApi"));
    assert!(is_ref(&stage["DeploymentId"], deployment_id));
    assert!(is_ref(&stage["StageName"], "StageName"));
    assert_eq!(t.parameter("StageName")["Default"], "prod");
    let route_settings = &stage["DefaultRouteSettings"];
    assert!(
        route_settings["ThrottlingRateLimit"].is_object()
            || route_settings["ThrottlingRateLimit"].is_number()
    );
    assert!(
        route_settings["ThrottlingBurstLimit"].is_object()
            || route_settings["ThrottlingBurstLimit"].is_number()
    );
    assert_ne!(
        route_settings["DataTraceEnabled"],
        json!(true),
        "data traces log whole messages, tokens included"
    );
}

#[test]
fn access_logs_never_record_query_strings_or_bodies() {
    let t = Template::load();
    let mut formats = vec![(
        "WebSocketStage",
        &t.resource("WebSocketStage")["Properties"]["AccessLogSettings"],
    )];
    formats.push((
        "HttpApi",
        &t.resource("HttpApi")["Properties"]["AccessLogSettings"],
    ));
    for (id, settings) in formats {
        let format = settings["Format"]
            .as_str()
            .unwrap_or_else(|| panic!("{id} has an access log format"));
        assert!(
            settings["DestinationArn"].is_object(),
            "{id} logs to a log group"
        );
        let fields: Map<String, Value> = serde_json::from_str(format)
            .unwrap_or_else(|e| panic!("{id}'s access log format is not JSON: {e}"));
        assert!(fields.contains_key("requestId") && fields.contains_key("status"));
        let lower = format.to_ascii_lowercase();
        for forbidden in [
            "querystring",
            "$input",
            "$request",
            "requestoverride",
            "authorization",
            "token",
            "$context.authorizer",
        ] {
            assert!(
                !lower.contains(forbidden),
                "{id}'s access log format must not log {forbidden:?} (the connect ticket travels in the query string)"
            );
        }
    }
    // Only variables known to hold no query string, token or body: an allow-list, so a new
    // field must be added here on purpose.
    const SAFE: [&str; 12] = [
        "$context.requestId",
        "$context.connectionId",
        "$context.eventType",
        "$context.routeKey",
        "$context.status",
        "$context.integrationLatency",
        "$context.error.message",
        "$context.requestTime",
        "$context.identity.sourceIp",
        "$context.httpMethod",
        "$context.path",
        "$context.responseLength",
    ];
    for id in ["WebSocketStage", "HttpApi"] {
        let format = t.resource(id)["Properties"]["AccessLogSettings"]["Format"]
            .as_str()
            .expect("a format");
        let fields: Map<String, Value> = serde_json::from_str(format).unwrap();
        for (name, value) in &fields {
            let value = value.as_str().unwrap_or_default();
            assert!(
                SAFE.contains(&value),
                "{id}'s access log field {name} = {value:?} is not one known to hold no query string"
            );
        }
    }
    let ws = &t.resource("WebSocketStage")["Properties"]["AccessLogSettings"]["Format"];
    let ws: Map<String, Value> = serde_json::from_str(ws.as_str().unwrap()).unwrap();
    for field in ["connectionId", "eventType", "routeKey"] {
        assert!(
            ws.contains_key(field),
            "WebSocket access logs record {field}"
        );
    }
}

#[test]
fn functions_are_rust_lambdas_built_from_workspace_crates() {
    let t = Template::load();
    let crates = function_crates();
    let functions = t.functions();
    assert!(!functions.is_empty());

    let architecture = t.parameter("Architecture");
    assert_eq!(architecture["Default"], "arm64");
    assert_eq!(architecture["AllowedValues"], json!(["arm64", "x86_64"]));

    let root = workspace_root().canonicalize().unwrap();
    for (id, f) in &functions {
        assert_eq!(f.props["Runtime"], "provided.al2023", "{id}");
        assert_eq!(f.props["Handler"], "bootstrap", "{id}");
        assert_eq!(
            f.props["Architectures"],
            json!([{ "Ref": "Architecture" }]),
            "{id} takes its architecture from the parameter"
        );
        assert_eq!(f.metadata["BuildMethod"], "rust-cargolambda", "{id}");

        let binary = f.binary();
        assert_eq!(
            *id,
            logical_id(binary),
            "logical id and crate must match (`ws-submit` <-> WsSubmitFunction)"
        );
        assert!(
            crates.contains(binary),
            "{id} builds {binary:?}, which is not a crate in functions/ ({crates:?})"
        );

        // cargo-lambda runs in CodeUri: at the function's package only its own features are
        // resolved; at the workspace root every function's features would be unified and
        // every adapter linked into every binary.
        let code_uri = f.props["CodeUri"].as_str().expect("CodeUri is a path");
        let code_dir = workspace_root().join("infra").join(code_uri);
        assert_eq!(
            code_dir.canonicalize().unwrap(),
            root.join("functions").join(binary),
            "{id}: CodeUri must be its own package functions/{binary}, seen from infra/"
        );
    }
}

#[test]
fn every_function_crate_is_deployed() {
    let t = Template::load();
    let deployed: BTreeSet<String> = t
        .functions()
        .values()
        .map(|f| f.binary().to_owned())
        .collect();
    for name in function_crates() {
        assert!(
            deployed.contains(&name),
            "functions/{name} is not in infra/template.yaml: add {} with \
             Metadata.BuildProperties.Binary: {name}",
            logical_id(&name)
        );
    }
}

#[test]
fn timeouts_and_memory_fit_api_gateway() {
    let t = Template::load();
    for (id, f) in t.functions() {
        let timeout = f.props["Timeout"]
            .as_i64()
            .unwrap_or_else(|| panic!("{id} sets a numeric Timeout"));
        assert!(
            timeout > 3,
            "{id}: SAM's 3 s default is too short for a cold start"
        );
        // Functions behind API Gateway must answer inside its integration timeout; the
        // scheduled one answers no one and may run longer.
        let behind_api = id != "CompactionFunction";
        assert!(
            !behind_api || timeout <= INTEGRATION_TIMEOUT_S,
            "{id}: beyond API Gateway's {INTEGRATION_TIMEOUT_S} s integration timeout the answer is lost"
        );
        let memory = f.props["MemorySize"].as_i64().unwrap_or(128);
        assert!(memory >= 256, "{id}: MemorySize {memory} MB");
    }
    for id in ["WsSubscribeFunction", "WsReplayFunction"] {
        assert_eq!(
            t.functions()[id].props["Timeout"],
            json!(INTEGRATION_TIMEOUT_S),
            "{id} catches up for as long as API Gateway waits"
        );
    }
}

/// The variables that only deployed functions read: each holds the ARN of a Secrets Manager
/// secret, whose SecretString is the value (read at cold start), and the parameter it comes from.
const SECRET_ARN_VARS: &[(&str, &str)] = &[
    ("REDIS_URL_SECRET_ARN", "RedisUrlSecretArn"),
    ("MONGODB_URI_SECRET_ARN", "MongoDbUriSecretArn"),
    ("JWT_SECRET_ARN", "JwtSecretArn"),
    ("TICKET_SECRET_ARN", "TicketSecretArn"),
];

/// The plain variables that carry a secret's value: read by local runs only, never deployed.
const PLAIN_SECRET_VARS: &[&str] = &["REDIS_URL", "MONGODB_URI", "JWT_SECRET", "TICKET_SECRET"];

/// The value parameters the ARN parameters replaced: none may come back.
const RETIRED_SECRET_PARAMETERS: &[&str] = &["RedisUrl", "MongoDbUri", "JwtSecret", "TicketSecret"];

/// What each function may see and do. Nothing more: the environment is compared exactly, and
/// every permission of a function's role must be one of these.
struct Needs {
    function: &'static str,
    /// Every environment variable, exactly.
    env: &'static [&'static str],
    /// DynamoDB on the connections table.
    table: bool,
    /// `execute-api:ManageConnections` on this API's stage.
    post: bool,
    /// Parameters of the secrets it may read with `secretsmanager:GetSecretValue`, exactly.
    secrets: &'static [&'static str],
}

const NEEDS: &[Needs] = &[
    // Verifies the connect ticket and writes the registry: no Redis, no MongoDB, no @connections.
    Needs {
        function: "WsConnectFunction",
        env: &[
            "JWT_SECRET_ARN",
            "JWT_JWKS_URL",
            "JWT_ISSUER",
            "JWT_AUDIENCE",
            "TICKET_SECRET_ARN",
            "CONNECTIONS_TABLE",
            "DLAB_MAX_CONNECTIONS_PER_USER",
        ],
        table: true,
        post: false,
        secrets: &["JwtSecretArn", "TicketSecretArn"],
    },
    // Drops the connection and tells the session (presence).
    Needs {
        function: "WsDisconnectFunction",
        env: &["CONNECTIONS_TABLE", "APIGW_MANAGEMENT_ENDPOINT"],
        table: true,
        post: true,
        secrets: &[],
    },
    Needs {
        function: "WsDefaultFunction",
        env: STORE_ENV,
        table: true,
        post: true,
        secrets: STORE_SECRETS,
    },
    Needs {
        function: "WsSubscribeFunction",
        env: STORE_ENV,
        table: true,
        post: true,
        secrets: STORE_SECRETS,
    },
    Needs {
        function: "WsSubmitFunction",
        env: STORE_ENV,
        table: true,
        post: true,
        secrets: STORE_SECRETS,
    },
    Needs {
        function: "WsReplayFunction",
        env: STORE_ENV,
        table: true,
        post: true,
        secrets: STORE_SECRETS,
    },
    Needs {
        function: "HttpApiFunction",
        env: &[
            "REDIS_URL_SECRET_ARN",
            "REDIS_CLUSTER",
            "MONGODB_URI_SECRET_ARN",
            "MONGODB_DATABASE",
            "CONNECTIONS_TABLE",
            "APIGW_MANAGEMENT_ENDPOINT",
            "JWT_SECRET_ARN",
            "JWT_JWKS_URL",
            "JWT_ISSUER",
            "JWT_AUDIENCE",
            "TICKET_SECRET_ARN",
            "CORS_ALLOWED_ORIGINS",
            "DLAB_MAX_LIST_BYTES",
            "DLAB_MAX_ACTORS_PER_CAMPAIGN",
            "DLAB_ADMINS",
            "DLAB_MAX_ACTOR_BYTES",
            "DLAB_MAX_SESSIONS_PER_CAMPAIGN",
            "DLAB_COMPACTION_THRESHOLD",
            "DLAB_HOT_TAIL",
            "DLAB_ARCHIVE_RETENTION_DAYS",
        ],
        table: true,
        post: true,
        secrets: &[
            "RedisUrlSecretArn",
            "MongoDbUriSecretArn",
            "JwtSecretArn",
            "TicketSecretArn",
        ],
    },
    // Scheduled maintenance: the stores only; no DynamoDB, no @connections, no tokens.
    Needs {
        function: "CompactionFunction",
        env: &[
            "REDIS_URL_SECRET_ARN",
            "REDIS_CLUSTER",
            "MONGODB_URI_SECRET_ARN",
            "MONGODB_DATABASE",
            "DLAB_COMPACTION_THRESHOLD",
            "DLAB_HOT_TAIL",
            "DLAB_IDLE_RELEASE_SECS",
            "DLAB_ARCHIVE_RETENTION_DAYS",
        ],
        table: false,
        post: false,
        secrets: STORE_SECRETS,
    },
];

/// The WebSocket handlers behind a connection (they never verify a token: the connection record
/// carries the user).
const STORE_ENV: &[&str] = &[
    "REDIS_URL_SECRET_ARN",
    "REDIS_CLUSTER",
    "MONGODB_URI_SECRET_ARN",
    "MONGODB_DATABASE",
    "CONNECTIONS_TABLE",
    "APIGW_MANAGEMENT_ENDPOINT",
    // Every committing function compacts inline (every threshold-th event).
    "DLAB_COMPACTION_THRESHOLD",
    "DLAB_HOT_TAIL",
    "DLAB_ARCHIVE_RETENTION_DAYS",
];
const STORE_SECRETS: &[&str] = &["RedisUrlSecretArn", "MongoDbUriSecretArn"];

/// A full Secrets Manager secret ARN, with the six-character suffix Secrets Manager appends: the
/// IAM grant is then that exact secret, no `-??????` wildcard needed.
const SECRET_ARN_PATTERN: &str =
    "arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:[A-Za-z0-9/_+=.@-]+-[A-Za-z0-9]{6}";

fn needs(id: &str) -> &'static Needs {
    NEEDS
        .iter()
        .find(|n| n.function == id)
        .unwrap_or_else(|| panic!("{id} is not in the NEEDS table of this test"))
}

/// `{"Fn::If": [condition, {"Ref": parameter}, {"Ref": "AWS::NoValue"}]}`: a value present only
/// when `condition` holds.
fn optional(condition: &str, value: Value) -> Value {
    json!({"Fn::If": [condition, value, {"Ref": "AWS::NoValue"}]})
}

/// `Not(Equals(Ref parameter, ""))`: the shape of every "is set" condition and rule.
fn is_set(parameter: &str) -> Value {
    json!({"Fn::Not": [{"Fn::Equals": [{"Ref": parameter}, ""]}]})
}

/// The value each variable must have in every function that has it.
fn expected_env_value(name: &str) -> Value {
    let management = json!({"Fn::Sub": "https://${WebSocketApi}.execute-api.${AWS::Region}.amazonaws.com/${StageName}"});
    match name {
        "REDIS_URL_SECRET_ARN" => json!({"Ref": "RedisUrlSecretArn"}),
        "REDIS_CLUSTER" => json!({"Fn::If": ["RedisClusterMode", "1", "0"]}),
        "MONGODB_URI_SECRET_ARN" => json!({"Ref": "MongoDbUriSecretArn"}),
        "MONGODB_DATABASE" => json!({"Ref": "MongoDbDatabase"}),
        "CONNECTIONS_TABLE" => json!({"Ref": "ConnectionsTable"}),
        "APIGW_MANAGEMENT_ENDPOINT" => management,
        "JWT_SECRET_ARN" => optional("HasJwtSecretArn", json!({"Ref": "JwtSecretArn"})),
        "JWT_JWKS_URL" => optional("HasJwksUrl", json!({"Ref": "JwtJwksUrl"})),
        "JWT_ISSUER" => optional("HasJwtIssuer", json!({"Ref": "JwtIssuer"})),
        "JWT_AUDIENCE" => optional("HasJwtAudience", json!({"Ref": "JwtAudience"})),
        "TICKET_SECRET_ARN" => optional("HasTicketSecretArn", json!({"Ref": "TicketSecretArn"})),
        "DLAB_MAX_CONNECTIONS_PER_USER" => json!({"Ref": "MaxConnectionsPerUser"}),
        "CORS_ALLOWED_ORIGINS" => json!({"Fn::Join": [",", {"Ref": "CorsAllowedOrigins"}]}),
        "DLAB_MAX_LIST_BYTES" => json!({"Ref": "MaxListBytes"}),
        "DLAB_MAX_ACTORS_PER_CAMPAIGN" => json!({"Ref": "MaxActorsPerCampaign"}),
        "DLAB_ADMINS" => json!({"Fn::Join": [",", {"Ref": "Admins"}]}),
        "DLAB_MAX_ACTOR_BYTES" => json!({"Ref": "MaxActorBytes"}),
        "DLAB_MAX_SESSIONS_PER_CAMPAIGN" => json!({"Ref": "MaxSessionsPerCampaign"}),
        "DLAB_COMPACTION_THRESHOLD" => json!({"Ref": "CompactionThreshold"}),
        "DLAB_HOT_TAIL" => json!({"Ref": "HotTail"}),
        "DLAB_IDLE_RELEASE_SECS" => json!({"Ref": "IdleReleaseSeconds"}),
        "DLAB_ARCHIVE_RETENTION_DAYS" => optional(
            "HasArchiveRetention",
            json!({"Ref": "ArchiveRetentionDays"}),
        ),
        other => panic!("no expected value for {other}: add it to expected_env_value"),
    }
}

#[test]
fn no_function_gets_a_secret_value_or_a_shared_environment() {
    let t = Template::load();
    assert!(
        t.doc["Globals"]["Function"]["Environment"].is_null(),
        "a Globals environment gives every function every variable: {}",
        t.doc["Globals"]["Function"]["Environment"]
    );
    for (id, f) in t.functions() {
        let vars = f.env_vars();
        for plain in PLAIN_SECRET_VARS {
            assert!(
                !vars.contains_key(*plain),
                "{id} has {plain}: deployed functions get the secret's ARN ({plain}_SECRET_ARN), never its value"
            );
        }
        for (name, value) in &vars {
            assert!(
                !value.to_string().contains("{{resolve:"),
                "{id}: {name} resolves a secret into the function's configuration"
            );
        }
    }
    for retired in RETIRED_SECRET_PARAMETERS {
        assert!(
            t.doc["Parameters"][*retired].is_null(),
            "parameter {retired} takes a secret's value; the stack takes ARNs only"
        );
    }
}

#[test]
fn each_function_has_exactly_its_environment() {
    let t = Template::load();
    let functions = t.functions();
    assert_eq!(
        functions
            .keys()
            .map(String::as_str)
            .collect::<BTreeSet<_>>(),
        NEEDS.iter().map(|n| n.function).collect::<BTreeSet<_>>(),
        "every function has a row in NEEDS"
    );
    for (id, f) in &functions {
        let expected: BTreeMap<String, Value> = needs(id)
            .env
            .iter()
            .map(|name| (name.to_string(), expected_env_value(name)))
            .collect();
        assert_eq!(f.env_vars(), expected, "{id}'s environment");

        let vpc = &f.props["VpcConfig"];
        assert!(
            is_ref(&vpc["SubnetIds"], "SubnetIds"),
            "{id} runs in the VPC"
        );
        assert!(is_ref(&vpc["SecurityGroupIds"], "SecurityGroupIds"), "{id}");
    }
    for listed in [
        ("SubnetIds", "List<AWS::EC2::Subnet::Id>"),
        ("SecurityGroupIds", "List<AWS::EC2::SecurityGroup::Id>"),
    ] {
        assert_eq!(t.parameter(listed.0)["Type"], listed.1);
    }
}

#[test]
fn optional_variables_are_set_only_when_their_parameter_is() {
    let t = Template::load();
    let conditions = &t.doc["Conditions"];
    for (condition, parameter) in [
        ("HasJwtSecretArn", "JwtSecretArn"),
        ("HasJwksUrl", "JwtJwksUrl"),
        ("HasJwtIssuer", "JwtIssuer"),
        ("HasJwtAudience", "JwtAudience"),
        ("HasTicketSecretArn", "TicketSecretArn"),
        ("HasSecretsKmsKey", "SecretsKmsKeyArn"),
    ] {
        assert_eq!(conditions[condition], is_set(parameter), "{condition}");
        assert_eq!(
            t.parameter(parameter)["Default"],
            "",
            "{parameter} is optional"
        );
    }
    // MemoryDB and ElastiCache in cluster mode speak the cluster protocol.
    assert_eq!(
        conditions["RedisClusterMode"],
        json!({"Fn::Equals": [{"Ref": "RedisCluster"}, "true"]})
    );
    let cluster = t.parameter("RedisCluster");
    assert_eq!(cluster["Default"], "true");
    assert_eq!(cluster["AllowedValues"], json!(["true", "false"]));
}

#[test]
fn secret_parameters_take_full_secret_arns() {
    let t = Template::load();
    for (variable, parameter) in SECRET_ARN_VARS {
        let p = t.parameter(parameter);
        assert_eq!(p["Type"], "String", "{parameter}");
        let optional = matches!(*parameter, "JwtSecretArn" | "TicketSecretArn");
        let pattern = if optional {
            assert_eq!(p["Default"], "", "{parameter} is optional");
            format!("^({SECRET_ARN_PATTERN})?$")
        } else {
            assert!(p["Default"].is_null(), "{parameter} is required");
            format!("^{SECRET_ARN_PATTERN}$")
        };
        assert_eq!(p["AllowedPattern"], pattern, "{parameter} ({variable})");
        assert!(
            p["ConstraintDescription"].is_string(),
            "{parameter}: a refused ARN says why"
        );
    }
    assert_eq!(
        t.parameter("SecretsKmsKeyArn")["AllowedPattern"],
        "^(arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+)?$"
    );
}

#[test]
fn quota_parameters_default_to_the_code_defaults() {
    use dlab_store::model::{
        DEFAULT_MAX_ACTOR_BYTES, DEFAULT_MAX_ACTORS_PER_CAMPAIGN, DEFAULT_MAX_PAGE_BYTES,
        DEFAULT_MAX_SESSIONS_PER_CAMPAIGN,
    };

    let t = Template::load();
    let max_connections = dlab_service::config::Settings::default().max_connections_per_user;
    for (parameter, default) in [
        ("MaxConnectionsPerUser", max_connections as u64),
        ("MaxListBytes", DEFAULT_MAX_PAGE_BYTES as u64),
        ("MaxActorsPerCampaign", DEFAULT_MAX_ACTORS_PER_CAMPAIGN),
        ("MaxActorBytes", DEFAULT_MAX_ACTOR_BYTES as u64),
        ("MaxSessionsPerCampaign", DEFAULT_MAX_SESSIONS_PER_CAMPAIGN),
    ] {
        let p = t.parameter(parameter);
        assert_eq!(p["Type"], "Number", "{parameter}");
        assert_eq!(p["Default"], json!(default), "{parameter}");
        assert_eq!(
            p["MinValue"],
            json!(1),
            "{parameter}: 0 would refuse everything"
        );
    }
}

#[test]
fn rules_require_a_usable_token_configuration() {
    let t = Template::load();
    let rules = t.doc["Rules"].as_object().expect("Rules");
    let assertions = |condition: Option<&Value>| -> Vec<Value> {
        rules
            .values()
            .filter(|r| r.get("RuleCondition") == condition)
            .flat_map(|r| r["Assertions"].as_array().cloned().unwrap_or_default())
            .map(|a| a["Assert"].clone())
            .collect()
    };
    let one_of = |a: &str, b: &str, asserts: &[Value]| {
        asserts.iter().any(|x| {
            x == &json!({"Fn::Or": [is_set(a), is_set(b)]})
                || x == &json!({"Fn::Or": [is_set(b), is_set(a)]})
        })
    };

    let always = assertions(None);
    assert!(
        one_of("JwtSecretArn", "JwtJwksUrl", &always),
        "a rule requires JwtSecretArn or JwtJwksUrl: {always:?}"
    );

    let with_jwks = assertions(Some(&is_set("JwtJwksUrl")));
    for parameter in ["JwtAudience", "JwtIssuer"] {
        assert!(
            with_jwks.contains(&is_set(parameter)),
            "a rule requires {parameter} with JwtJwksUrl: {with_jwks:?}"
        );
    }
    assert!(
        one_of("TicketSecretArn", "JwtSecretArn", &with_jwks),
        "a rule requires TicketSecretArn or JwtSecretArn with JwtJwksUrl: {with_jwks:?}"
    );
    assert_eq!(t.parameter("JwtAudience")["Default"], "");
}

#[test]
fn reserved_concurrency_is_a_parameter_per_function() {
    let t = Template::load();
    let functions = t.functions();
    let parameters: BTreeSet<&str> = t.doc["Parameters"]
        .as_object()
        .expect("Parameters")
        .keys()
        .map(String::as_str)
        .filter(|p| p.ends_with("ReservedConcurrency"))
        .collect();
    let mut expected = BTreeSet::new();
    for (id, f) in &functions {
        let base = id
            .strip_suffix("Function")
            .expect("logical ids end in Function");
        let parameter = format!("{base}ReservedConcurrency");
        let condition = format!("{base}ReservesConcurrency");
        let p = t.parameter(&parameter);
        assert_eq!(p["Type"], "Number", "{parameter}");
        assert_eq!(
            p["Default"],
            json!(-1),
            "{parameter}: unreserved by default"
        );
        assert_eq!(p["MinValue"], json!(-1), "{parameter}");
        assert_eq!(
            t.doc["Conditions"][&condition],
            json!({"Fn::Not": [{"Fn::Equals": [{"Ref": parameter}, "-1"]}]}),
            "{condition}: reserve exactly when the parameter is 0 or more"
        );
        assert_eq!(
            f.props["ReservedConcurrentExecutions"],
            optional(&condition, json!({"Ref": parameter})),
            "{id} reserves its parameter's concurrency under {condition}"
        );
        expected.insert(parameter);
    }
    assert_eq!(
        parameters,
        expected.iter().map(String::as_str).collect(),
        "one reserved concurrency parameter per function, none left over"
    );
}

/// A statement of a function's role, with the condition under which the role has it.
struct Grant {
    condition: Option<String>,
    statement: Value,
}

/// `Fn::If [c, x, AWS::NoValue]` → (Some(c), x); anything else → (None, value).
fn unwrap_optional(value: &Value) -> (Option<String>, &Value) {
    if let Some([c, x, none]) = value
        .get("Fn::If")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        && is_ref(none, "AWS::NoValue")
    {
        return (Some(c.as_str().expect("a condition name").to_owned()), x);
    }
    (None, value)
}

/// Every statement the function's role gets: inline statements and the template's own managed
/// policies it references (conditionally, under `Fn::If`, when the policy has a condition).
fn function_grants(t: &Template, id: &str, f: &Function) -> Vec<Grant> {
    let mut grants = Vec::new();
    for policy in as_list(&f.props["Policies"]) {
        let (condition, policy) = unwrap_optional(&policy);
        match policy {
            // AWS managed policies by name: only the VPC one (network interfaces, logs).
            Value::String(name) => assert_eq!(
                name, "AWSLambdaVPCAccessExecutionRole",
                "{id}: unexpected managed policy {name}"
            ),
            Value::Object(o) if o.contains_key("Ref") => {
                let target = o["Ref"].as_str().unwrap();
                let resource = t.resource(target);
                assert_eq!(
                    resource["Type"], "AWS::IAM::ManagedPolicy",
                    "{id}: {target}"
                );
                assert_eq!(
                    resource["Condition"].as_str(),
                    condition.as_deref(),
                    "{id}: {target} must be referenced under the condition it is created under"
                );
                for statement in as_list(&resource["Properties"]["PolicyDocument"]["Statement"]) {
                    grants.push(Grant {
                        condition: condition.clone(),
                        statement,
                    });
                }
            }
            Value::Object(o) if o.contains_key("Statement") => {
                for statement in as_list(&o["Statement"]) {
                    grants.push(Grant {
                        condition: condition.clone(),
                        statement,
                    });
                }
            }
            other => panic!("{id}: unexpected policy {other}"),
        }
    }
    grants
}

fn as_list(value: &Value) -> Vec<Value> {
    match value {
        Value::Array(a) => a.clone(),
        Value::Null => Vec::new(),
        other => vec![other.clone()],
    }
}

/// What a function's role may do, read from its statements.
#[derive(Default, Debug)]
struct Granted {
    table: bool,
    post: bool,
    /// Secret parameters readable with GetSecretValue.
    secrets: BTreeSet<String>,
    /// Statements with kms:Decrypt, with their condition.
    decrypt: Vec<Option<String>>,
}

/// Reads the grants, failing on anything not scoped to this stack's resources.
fn granted(t: &Template, id: &str, f: &Function) -> Granted {
    let mut g = Granted::default();
    for Grant {
        condition,
        statement: s,
    } in function_grants(t, id, f)
    {
        assert_eq!(s["Effect"], "Allow", "{id}: {s}");
        assert!(
            s["NotAction"].is_null() && s["NotResource"].is_null(),
            "{id}: {s}"
        );
        let actions: Vec<String> = as_list(&s["Action"])
            .iter()
            .map(|a| a.as_str().expect("actions are strings").to_owned())
            .collect();
        let resources = as_list(&s["Resource"]);
        assert!(
            !resources
                .iter()
                .any(|r| r.as_str().is_some_and(|r| r.contains('*'))),
            "{id}: a statement on a wildcard resource: {s}"
        );
        for action in &actions {
            assert!(!action.contains('*'), "{id}: wildcard action {action}");
            match action.as_str() {
                "execute-api:ManageConnections" => {
                    g.post = true;
                    for r in &resources {
                        let arn = sub_text(r).unwrap_or_else(|| panic!("{id}: {r}"));
                        assert!(
                            arn.contains(":${WebSocketApi}/${StageName}/")
                                && arn.contains("/@connections/"),
                            "{id}: ManageConnections must be scoped to this API's stage: {arn}"
                        );
                    }
                }
                a if a.starts_with("dynamodb:") => {
                    g.table = true;
                    assert!(
                        TABLE_ACTIONS.contains(&a),
                        "{id}: {a} is more than the registry needs"
                    );
                    for r in &resources {
                        assert_eq!(
                            r,
                            &json!({ "Fn::GetAtt": ["ConnectionsTable", "Arn"] }),
                            "{id}: DynamoDB access must be limited to the connections table"
                        );
                    }
                }
                "secretsmanager:GetSecretValue" => {
                    assert_eq!(actions.len(), 1, "{id}: GetSecretValue stands alone: {s}");
                    for r in &resources {
                        let (when, r) = unwrap_optional(r);
                        let parameter = r["Ref"].as_str().unwrap_or_else(|| {
                            panic!("{id}: GetSecretValue on {r}, not on a secret ARN parameter")
                        });
                        assert!(
                            SECRET_ARN_VARS.iter().any(|(_, p)| *p == parameter),
                            "{id}: GetSecretValue on {parameter}, which is not a secret ARN"
                        );
                        if let Some(when) = when {
                            assert_eq!(
                                t.doc["Conditions"][&when],
                                is_set(parameter),
                                "{id}: {parameter} is granted under {when}, not under 'it is set'"
                            );
                        }
                        g.secrets.insert(parameter.to_owned());
                    }
                }
                "kms:Decrypt" => {
                    for r in &resources {
                        assert!(is_ref(r, "SecretsKmsKeyArn"), "{id}: kms:Decrypt on {r}");
                    }
                    assert_eq!(
                        s["Condition"]["StringEquals"]["kms:ViaService"],
                        json!({"Fn::Sub": "secretsmanager.${AWS::Region}.amazonaws.com"}),
                        "{id}: the key decrypts through Secrets Manager only"
                    );
                    g.decrypt.push(condition.clone());
                }
                other => panic!("{id}: unexpected action {other}"),
            }
        }
    }
    g
}

#[test]
fn each_function_has_exactly_its_permissions() {
    let t = Template::load();
    for (id, f) in t.functions() {
        let need = needs(&id);
        let g = granted(&t, &id, &f);
        assert_eq!(
            g.table, need.table,
            "{id}: DynamoDB on the connections table"
        );
        assert_eq!(g.post, need.post, "{id}: execute-api:ManageConnections");
        assert_eq!(
            g.secrets,
            need.secrets.iter().map(|s| s.to_string()).collect(),
            "{id}: secretsmanager:GetSecretValue resources"
        );
        // A customer managed key: kms:Decrypt for exactly the functions that read secrets.
        let expected_decrypt = if need.secrets.is_empty() {
            vec![]
        } else {
            vec![Some("HasSecretsKmsKey".to_owned())]
        };
        assert_eq!(
            g.decrypt, expected_decrypt,
            "{id}: kms:Decrypt on the secrets' key"
        );
    }
}

#[test]
fn each_function_reads_exactly_the_secrets_it_is_told_of() {
    let t = Template::load();
    for (id, f) in t.functions() {
        let vars = f.env_vars();
        let told: BTreeSet<String> = SECRET_ARN_VARS
            .iter()
            .filter(|(variable, _)| vars.contains_key(*variable))
            .map(|(_, parameter)| parameter.to_string())
            .collect();
        assert_eq!(
            granted(&t, &id, &f).secrets,
            told,
            "{id}: GetSecretValue must cover exactly the secrets in its *_SECRET_ARN variables"
        );
    }
}

#[test]
fn ws_connect_reaches_neither_redis_nor_mongodb_nor_connections() {
    let t = Template::load();
    let functions = t.functions();
    let f = &functions["WsConnectFunction"];
    for name in f.env_vars().keys() {
        assert!(
            !name.starts_with("REDIS")
                && !name.starts_with("MONGODB")
                && !name.starts_with("APIGW"),
            "ws-connect has {name}: it must start while Redis and MongoDB are down"
        );
    }
    let g = granted(&t, "WsConnectFunction", f);
    for secret in ["RedisUrlSecretArn", "MongoDbUriSecretArn"] {
        assert!(
            !g.secrets.contains(secret),
            "ws-connect may read {secret}: {:?}",
            g.secrets
        );
    }
    assert!(!g.post, "ws-connect may post to @connections");
}

#[test]
fn connections_table_matches_the_registry() {
    let t = Template::load();
    let table = t.resource("ConnectionsTable");
    assert_eq!(table["Type"], "AWS::DynamoDB::Table");
    let p = &table["Properties"];
    assert_eq!(p["BillingMode"], "PAY_PER_REQUEST");
    assert_eq!(
        p["KeySchema"],
        json!([
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"}
        ])
    );
    let attributes: BTreeSet<(String, String)> = p["AttributeDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["AttributeName"].as_str().unwrap().to_owned(),
                a["AttributeType"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        attributes,
        [("pk".into(), "S".into()), ("sk".into(), "S".into())].into()
    );
    assert_eq!(
        p["TimeToLiveSpecification"],
        json!({"AttributeName": dlab_store::dynamo::TTL_ATTRIBUTE, "Enabled": true})
    );
}

#[test]
fn http_api_serves_the_http_function_with_cors_from_a_parameter() {
    let t = Template::load();
    let api = t.resource("HttpApi");
    assert_eq!(api["Type"], "AWS::Serverless::HttpApi");
    let p = &api["Properties"];
    let cors_origins = p["CorsConfiguration"]["AllowOrigins"]
        .as_object()
        .or(p["DefinitionBody"]["x-amazon-apigateway-cors"]["allowOrigins"].as_object())
        .map(|o| Value::Object(o.clone()));
    assert!(
        cors_origins.is_some_and(|o| is_ref(&o, "CorsAllowedOrigins")),
        "allowed origins come from the CorsAllowedOrigins parameter"
    );
    assert_eq!(
        t.parameter("CorsAllowedOrigins")["Type"],
        "CommaDelimitedList"
    );

    let f = t.resource("HttpApiFunction");
    let events = f["Properties"]["Events"].as_object().expect("Events");
    assert!(
        events
            .values()
            .any(|e| e["Type"] == "HttpApi" && is_ref(&e["Properties"]["ApiId"], "HttpApi")),
        "HttpApiFunction is the HTTP API's integration"
    );
}

#[test]
fn outputs_name_the_endpoints_and_the_table() {
    let t = Template::load();
    let outputs = &t.doc["Outputs"];
    assert_eq!(
        sub_text(&outputs["WebSocketUrl"]["Value"]),
        Some("wss://${WebSocketApi}.execute-api.${AWS::Region}.amazonaws.com/${StageName}")
    );
    let http = sub_text(&outputs["HttpApiUrl"]["Value"]).expect("HttpApiUrl");
    assert!(
        http.starts_with("https://${HttpApi}.execute-api."),
        "{http}"
    );
    assert!(is_ref(
        &outputs["ConnectionsTableName"]["Value"],
        "ConnectionsTable"
    ));
}

#[test]
fn samconfig_points_at_the_template() {
    let path = workspace_root().join("samconfig.toml");
    let text = std::fs::read_to_string(&path).expect("samconfig.toml at the top level");
    assert!(text.contains("template_file = \"infra/template.yaml\""));
    assert!(text.contains("stack_name = \"dungeon-lab-events\""));
}

/// Every `.rs` file under `dir`, recursively.
fn rust_sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "target") {
                rust_sources(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_variable_the_template_sets_is_named_by_the_code() {
    let root = workspace_root();
    let mut files = Vec::new();
    for dir in ["shared", "functions", "infra/local-gateway"] {
        rust_sources(&root.join(dir), &mut files);
    }
    let code: String = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap_or_default())
        .collect();
    let names: BTreeSet<&str> = NEEDS.iter().flat_map(|n| n.env.iter().copied()).collect();
    let unread: Vec<&str> = names
        .into_iter()
        .filter(|name| !code.contains(&format!("\"{name}\"")))
        .collect();
    assert!(
        unread.is_empty(),
        "the template sets variables no Rust source names as a string (a misspelt or dead \
         variable): {unread:?}"
    );
}

#[test]
fn compaction_runs_on_a_schedule_with_least_privilege_and_alarms() {
    let t = Template::load();
    let f = t.resource("CompactionFunction");
    let schedule = &f["Properties"]["Events"]["Schedule"];
    assert_eq!(schedule["Type"], "Schedule", "{schedule}");
    assert_eq!(
        schedule["Properties"]["Schedule"],
        json!({"Ref": "CompactionSchedule"})
    );
    assert_eq!(
        t.parameter("CompactionSchedule")["Default"],
        "rate(5 minutes)"
    );
    assert!(
        f["Properties"]["Timeout"].as_i64().unwrap() >= 60,
        "a run needs time for many sessions"
    );
    assert_eq!(
        t.parameter("CompactionThreshold")["Default"],
        json!(dlab_service::config::Lifecycle::default().compaction_threshold)
    );
    assert_eq!(
        t.parameter("HotTail")["Default"],
        json!(dlab_service::config::Lifecycle::default().hot_tail)
    );
    assert_eq!(
        t.parameter("ArchiveRetentionDays")["Default"],
        json!(0),
        "retention is off by default"
    );
    for (alarm, metric) in [
        ("BackfillFailuresAlarm", "BackfillFailures"),
        ("ArchiveLagAlarm", "ArchiveLag"),
    ] {
        let a = &t.resource(alarm)["Properties"];
        assert_eq!(a["Namespace"], dlab_service::metrics::NAMESPACE, "{alarm}");
        assert_eq!(a["MetricName"], metric, "{alarm}");
        assert_eq!(
            a["Dimensions"],
            json!([{"Name": "Function", "Value": {"Ref": "CompactionFunction"}}]),
            "{alarm}: the dimension the EMF lines carry"
        );
    }
    assert_eq!(
        t.resource("BackfillFailuresAlarm")["Properties"]["Threshold"],
        json!(0),
        "any backfill failure alarms"
    );
}
