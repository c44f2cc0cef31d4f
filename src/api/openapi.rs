//! The OpenAPI 3 document of the JSON gateway, generated from the proto.
//!
//! It reads the descriptor set built from `proto/` (the one reflection
//! serves), so the paths come from the same `google.api.http` annotations
//! the routes were generated from, the schemas from the messages in their
//! canonical JSON form (int64 as a string, Duration as `"60s"`, Timestamp as
//! RFC 3339, enums by name), and the descriptions from the proto comments.
//! The seed's three routes are added by hand, as they are not in the proto.

use prost_reflect::{
    DescriptorPool, ExtensionDescriptor, FieldDescriptor, Kind, MessageDescriptor,
};
use prost_types::FileDescriptorProto;
use serde_json::{Map, Value, json};

use crate::{
    domain::{
        PeriodBounds,
        assertion::{MAX_ASSERTIONS, MAX_STATUS_RANGES, MAX_TEXT_BYTES, MAX_TLS_DAYS},
        email, password, target_url,
    },
    proto::{
        FILE_DESCRIPTOR_SET, PUBLIC_METHODS, monitor::v1::monitor_service_server::SERVICE_NAME,
    },
    service::statuses::MAX_PAGE_SIZE,
};

/// The shortest address with a local part, an `@` and a domain: `a@b.c`.
const EMAIL_MIN_LEN: usize = 5;
/// `google.api.FieldBehavior.REQUIRED`.
const REQUIRED: i32 = 2;

/// Limits the domain types enforce (`crate::domain`), stated in the schema
/// so clients and fuzzers see them. JSON Schema cannot say everything those
/// types check (an email's syntax, credentials in a URL, a page token's
/// origin): the service still answers INVALID_ARGUMENT for those.
fn constraints(message: &str, field: &str) -> Option<Value> {
    Some(match (message, field) {
        ("RegisterRequest" | "LoginRequest", "email") => email_schema(),
        ("RegisterRequest", "password") => password_schema(),
        ("LoginRequest", "password") => json!({"minLength": 1, "maxLength": password::MAX_LEN}),
        ("AddUrlRequest", "url") => json!({"minLength": 1, "maxLength": target_url::MAX_LEN}),
        ("DeleteUrlRequest", "id") | ("ListStatusesRequest", "url_id") => json!({"minimum": 1}),
        ("ListStatusesRequest", "page_size") => json!({"minimum": 0, "maximum": MAX_PAGE_SIZE}),
        ("AddUrlRequest" | "Url", "assertions") => json!({"maxItems": MAX_ASSERTIONS}),
        ("StatusAssertion", "codes") => json!({"minItems": 1, "maxItems": MAX_STATUS_RANGES}),
        ("Assertion", "body_contains" | "body_not_contains") | ("HeaderAssertion", "name") => {
            json!({"minLength": 1, "maxLength": MAX_TEXT_BYTES})
        }
        ("JsonAssertion", "pointer") | ("HeaderAssertion", "equals" | "contains") => {
            json!({"maxLength": MAX_TEXT_BYTES})
        }
        ("Assertion", "tls_days_left") => json!({"minimum": 1, "maximum": MAX_TLS_DAYS}),
        _ => return None,
    })
}

fn email_schema() -> Value {
    json!({"minLength": EMAIL_MIN_LEN, "maxLength": email::MAX_LEN})
}

/// Bytes, counted as characters: a character is at most 4 bytes.
fn password_schema() -> Value {
    json!({"minLength": password::MIN_LEN.div_ceil(4), "maxLength": password::MAX_LEN})
}

/// `base` with the field's constraints merged in.
fn constrained(mut base: Value, f: &FieldDescriptor) -> Value {
    if let (Some(extra), Some(obj)) = (
        constraints(f.parent_message().name(), f.name()),
        base.as_object_mut(),
    ) {
        obj.extend(extra.as_object().cloned().unwrap_or_default());
    }
    base
}

/// The document, for a server accepting periods within `bounds`.
pub fn document(bounds: PeriodBounds) -> Value {
    build(bounds).expect("the descriptor set embedded at build time is valid")
}

