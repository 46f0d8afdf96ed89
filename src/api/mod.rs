//! The public gRPC API: request validation, proto <-> domain conversion and
//! the single mapping of errors to gRPC statuses.

pub mod cluster;
pub mod convert;
pub mod error;
pub mod registry;

pub use error::ApiError;
