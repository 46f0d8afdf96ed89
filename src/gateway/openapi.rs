//! The OpenAPI 3.0 document of the gateway, generated from the same
//! descriptors that drive the JSON mapping: one path per exposed RPC (both
//! its short path and `/v1/{Service}/{Method}`), one schema per message and
//! enum they reach, the proto comments as descriptions.

use std::collections::{BTreeMap, VecDeque};

use prost_reflect::prost_types::FileDescriptorProto;
use prost_reflect::{EnumDescriptor, FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{json, Map, Value};

use super::json::Bound;

const ERROR_SCHEMA: &str = "Error";

/// The whole document.
pub fn document(catalog: &[Bound]) -> Value {
    let mut paths = Map::new();
    let mut tags = BTreeMap::new();
    for b in catalog {
        let service = b.method.parent_service();
        tags.entry(b.rpc.service).or_insert_with(|| {
            let mut tag = json!({ "name": b.rpc.service });
            if let Some(text) = comments(
                service.parent_file().file_descriptor_proto(),
                service.path(),
            ) {
                tag["description"] = text.into();
            }
            tag
        });
        let canonical = b.rpc.canonical_path();
        paths.insert(b.rpc.alias.to_string(), operation(b, b.rpc.method, None));
        paths.insert(
            canonical,
            operation(
                b,
                &format!("{}_{}", b.rpc.service, b.rpc.method),
                Some(b.rpc.alias),
            ),
        );
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "oneid HTTP/JSON gateway",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The oneid.v1 gRPC API over HTTP/JSON (proto3 canonical JSON). \
                Every RPC is a POST whose body is the request message; requests accept \
                lowerCamelCase or proto field names and 64-bit integers as strings or \
                numbers. Errors carry the gRPC code name and the stable reason.",
        },
        "tags": tags.into_values().collect::<Vec<_>>(),
        "paths": paths,
        "components": { "schemas": schemas(catalog) },
    })
}

fn operation(b: &Bound, operation_id: &str, same_as: Option<&str>) -> Value {
    let method = &b.method;
    let mut description =
        comments(method.parent_file().file_descriptor_proto(), method.path()).unwrap_or_default();
    if let Some(alias) = same_as {
        description.push_str(&format!("\n\nThe same RPC as `POST {alias}`."));
    }
    let summary = format!("{}.{}", b.rpc.service, b.rpc.method);
    json!({
        "post": {
            "operationId": operation_id,
            "tags": [b.rpc.service],
            "summary": summary,
            "description": description.trim(),
            "requestBody": {
                "required": false,
                "content": { "application/json": { "schema": reference(method.input().full_name()) } },
            },
            "responses": {
                "200": {
                    "description": "The RPC's response message.",
                    "content": { "application/json": { "schema": reference(method.output().full_name()) } },
                },
                "default": {
                    "description": "The RPC's error: HTTP status from the gRPC code, reason from its ErrorInfo.",
                    "content": { "application/json": { "schema": reference(ERROR_SCHEMA) } },
                },
            },
        }
    })
}

fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// Schemas for every message and enum reachable from an exposed RPC.
fn schemas(catalog: &[Bound]) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert(
        ERROR_SCHEMA.to_string(),
        json!({
            "type": "object",
            "required": ["code", "reason", "message"],
            "properties": {
                "code": { "type": "string", "description": "gRPC code name, e.g. INVALID_ARGUMENT." },
                "reason": { "type": "string", "description": "Stable machine-readable reason, e.g. INVALID_ID." },
                "message": { "type": "string", "description": "Human-readable detail." },
            },
        }),
    );
    let mut queue: VecDeque<MessageDescriptor> = catalog
        .iter()
        .flat_map(|b| [b.method.input(), b.method.output()])
        .collect();
    while let Some(m) = queue.pop_front() {
        if out.contains_key(m.full_name()) {
            continue;
        }
        let mut properties = Map::new();
        for f in m.fields() {
            match element_kind(&f) {
                Kind::Message(sub) => queue.push_back(sub),
                Kind::Enum(e) => {
                    out.entry(e.full_name().to_string())
                        .or_insert_with(|| enum_schema(&e));
                }
                _ => {}
            }
            properties.insert(f.json_name().to_string(), field_schema(&f));
        }
        let mut schema = json!({ "type": "object", "properties": properties });
        if let Some(text) = comments(m.parent_file_descriptor_proto(), m.path()) {
            schema["description"] = text.into();
        }
        out.insert(m.full_name().to_string(), schema);
    }
    out
}