fn build(bounds: PeriodBounds) -> Result<Value, prost_reflect::DescriptorError> {
    let pool = DescriptorPool::decode(FILE_DESCRIPTOR_SET)?;
    let http = pool.get_extension_by_name("google.api.http");
    let behavior = pool.get_extension_by_name("google.api.field_behavior");
    let service = pool
        .get_service_by_name(SERVICE_NAME)
        .expect("MonitorService is in the descriptor set");
    let file = service.parent_file_descriptor_proto().clone();

    let mut schemas = Map::new();
    let mut paths = Map::new();
    for method in service.methods() {
        let Some(rule) = http
            .as_ref()
            .and_then(|ext| http_rule(&method.options(), ext))
        else {
            continue;
        };
        let input = method.input();
        let (path, path_params, mut parameters) = path_parameters(&rule.path, &input, &file);
        let mut op = json!({
            "operationId": method.name(),
            "summary": first_line(&comment(&file, method.path())),
            "description": comment(&file, method.path()),
            "tags": ["MonitorService"],
            "responses": {
                "200": {
                    "description": "OK",
                    "content": {"application/json": {"schema": schema_ref(&method.output(), &file, behavior.as_ref(), &mut schemas)}},
                },
                "default": error_response(),
            },
        });
        let body_field = input.get_field_by_name(&rule.body);
        if rule.body == "*" {
            let name =
                request_body_schema(&input, &path_params, &file, behavior.as_ref(), &mut schemas);
            op["requestBody"] = json!({
                "required": true,
                "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{name}")}}},
            });
        } else {
            if let Some(f) = &body_field {
                // One field is the body (AIP-134's Update: `body: "url"`);
                // the path's variables inside it override what it says.
                op["requestBody"] = json!({
                    "required": true,
                    "description": comment(&file, f.path()),
                    "content": {"application/json": {"schema": field_schema(f, &file, behavior.as_ref(), &mut schemas)}},
                });
            }
            for f in input.fields() {
                if path_params.iter().any(|p| p == f.name())
                    || body_field.as_ref().is_some_and(|b| b.name() == f.name())
                {
                    continue;
                }
                parameters.push(json!({
                    "name": f.json_name(), "in": "query", "required": false,
                    "description": comment(&file, f.path()),
                    "schema": scalar_for_parameter(&f),
                }));
            }
        }
        if !parameters.is_empty() {
            op["parameters"] = Value::Array(parameters);
        }
        op["security"] = if PUBLIC_METHODS.contains(&method.name()) {
            json!([])
        } else {
            json!([{"bearer": []}])
        };
        let entry = paths.entry(path).or_insert_with(|| json!({}));
        entry[rule.method.as_str()] = op;
    }
    add_seed_routes(&mut paths, bounds);
    schemas.insert("Error".into(), error_schema());

    Ok(json!({
        "openapi": "3.0.3",
        "info": {
            "title": "monitor",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "JSON gateway of monitor.v1.MonitorService (grpc-gateway style), generated from proto/monitor/v1/monitor.proto. Errors are google.rpc.Status as JSON: {code, message, details}.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "PASETO v4.local, from Login"},
            },
        },
    }))
}

struct HttpRule {
    method: String,
    path: String,
    body: String,
}

fn http_rule(
    options: &prost_reflect::DynamicMessage,
    ext: &ExtensionDescriptor,
) -> Option<HttpRule> {
    if !options.has_extension(ext) {
        return None;
    }
    let rule = options.get_extension(ext);
    let rule = rule.as_message()?;
    let text = |name: &str| {
        rule.get_field_by_name(name)
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    };
    ["get", "post", "put", "patch", "delete"]
        .into_iter()
        .find_map(|m| {
            let path = text(m);
            (!path.is_empty()).then(|| HttpRule {
                method: m.to_owned(),
                path,
                body: text("body"),
            })
        })
}

/// A rule's path as the document writes it, the field paths its variables
/// bind, and their parameters. A variable binding a field of a field
/// (`{url.id}`) is named by its last part (`{id}`), so that
/// `PATCH /v1/urls/{url.id}` and `GET /v1/urls/{id}` are one path, as
/// OpenAPI wants.
fn path_parameters(
    rule_path: &str,
    input: &MessageDescriptor,
    file: &FileDescriptorProto,
) -> (String, Vec<String>, Vec<Value>) {
    let bound: Vec<String> = rule_path
        .split('{')
        .skip(1)
        .filter_map(|s| s.split('}').next())
        .map(str::to_owned)
        .collect();
    let mut path = rule_path.to_owned();
    let mut parameters = Vec::new();
    for field_path in &bound {
        let name = field_path.rsplit('.').next().unwrap_or(field_path);
        path = path.replace(&format!("{{{field_path}}}"), &format!("{{{name}}}"));
        if let Some(f) = nested_field(input, field_path) {
            parameters.push(json!({
                "name": name, "in": "path", "required": true,
                "description": comment(file, f.path()),
                "schema": scalar_for_parameter(&f),
            }));
        }
    }
    (path, bound, parameters)
}

