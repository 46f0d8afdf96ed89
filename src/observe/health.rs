//! `grpc.health.v1.Health` and server reflection for the main gRPC port.

use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use crate::pb::{cluster_server, registry_server};

/// Service names whose health follows readiness: "" is the whole server, as
/// the health protocol defines; the others let a client-side balancer probe
/// the service it actually calls. Cluster follows readiness too: its
/// membership calls need a leader, and a status read from a node that is not
/// ready is exactly what an operator should not be routed to by default.
const SERVICES: [&str; 3] = [
    "",
    registry_server::SERVICE_NAME,
    cluster_server::SERVICE_NAME,
];

/// A reporter whose statuses all start NOT_SERVING: tonic-health starts the
/// whole-server status at SERVING, which would be a lie until the raft
/// watcher's first verdict.
pub async fn reporter() -> (
    HealthReporter,
    tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
) {
    let (reporter, server) = tonic_health::server::health_reporter();
    publish(&reporter, false).await;
    (reporter, server)
}

pub async fn publish(reporter: &HealthReporter, ready: bool) {
    let status = if ready {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    for name in SERVICES {
        reporter.set_service_status(name, status).await;
    }
}

/// Reflection over the public API and the health service (v1 and the older
/// v1alpha, which some grpcurl versions still ask for first). The internal
/// raft service is left out: it is not for clients.
pub fn reflection() -> anyhow::Result<(
    tonic_reflection::server::v1::ServerReflectionServer<
        impl tonic_reflection::server::v1::ServerReflection,
    >,
    tonic_reflection::server::v1alpha::ServerReflectionServer<
        impl tonic_reflection::server::v1alpha::ServerReflection,
    >,
)> {
    let builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let v1 = builder().build_v1()?;
    let v1alpha = builder().build_v1alpha()?;
    Ok((v1, v1alpha))
}
