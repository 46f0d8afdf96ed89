//! Proto3 canonical JSON for the gateway, driven by the descriptor set the
//! build already embeds for gRPC reflection: requests accept lowerCamelCase
//! or the proto's field names, 64-bit integers as strings or numbers, enums
//! by name or number, bytes as base64; unknown fields are refused.
//! Responses use lowerCamelCase, 64-bit integers as strings, and include
//! fields at their default value (a count of 0 is still a count).

use anyhow::Context;
use prost::Message;
use prost_reflect::{
    DescriptorPool, DeserializeOptions, DynamicMessage, MessageDescriptor, MethodDescriptor,
    SerializeOptions,
};

use super::error::GatewayError;
use super::methods::{Rpc, RPCS};

const PACKAGE: &str = "oneid.v1";

/// Services the gateway serves in full; the rest of the package (Cluster,
/// Admin) is operator-only and stays on gRPC.
pub const EXPOSED_SERVICES: [&str; 5] = [
    "Registry",
    "Notifications",
    "Disputes",
    "Regulator",
    "Linkage",
];

/// One exposed RPC with its descriptors.
pub struct Bound {
    pub rpc: &'static Rpc,
    pub method: MethodDescriptor,
}

/// Every entry of [`RPCS`] with its descriptor, checked both ways against
/// the compiled protos: an RPC added to an exposed service without a
/// gateway entry is an error here, not a silently missing path.
pub fn catalog() -> anyhow::Result<Vec<Bound>> {
    let pool = DescriptorPool::decode(crate::pb::FILE_DESCRIPTOR_SET)
        .context("decoding the embedded descriptor set")?;
    let mut bound = Vec::with_capacity(RPCS.len());
    for rpc in RPCS {
        let service = pool
            .get_service_by_name(&format!("{PACKAGE}.{}", rpc.service))
            .with_context(|| format!("no service {}", rpc.service))?;
        let method = service
            .methods()
            .find(|m| m.name() == rpc.method)
            .with_context(|| format!("no method {}.{}", rpc.service, rpc.method))?;
        anyhow::ensure!(
            !method.is_client_streaming() && !method.is_server_streaming(),
            "{}.{} streams; the gateway maps unary RPCs only",
            rpc.service,
            rpc.method
        );
        bound.push(Bound { rpc, method });
    }
    for name in EXPOSED_SERVICES {
        let service = pool
            .get_service_by_name(&format!("{PACKAGE}.{name}"))
            .with_context(|| format!("no service {name}"))?;
        for m in service.methods() {
            anyhow::ensure!(
                RPCS.iter()
                    .any(|r| r.service == name && r.method == m.name()),
                "{name}.{} has no gateway entry",
                m.name()
            );
        }
    }
    Ok(bound)
}

/// A JSON request body as the protobuf encoding of `desc`; an empty body is
/// the empty message.
pub fn request_to_proto(desc: &MessageDescriptor, body: &[u8]) -> Result<Vec<u8>, GatewayError> {
    let bad = |e: serde_json::Error| GatewayError::BadJson {
        message: desc.name().to_string(),
        error: e.to_string(),
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let msg = DynamicMessage::deserialize_with_options(
        desc.clone(),
        &mut de,
        &DeserializeOptions::new().deny_unknown_fields(true),
    )
    .map_err(bad)?;
    de.end().map_err(bad)?;
    Ok(msg.encode_to_vec())
}

/// A protobuf response of type `desc` as canonical JSON.
pub fn response_to_json(desc: &MessageDescriptor, proto: &[u8]) -> anyhow::Result<Vec<u8>> {
    let msg = DynamicMessage::decode(desc.clone(), proto)
        .with_context(|| format!("decoding a {} response", desc.name()))?;
    let mut out = Vec::with_capacity(proto.len() * 2 + 16);
    let mut ser = serde_json::Serializer::new(&mut out);
    msg.serialize_with_options(
        &mut ser,
        &SerializeOptions::new().skip_default_fields(false),
    )
    .with_context(|| format!("encoding a {} response as JSON", desc.name()))?;
    out.push(b'\n');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb;

    fn input(name: &str) -> MessageDescriptor {
        let found = catalog().expect("catalog");
        let b = found
            .into_iter()
            .find(|b| b.rpc.method == name)
            .expect("method");
        b.method.input()
    }

    #[test]
    fn every_exposed_rpc_has_exactly_one_entry_and_unique_paths() {
        let found = catalog().expect("catalog");
        assert_eq!(found.len(), RPCS.len());
        let mut paths: Vec<String> = RPCS
            .iter()
            .flat_map(|r| [r.alias.to_string(), r.canonical_path()])
            .collect();
        let n = paths.len();
        paths.sort();
        paths.dedup();
        assert_eq!(paths.len(), n, "two RPCs share a path");
    }

    #[test]
    fn camel_case_and_proto_names_both_parse() {
        let desc = input("RegisterCard");
        let camel = br#"{"requestId":"r1","identity":{"docType":"PASSPORT","number":"E1"},
            "msisdn":"13800000000","kind":1,"strictVerification":true}"#;
        let snake = br#"{"request_id":"r1","identity":{"doc_type":2,"number":"E1"},
            "msisdn":"13800000000","kind":"PERSONAL","strict_verification":true}"#;
        for body in [&camel[..], &snake[..]] {
            let bytes = request_to_proto(&desc, body).expect("parses");
            let req = pb::RegisterCardRequest::decode(&bytes[..]).expect("decodes");
            assert_eq!(req.request_id, "r1");
            assert_eq!(req.identity.map(|i| i.doc_type), Some(2));
            assert_eq!(req.kind, pb::CardKind::Personal as i32);
            assert!(req.strict_verification);
        }
    }

    #[test]
    fn sixty_four_bit_integers_as_strings_or_numbers() {
        let desc = input("GetDispute");
        for body in [&br#"{"disputeId":"42"}"#[..], &br#"{"dispute_id":42}"#[..]] {
            let bytes = request_to_proto(&desc, body).expect("parses");
            assert_eq!(
                pb::GetDisputeRequest::decode(&bytes[..])
                    .map(|r| r.dispute_id)
                    .ok(),
                Some(42)
            );
        }
    }

    #[test]
    fn unknown_fields_trailing_garbage_and_wrong_types_are_refused() {
        let desc = input("CountCards");
        for body in [
            &br#"{"verifyMsisdn":"1","bogus":1}"#[..],
            &br#"{"verifyMsisdn":"1"} x"#[..],
            &br#"{"verifyMsisdn":5}"#[..],
            &br#"{"identity":{"docType":"NO_SUCH_TYPE"}}"#[..],
            &b"[1,2]"[..],
            &b"{"[..],
        ] {
            let err = request_to_proto(&desc, body).expect_err("refused");
            assert!(matches!(err, GatewayError::BadJson { .. }), "{err:?}");
        }
    }

    #[test]
    fn responses_are_camel_case_with_defaults_and_string_u64() {
        let found = catalog().expect("catalog");
        let register = found
            .iter()
            .find(|b| b.rpc.method == "RegisterCard")
            .expect("method");
        let proto = pb::RegisterCardResponse {
            applied_index: 7,
            active_at_carrier_province: 0,
            replayed: false,
        }
        .encode_to_vec();
        let json = response_to_json(&register.method.output(), &proto).expect("encodes");
        let v: serde_json::Value = serde_json::from_slice(&json).expect("json");
        assert_eq!(v["appliedIndex"], "7");
        assert_eq!(v["activeAtCarrierProvince"], 0);
        assert_eq!(v["replayed"], false);
    }
}