/// The field a path variable binds: `id`, or `url.id` (field `id` of field `url`).
fn nested_field(message: &MessageDescriptor, path: &str) -> Option<FieldDescriptor> {
    let (first, rest) = path.split_once('.').unwrap_or((path, ""));
    let field = message.get_field_by_name(first)?;
    if rest.is_empty() {
        return Some(field);
    }
    match field.kind() {
        Kind::Message(inner) => nested_field(&inner, rest),
        _ => None,
    }
}

/// The leading comment of the element at `path` in `file`.
fn comment(file: &FileDescriptorProto, path: &[i32]) -> String {
    file.source_code_info
        .as_ref()
        .and_then(|info| info.location.iter().find(|l| l.path == path))
        .and_then(|l| l.leading_comments.as_deref())
        .map(|c| {
            c.lines()
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(" ")
                .trim()
                .to_owned()
        })
        .unwrap_or_default()
}

fn first_line(text: &str) -> String {
    text.split(". ")
        .next()
        .unwrap_or_default()
        .trim_end_matches('.')
        .to_owned()
}

fn is_required(field: &FieldDescriptor, behavior: Option<&ExtensionDescriptor>) -> bool {
    behavior.is_some_and(|ext| {
        let options = field.options();
        options.has_extension(ext)
            && options
                .get_extension(ext)
                .as_list()
                .is_some_and(|l| l.iter().any(|v| v.as_enum_number() == Some(REQUIRED)))
    })
}

fn schema_ref(
    message: &MessageDescriptor,
    file: &FileDescriptorProto,
    behavior: Option<&ExtensionDescriptor>,
    schemas: &mut Map<String, Value>,
) -> Value {
    if let Some(wkt) = well_known(message) {
        return wkt;
    }
    let name = message.name().to_owned();
    if !schemas.contains_key(&name) {
        schemas.insert(name.clone(), json!({}));
        let schema = object_schema(message, &[], file, behavior, schemas);
        schemas.insert(name.clone(), schema);
    }
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// A request body: the input message without the fields bound in the path.
fn request_body_schema(
    message: &MessageDescriptor,
    skip: &[String],
    file: &FileDescriptorProto,
    behavior: Option<&ExtensionDescriptor>,
    schemas: &mut Map<String, Value>,
) -> String {
    let name = message.name().to_owned();
    let schema = object_schema(message, skip, file, behavior, schemas);
    schemas.insert(name.clone(), schema);
    name
}

fn object_schema(
    message: &MessageDescriptor,
    skip: &[String],
    file: &FileDescriptorProto,
    behavior: Option<&ExtensionDescriptor>,
    schemas: &mut Map<String, Value>,
) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for f in message.fields() {
        if skip.iter().any(|s| s == f.name()) {
            continue;
        }
        let mut schema = constrained(field_schema(&f, file, behavior, schemas), &f);
        let description = comment(file, f.path());
        if !description.is_empty() && !schema.as_object().is_some_and(|o| o.contains_key("$ref")) {
            schema["description"] = Value::String(description);
        }
        if is_required(&f, behavior) {
            required.push(Value::String(f.json_name().to_owned()));
        }
        properties.insert(f.json_name().to_owned(), schema);
    }
    let mut schema = json!({
        "type": "object",
        "description": comment(file, message.path()),
        "properties": properties,
        // pbjson refuses unknown fields.
        "additionalProperties": false,
    });
    if !required.is_empty() {
        schema["required"] = Value::Array(required);
    }
    schema
}

fn field_schema(
    f: &FieldDescriptor,
    file: &FileDescriptorProto,
    behavior: Option<&ExtensionDescriptor>,
    schemas: &mut Map<String, Value>,
) -> Value {
    let item = match f.kind() {
        Kind::Message(m) => schema_ref(&m, file, behavior, schemas),
        _ => scalar(f),
    };
    if f.is_list() {
        json!({"type": "array", "items": item})
    } else {
        item
    }
}

