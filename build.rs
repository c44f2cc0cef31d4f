//! Generates, from `proto/` and without protoc: the gRPC server and client
//! (tonic-prost-build), canonical proto3 JSON for every message (pbjson), and
//! the JSON gateway's axum routes from the `google.api.http` annotations
//! (tonic-rest-build).
//!
//! It also lists the methods the proto marks `(monitor.v1.public)` (callable
//! without a token), and the unary methods the proto marks with `idempotency_level`:
//! the ones a client may send again (`monitor::client`).
//!
//! protox compiles the protos in-process. The descriptor set is written with
//! protox's own encoder: re-encoding through prost-types would drop the
//! `google.api.http` options that the gateway, the OpenAPI document and
//! grpcurl rely on.
//!
//! tonic-rest-build handles the HTTP rules whose path variables are fields
//! of the request and whose body is the whole request (or none). A rule
//! binding a field of a field (`{url.id}`), a body of one field
//! (`body: "url"`, AIP-134's Update) or a custom verb (`{id}:test`,
//! AIP-136) is left out of the descriptor set it
//! reads, and that route is written by hand in `src/api/` (the served
//! descriptor set, reflection and OpenAPI keep the rule as written).

use std::{env, fs, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/monitor/v1/monitor.proto"];
    println!("cargo:rerun-if-changed=proto");

    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(protos)?;

    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let descriptor = compiler.encode_file_descriptor_set();
    fs::write(out_dir.join("monitor_descriptor.bin"), &descriptor)?;

    // Well-known types come from pbjson-types, which carry their canonical
    // JSON forms ("60s", "url,period"), except Timestamp: pbjson-types writes
    // `+00:00` where proto3 JSON wants `Z` (src/proto/timestamp.rs).
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_well_known_types(true)
        .extern_path(".google.protobuf.Timestamp", "crate::proto::Timestamp")
        .extern_path(".google.protobuf", "::pbjson_types")
        .compile_fds(compiler.file_descriptor_set())?;

    pbjson_build::Builder::new()
        .register_descriptors(&descriptor)?
        .build(&[".monitor.v1"])?;

    fs::write(
        out_dir.join("monitor_idempotent_methods.rs"),
        idempotent_methods(&compiler.file_descriptor_set()),
    )?;

    let public = public_methods(&compiler.descriptor_pool());
    fs::write(
        out_dir.join("monitor_public_methods.rs"),
        format!(
            "/// Methods the proto marks `(monitor.v1.public)`: callable without a token.\n\
             pub const PUBLIC_METHODS: &[&str] = &{public:?};\n"
        ),
    )?;

    let rest = tonic_rest_build::RestCodegenConfig::new()
        .package("monitor.v1", "monitor::v1")
        .proto_root("crate::proto")
        .runtime_crate("crate::api::gateway")
        .extension_type("crate::api::Caller")
        .public_methods(&public.iter().map(String::as_str).collect::<Vec<_>>());
    let generated = for_rest_generator(&compiler.descriptor_pool(), &descriptor)?;
    fs::write(
        out_dir.join("monitor_rest_routes.rs"),
        tonic_rest_build::generate(&generated, &rest)?,
    )?;
    Ok(())
}

/// `pub const IDEMPOTENT_METHODS: &[&str]`: the gRPC paths of the unary
/// methods marked `IDEMPOTENT` or `NO_SIDE_EFFECTS` in the protos.
fn idempotent_methods(set: &prost_types::FileDescriptorSet) -> String {
    use prost_types::method_options::IdempotencyLevel;
    let mut paths = Vec::new();
    for file in &set.file {
        for service in &file.service {
            for method in &service.method {
                let level = method
                    .options
                    .as_ref()
                    .map_or(IdempotencyLevel::IdempotencyUnknown, |o| {
                        o.idempotency_level()
                    });
                let streaming = method.client_streaming() || method.server_streaming();
                if level != IdempotencyLevel::IdempotencyUnknown && !streaming {
                    paths.push(format!(
                        "    \"/{}.{}/{}\",\n",
                        file.package(),
                        service.name(),
                        method.name()
                    ));
                }
            }
        }
    }
    format!(
        "/// gRPC paths of the unary methods marked `idempotency_level` in the protos.\n\
         pub const IDEMPOTENT_METHODS: &[&str] = &[\n{}];\n",
        paths.concat()
    )
}

/// The names of the methods marked `(monitor.v1.public) = true`.
fn public_methods(pool: &prost_reflect::DescriptorPool) -> Vec<String> {
    let public = pool
        .get_extension_by_name("monitor.v1.public")
        .expect("proto/monitor/v1/monitor.proto declares the `public` method option");
    pool.services()
        .flat_map(|service| service.methods().collect::<Vec<_>>())
        .filter(|method| {
            let options = method.options();
            options.has_extension(&public) && options.get_extension(&public).as_bool() == Some(true)
        })
        .map(|method| method.name().to_owned())
        .collect()
}

/// `descriptor` without the `google.api.http` rules tonic-rest-build cannot
/// express: a path variable naming a field of a field, or a body naming one
/// field. Decoded and encoded as a `DynamicMessage`, so the options'
/// extensions that stay are kept (prost-types would drop them).
fn for_rest_generator(
    pool: &prost_reflect::DescriptorPool,
    descriptor: &[u8],
) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    use prost_reflect::{DynamicMessage, Value};
    let set_type = pool
        .get_message_by_name("google.protobuf.FileDescriptorSet")
        .ok_or("google/protobuf/descriptor.proto is not among the imports")?;
    let http = pool
        .get_extension_by_name("google.api.http")
        .ok_or("google/api/annotations.proto is not among the imports")?;
    let mut set = DynamicMessage::decode(set_type, descriptor)?;
    for file in messages(&mut set, "file") {
        for service in messages(file, "service") {
            for method in messages(service, "method") {
                let Some(options) = method
                    .get_field_by_name_mut("options")
                    .and_then(Value::as_message_mut)
                else {
                    continue;
                };
                if !options.has_extension(&http) {
                    continue;
                }
                let rule = options.get_extension(&http).as_message().cloned();
                let text = |name: &str| {
                    rule.as_ref()
                        .and_then(|r| r.get_field_by_name(name))
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default()
                };
                let body = text("body");
                let nested_variable =
                    ["get", "put", "post", "delete", "patch"]
                        .iter()
                        .any(|verb| {
                            text(verb)
                                .split('{')
                                .skip(1)
                                .any(|v| v.split('}').next().is_some_and(|v| v.contains('.')))
                        });
                // A custom verb (`/v1/channels/{id}:test`): axum's router
                // cannot match a parameter followed by more in one segment.
                let custom_verb = ["get", "put", "post", "delete", "patch"]
                    .iter()
                    .any(|verb| text(verb).contains("}:"));
                if nested_variable || custom_verb || !(body.is_empty() || body == "*") {
                    options.clear_extension(&http);
                }
            }
        }
    }
    Ok(prost::Message::encode_to_vec(&set))
}

/// The messages of a repeated message field.
fn messages<'a>(
    message: &'a mut prost_reflect::DynamicMessage,
    field: &str,
) -> Vec<&'a mut prost_reflect::DynamicMessage> {
    match message.get_field_by_name_mut(field) {
        Some(prost_reflect::Value::List(items)) => items
            .iter_mut()
            .filter_map(prost_reflect::Value::as_message_mut)
            .collect(),
        _ => Vec::new(),
    }
}
