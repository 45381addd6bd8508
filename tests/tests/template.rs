//! The SAM template's key values, which `sam validate --lint` cannot judge.
//!
//! cfn-lint checks types and references, but not that the WebSocket API routes on `action`, that
//! the routes are the protocol's, that each function is built from a crate of this workspace, or
//! that a permission is scoped to this API and this table. These tests read
//! `infra/template.yaml` and check exactly that, and that the environment variable names are the
//! ones the Rust configuration reads.
//!
//! # Layout
//! - loading: YAML → JSON, CloudFormation short tags (`!Ref`, `!Sub`, `!GetAtt`, …) turned into
//!   their long forms, `Globals.Function` merged into every function;
//! - one test per property: API, routes, functions, environment, IAM, logs, table, outputs.

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

    fn env(&self, name: &str) -> &Value {
        &self.props["Environment"]["Variables"][name]
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

        let code_uri = f.props["CodeUri"].as_str().expect("CodeUri is a path");
        let code_dir = workspace_root().join("infra").join(code_uri);
        assert_eq!(
            code_dir.canonicalize().unwrap(),
            root,
            "{id}: CodeUri must be the workspace root, seen from infra/"
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
        assert!(
            timeout <= INTEGRATION_TIMEOUT_S,
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

#[test]
fn environment_matches_the_configuration_code() {
    use dlab_service::config;

    let t = Template::load();
    for (id, f) in t.functions() {
        for name in [
            config::REDIS_URL,
            config::MONGODB_URI,
            config::JWT_SECRET,
            config::JWT_JWKS_URL,
            config::JWT_ISSUER,
            config::JWT_AUDIENCE,
            config::TICKET_SECRET,
            config::CONNECTIONS_TABLE,
            config::APIGW_MANAGEMENT_ENDPOINT,
            dlab_store::mongo::MONGODB_DATABASE_VAR,
        ] {
            assert!(!f.env(name).is_null(), "{id} lacks {name}");
        }
        assert!(is_ref(f.env(config::REDIS_URL), "RedisUrl"), "{id}");
        assert!(is_ref(f.env(config::MONGODB_URI), "MongoDbUri"), "{id}");
        assert!(
            is_ref(f.env(config::CONNECTIONS_TABLE), "ConnectionsTable"),
            "{id}"
        );
        assert_eq!(
            sub_text(f.env(config::APIGW_MANAGEMENT_ENDPOINT)),
            Some("https://${WebSocketApi}.execute-api.${AWS::Region}.amazonaws.com/${StageName}"),
            "{id}"
        );
        let vpc = &f.props["VpcConfig"];
        assert!(
            is_ref(&vpc["SubnetIds"], "SubnetIds"),
            "{id} runs in the VPC"
        );
        assert!(is_ref(&vpc["SecurityGroupIds"], "SecurityGroupIds"), "{id}");
    }
    let http = &t.functions()["HttpApiFunction"];
    assert!(
        !http.env(dlab_service::http::CORS_ALLOWED_ORIGINS).is_null(),
        "the HTTP function knows the allowed origins"
    );

    for secret in ["RedisUrl", "MongoDbUri", "JwtSecret", "TicketSecret"] {
        assert_eq!(t.parameter(secret)["NoEcho"], json!(true), "{secret}");
    }
    for listed in [
        ("SubnetIds", "List<AWS::EC2::Subnet::Id>"),
        ("SecurityGroupIds", "List<AWS::EC2::SecurityGroup::Id>"),
    ] {
        assert_eq!(t.parameter(listed.0)["Type"], listed.1);
    }
}

#[test]
fn jwks_needs_an_audience_and_an_issuer_and_secrets_32_bytes() {
    use dlab_service::config;

    let t = Template::load();
    assert_eq!(t.parameter("JwtAudience")["Default"], "");
    let optional = |condition: &str, parameter: &str| json!({"Fn::If": [condition, {"Ref": parameter}, {"Ref": "AWS::NoValue"}]});
    for (id, f) in t.functions() {
        assert_eq!(
            f.env(config::JWT_AUDIENCE),
            &optional("HasJwtAudience", "JwtAudience"),
            "{id}"
        );
        assert_eq!(
            f.env(config::JWT_ISSUER),
            &optional("HasJwtIssuer", "JwtIssuer"),
            "{id}"
        );
    }
    let required = |parameter: &str| json!({"Fn::Not": [{"Fn::Equals": [{"Ref": parameter}, ""]}]});
    let rules = t.doc["Rules"].as_object().expect("Rules");
    let with_jwks: Vec<Value> = rules
        .values()
        .filter(|r| r["RuleCondition"] == required("JwtJwksUrl"))
        .flat_map(|r| r["Assertions"].as_array().cloned().unwrap_or_default())
        .map(|a| a["Assert"].clone())
        .collect();
    for parameter in ["JwtAudience", "JwtIssuer"] {
        assert!(
            with_jwks.contains(&required(parameter)),
            "a rule requires {parameter} with JwtJwksUrl: {with_jwks:?}"
        );
    }
    let pattern = format!("^(.{{{},}})?$", config::MIN_SECRET_BYTES);
    for secret in ["JwtSecret", "TicketSecret"] {
        assert_eq!(t.parameter(secret)["AllowedPattern"], pattern, "{secret}");
        assert_eq!(t.parameter(secret)["Default"], "", "{secret}");
    }
}

/// Every statement the functions' roles get, from inline statements and from the template's own
/// managed policies they reference.
fn function_statements(t: &Template, id: &str, f: &Function) -> Vec<Value> {
    let mut statements = Vec::new();
    let policies = match &f.props["Policies"] {
        Value::Array(a) => a.clone(),
        Value::Null => Vec::new(),
        other => vec![other.clone()],
    };
    for policy in policies {
        match &policy {
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
                statements.extend(
                    resource["Properties"]["PolicyDocument"]["Statement"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default(),
                );
            }
            Value::Object(o) if o.contains_key("Statement") => {
                statements.extend(o["Statement"].as_array().cloned().unwrap_or_default());
            }
            Value::Object(o) if o.contains_key("DynamoDBCrudPolicy") => {
                assert!(
                    is_ref(&o["DynamoDBCrudPolicy"]["TableName"], "ConnectionsTable"),
                    "{id}: DynamoDBCrudPolicy must name the connections table"
                );
            }
            other => panic!("{id}: unexpected policy {other}"),
        }
    }
    statements
}

fn as_list(value: &Value) -> Vec<Value> {
    match value {
        Value::Array(a) => a.clone(),
        other => vec![other.clone()],
    }
}

#[test]
fn permissions_are_scoped_to_this_api_and_this_table() {
    let t = Template::load();
    for (id, f) in t.functions() {
        let statements = function_statements(&t, &id, &f);
        let mut manages_connections = false;
        let mut uses_table = false;
        for s in &statements {
            assert_eq!(s["Effect"], "Allow", "{id}: {s}");
            let actions: Vec<String> = as_list(&s["Action"])
                .iter()
                .map(|a| a.as_str().expect("actions are strings").to_owned())
                .collect();
            let resources = as_list(&s["Resource"]);
            assert!(
                !resources.iter().any(|r| r == "*"),
                "{id}: a statement on every resource: {s}"
            );
            for action in &actions {
                assert!(!action.ends_with('*'), "{id}: wildcard action {action}");
                if action == "execute-api:ManageConnections" {
                    manages_connections = true;
                    for r in &resources {
                        let arn = sub_text(r).unwrap_or_else(|| panic!("{id}: {r}"));
                        assert!(
                            arn.contains(":${WebSocketApi}/${StageName}/")
                                && arn.contains("/@connections/"),
                            "{id}: ManageConnections must be scoped to this API's stage: {arn}"
                        );
                    }
                } else if action.starts_with("dynamodb:") {
                    uses_table = true;
                    assert!(
                        TABLE_ACTIONS.contains(&action.as_str()),
                        "{id}: {action} is more than the registry needs"
                    );
                    for r in &resources {
                        assert_eq!(
                            r,
                            &json!({ "Fn::GetAtt": ["ConnectionsTable", "Arn"] }),
                            "{id}: DynamoDB access must be limited to the connections table"
                        );
                    }
                } else {
                    panic!("{id}: unexpected action {action}");
                }
            }
        }
        let crud_policy = as_list(&f.props["Policies"])
            .iter()
            .any(|p| p.get("DynamoDBCrudPolicy").is_some());
        assert!(manages_connections, "{id} can post to connections");
        assert!(
            uses_table || crud_policy,
            "{id} can use the connections table"
        );
    }
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