/// Canonical proto3 JSON for scalars and enums.
fn scalar(f: &FieldDescriptor) -> Value {
    match f.kind() {
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            json!({"type": "string", "format": "int64", "pattern": "^-?[0-9]{1,19}$"})
        }
        Kind::Uint64 | Kind::Fixed64 => {
            json!({"type": "string", "format": "uint64", "pattern": "^[0-9]{1,20}$"})
        }
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            json!({"type": "integer", "format": "int32"})
        }
        Kind::Uint32 | Kind::Fixed32 => json!({"type": "integer", "format": "int64", "minimum": 0}),
        Kind::Bool => json!({"type": "boolean"}),
        Kind::Double | Kind::Float => json!({"type": "number"}),
        Kind::String => json!({"type": "string"}),
        Kind::Bytes => json!({"type": "string", "format": "byte"}),
        Kind::Enum(e) => {
            json!({"type": "string", "enum": e.values().map(|v| v.name().to_owned()).collect::<Vec<_>>()})
        }
        Kind::Message(m) => well_known(&m).unwrap_or_else(|| json!({"type": "object"})),
    }
}

/// A path or query parameter: int64 ids are sent as plain numbers there.
fn scalar_for_parameter(f: &FieldDescriptor) -> Value {
    match f.kind() {
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            json!({"type": "integer", "format": "int64"})
        }
        _ => scalar(f),
    }
}

fn well_known(m: &MessageDescriptor) -> Option<Value> {
    match m.full_name() {
        "google.protobuf.Timestamp" => Some(json!({"type": "string", "format": "date-time"})),
        // Seconds with an `s` suffix, e.g. "60s" or "1.5s".
        "google.protobuf.Duration" => Some(json!({"type": "string", "example": "60s"})),
        "google.protobuf.Empty" => Some(json!({"type": "object"})),
        // Any JSON value (a JSON assertion's expected value).
        "google.protobuf.Value" => Some(json!({"nullable": true, "description": "any JSON value"})),
        // Field paths, comma-separated, e.g. "name,period".
        "google.protobuf.FieldMask" => Some(json!({"type": "string", "example": "name,period"})),
        _ => None,
    }
}

fn error_schema() -> Value {
    json!({
        "type": "object",
        "description": "A google.rpc.Status: the gRPC code, a message a person can act on, and details such as google.rpc.BadRequest field violations.",
        "properties": {
            "code": {"type": "integer", "description": "gRPC status code (3 INVALID_ARGUMENT, 5 NOT_FOUND, 16 UNAUTHENTICATED, ...)"},
            "message": {"type": "string"},
            "details": {"type": "array", "items": {"type": "object"}},
        },
        "required": ["code", "message", "details"],
    })
}

fn error_response() -> Value {
    json!({
        "description": "An error, with grpc-gateway's HTTP status for its gRPC code.",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    })
}