fn enum_schema(e: &EnumDescriptor) -> Value {
    let names: Vec<String> = e.values().map(|v| v.name().to_string()).collect();
    let mut schema = json!({
        "type": "string",
        "enum": names,
    });
    let mut text = comments(e.parent_file_descriptor_proto(), e.path()).unwrap_or_default();
    text.push_str("\n\nThe value's name; its number is accepted on input too.");
    schema["description"] = text.trim().into();
    schema
}

fn field_schema(f: &FieldDescriptor) -> Value {
    let element = kind_schema(&element_kind(f));
    let mut schema = if f.is_map() {
        json!({ "type": "object", "additionalProperties": element })
    } else if f.is_list() {
        json!({ "type": "array", "items": element })
    } else {
        element
    };
    let Some(text) = comments(f.parent_file().file_descriptor_proto(), f.path()) else {
        return schema;
    };
    if schema.get("$ref").is_some() {
        // OpenAPI 3.0 ignores a $ref's siblings; wrap it to keep the comment.
        schema = json!({ "allOf": [schema] });
    }
    // The field's own comment first, then what its type adds (64-bit hint).
    let description = match schema["description"].as_str() {
        Some(hint) => format!("{text} {hint}"),
        None => text,
    };
    schema["description"] = description.into();
    schema
}

/// A field's own kind, or its values' for a map.
fn element_kind(f: &FieldDescriptor) -> Kind {
    match f.kind() {
        Kind::Message(entry) if f.is_map() => entry.map_entry_value_field().kind(),
        other => other,
    }
}

fn kind_schema(kind: &Kind) -> Value {
    let int64 = |format: &str| {
        json!({
            "type": "string",
            "format": format,
            "pattern": if format == "uint64" { "^[0-9]+$" } else { "^-?[0-9]+$" },
            "description": "A 64-bit integer as a decimal string (a JSON number is accepted on input).",
        })
    };
    match kind {
        Kind::Double | Kind::Float => json!({ "type": "number" }),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            json!({ "type": "integer", "format": "int32" })
        }
        Kind::Uint32 | Kind::Fixed32 => {
            json!({ "type": "integer", "format": "int64", "minimum": 0, "maximum": u32::MAX })
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => int64("int64"),
        Kind::Uint64 | Kind::Fixed64 => int64("uint64"),
        Kind::Bool => json!({ "type": "boolean" }),
        Kind::String => json!({ "type": "string" }),
        Kind::Bytes => json!({ "type": "string", "format": "byte" }),
        Kind::Message(m) => reference(m.full_name()),
        Kind::Enum(e) => reference(e.full_name()),
    }
}

/// The leading comment protoc kept for the element at `path`, tidied.
fn comments(file: &FileDescriptorProto, path: &[i32]) -> Option<String> {
    let text = file
        .source_code_info
        .as_ref()?
        .location
        .iter()
        .find(|l| l.path == path)?
        .leading_comments
        .as_deref()?;
    let text = text
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ")
        .trim()
        .to_string();
    (!text.is_empty()).then_some(text)
}

/// The document as the gateway serves it and `oneid openapi` prints it.
pub fn render(catalog: &[Bound]) -> serde_json::Result<String> {
    let mut text = serde_json::to_string_pretty(&document(catalog))?;
    text.push('\n');
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rpc_has_both_paths_and_every_ref_resolves() {
        let doc: Value = serde_json::from_str(
            &render(&super::super::json::catalog().expect("catalog")).expect("renders"),
        )
        .expect("json");
        for rpc in super::super::methods::RPCS {
            for path in [rpc.alias.to_string(), rpc.canonical_path()] {
                assert!(doc["paths"][&path]["post"].is_object(), "{path} missing");
            }
        }
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        let text = doc.to_string();
        for piece in text.split("\"#/components/schemas/").skip(1) {
            let name = piece.split('"').next().unwrap_or_default();
            assert!(schemas.contains_key(name), "dangling $ref {name}");
        }
        let register = &schemas["oneid.v1.RegisterCardRequest"];
        assert_eq!(register["properties"]["requestId"]["type"], "string");
        assert!(register["properties"]["identity"]
            .to_string()
            .contains("oneid.v1.Identity"));
        assert_eq!(schemas["oneid.v1.DocType"]["enum"][1], "RESIDENT_ID");
        assert_eq!(
            schemas["oneid.v1.RegisterCardResponse"]["properties"]["appliedIndex"]["format"],
            "uint64"
        );
        assert!(
            doc["paths"]["/v1/cards:count"]["post"]["description"]
                .as_str()
                .is_some_and(|d| d.contains("Linearizable")),
            "proto comments become descriptions"
        );
        assert!(
            !text.contains("oneid.v1.StatusRequest"),
            "Cluster stays gRPC-only"
        );
    }
}
