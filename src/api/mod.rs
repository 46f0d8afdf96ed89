//! The public gRPC API: request validation, proto <-> domain conversion and
//! the single mapping of errors to gRPC statuses.

pub mod admin;
pub mod batch;
pub mod cluster;
pub mod commands;
pub mod convert;
pub mod disputes;
pub mod error;
pub mod keyring;
pub mod linkage;
pub mod notifications;
pub mod registry;
pub mod regulator;
pub mod rules;
pub mod verify;
pub mod writer;

pub use error::ApiError;