/// The seed's routes (see `api::seed`): field names in any case.
fn add_seed_routes(paths: &mut Map<String, Value>, bounds: PeriodBounds) {
    let string = |mut limits: Value| {
        limits["type"] = json!("string");
        limits
    };
    let credentials = json!({
        "type": "object",
        "properties": {
            "Email": string(email_schema()),
            "Password": string(password_schema()),
        },
        "required": ["Email", "Password"],
    });
    let ok = |status: &str, schema: &str| {
        json!({
            status: {"description": "OK", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}},
            "default": error_response(),
        })
    };
    let op = |id: &str, summary: &str, body: Value, responses: Value, secure: bool| {
        json!({"post": {
            "operationId": id,
            "summary": summary,
            "tags": ["seed"],
            "requestBody": {"required": true, "content": {"application/json": {"schema": body}}},
            "responses": responses,
            "security": if secure { json!([{"bearer": []}]) } else { json!([]) },
        }})
    };
    paths.insert(
        "/register".into(),
        op(
            "SeedRegister",
            "Register (the seed's route)",
            credentials.clone(),
            ok("201", "RegisterResponse"),
            false,
        ),
    );
    paths.insert(
        "/login".into(),
        op(
            "SeedLogin",
            "Log in (the seed's route)",
            credentials,
            ok("200", "LoginResponse"),
            false,
        ),
    );
    paths.insert(
        "/url".into(),
        op(
            "SeedAddUrl",
            "Add a URL (the seed's route); Period in whole minutes",
            json!({
                "type": "object",
                "properties": {
                    "URL": {"type": "string", "minLength": 1, "maxLength": target_url::MAX_LEN},
                    "Period": {
                        "type": "integer",
                        "minimum": bounds.min.as_secs().div_ceil(60).max(1),
                        "maximum": bounds.max.as_secs() / 60,
                    },
                },
                "required": ["URL"],
            }),
            ok("201", "AddUrlResponse"),
            true,
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document() -> Value {
        super::document(PeriodBounds {
            min: std::time::Duration::from_secs(60),
            max: std::time::Duration::from_secs(6000),
        })
    }

    #[test]
    fn the_seed_period_follows_the_configured_bounds() {
        let doc = super::document(PeriodBounds {
            min: std::time::Duration::from_secs(30),
            max: std::time::Duration::from_secs(3 * 3600),
        });
        let period = &doc["paths"]["/url"]["post"]["requestBody"]["content"]["application/json"]["schema"]
            ["properties"]["Period"];
        assert_eq!(
            (period["minimum"].clone(), period["maximum"].clone()),
            (json!(1), json!(180))
        );
    }

    #[test]
    fn every_annotated_rpc_and_seed_route_is_documented() {
        let doc = document();
        let paths = doc["paths"].as_object().unwrap();
        for (path, method) in [
            ("/v1/users", "post"),
            ("/v1/login", "post"),
            ("/v1/urls", "post"),
            ("/v1/urls", "get"),
            ("/v1/urls/{id}", "delete"),
            ("/v1/urls/{id}", "get"),
            ("/v1/urls/{id}", "patch"),
            ("/v1/urls/{url_id}/statuses", "get"),
            ("/register", "post"),
            ("/login", "post"),
            ("/url", "post"),
        ] {
            assert!(paths[path][method].is_object(), "{method} {path} missing");
        }
    }

    #[test]
    fn schemas_use_canonical_json_names_and_types() {
        let schemas = &document()["components"]["schemas"];
        let status = &schemas["Status"]["properties"];
        assert_eq!(status["urlId"]["type"], "string");
        assert_eq!(status["statusCode"]["type"], "integer");
        assert_eq!(status["probedAt"]["format"], "date-time");
        assert_eq!(status["errorKind"]["enum"][1], "ERROR_KIND_DNS");
        assert_eq!(schemas["AddUrlRequest"]["required"][0], "url");
        assert_eq!(
            schemas["AddUrlRequest"]["properties"]["period"]["example"],
            "60s"
        );
    }

    #[test]
    fn assertions_are_documented_with_their_limits() {
        let schemas = &document()["components"]["schemas"];
        assert_eq!(
            schemas["AddUrlRequest"]["properties"]["assertions"]["maxItems"],
            MAX_ASSERTIONS
        );
        let assertion = &schemas["Assertion"]["properties"];
        assert_eq!(assertion["bodyContains"]["maxLength"], MAX_TEXT_BYTES);
        assert_eq!(assertion["tlsDaysLeft"]["maximum"], MAX_TLS_DAYS);
        assert_eq!(
            assertion["severity"]["enum"][2],
            "ASSERTION_SEVERITY_DEGRADED"
        );
        assert_eq!(
            schemas["JsonAssertion"]["properties"]["value"]["nullable"], true,
            "any JSON value"
        );
        let status = &schemas["Status"]["properties"];
        assert_eq!(status["tlsNotAfter"]["format"], "date-time");
        assert!(status["failedAssertions"]["items"]["$ref"].is_string());
    }

    #[test]
    fn update_url_takes_a_url_body_its_id_from_the_path_and_the_mask_from_the_query() {
        let doc = document();
        let op = &doc["paths"]["/v1/urls/{id}"]["patch"];
        assert_eq!(op["operationId"], "UpdateUrl");
        assert_eq!(
            op["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/Url"
        );
        let params = op["parameters"].as_array().unwrap();
        assert_eq!(params.len(), 2, "{params:?}");
        assert_eq!(
            (&params[0]["name"], &params[0]["in"]),
            (&json!("id"), &json!("path"))
        );
        assert_eq!(params[0]["schema"]["type"], "integer");
        assert_eq!(
            (
                &params[1]["name"],
                &params[1]["in"],
                &params[1]["schema"]["type"]
            ),
            (&json!("updateMask"), &json!("query"), &json!("string"))
        );
        assert!(
            !doc["paths"]
                .as_object()
                .unwrap()
                .contains_key("/v1/urls/{url.id}")
        );
    }

    #[test]
    fn path_fields_are_parameters_not_body_and_comments_are_descriptions() {
        let op = &document()["paths"]["/v1/urls/{url_id}/statuses"]["get"];
        let params = op["parameters"].as_array().unwrap();
        assert_eq!(params[0]["name"], "url_id");
        assert_eq!(params[0]["in"], "path");
        assert!(
            params
                .iter()
                .any(|p| p["name"] == "pageSize" && p["in"] == "query")
        );
        assert!(!op["description"].as_str().unwrap().is_empty());
        assert_eq!(
            document()["paths"]["/v1/login"]["post"]["security"],
            json!([])
        );
    }
}
