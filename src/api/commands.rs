//! The pure half of every write RPC: a request in, a validated command out.
//! Handlers add authorization and proposing; keeping this half free of
//! I/O lets the fuzz targets (`crate::fuzzing`) drive exactly what the
//! handlers run.

use super::{convert, ApiError};
use crate::command::{
    Cancel, Command, Envelope, FlagHighRisk, Link, NotifyCount, OpenDispute, Register,
    ResolveDispute, Restrict, Reverified, SetPolicy, Unrestrict, COMMAND_VERSION,
};
use crate::domain::{DomainError, Msisdn, Reason};
use crate::idkey::IdHasher;
use crate::pb;
use crate::security::authz;

/// Longest restriction reason kept.
const MAX_REASON: usize = 200;
/// Longest operator id kept with a resolution.
const MAX_OPERATOR: usize = 64;

fn required(message: &str) -> ApiError {
    ApiError::from(DomainError::new(Reason::InvalidArgument, message))
}

/// The envelope a client command is proposed in: the request id validated,
/// the authenticated caller named.
pub fn envelope(request_id: &str, command: Command) -> Result<Envelope, ApiError> {
    Ok(Envelope {
        version: COMMAND_VERSION,
        request_id: convert::request_id(request_id)?,
        command,
        by: authz::current_actor(),
    })
}

/// Validates a registration and hashes its identity: nothing unvalidated
/// and no plaintext ID number reaches the log.
pub fn register(hasher: &IdHasher, req: &pb::RegisterCardRequest) -> Result<Envelope, ApiError> {
    let r = convert::registration(req)?;
    Ok(Envelope {
        version: COMMAND_VERSION,
        request_id: r.request_id,
        command: Command::Register(Register {
            id_key: hasher.id_key(&r.identity),
            msisdn: r.msisdn.as_str().to_string(),
            carrier: r.carrier.as_str().to_string(),
            province: r.province.code(),
            kind: r.kind.code() as u8,
            channel: r.channel.code() as u8,
            strict_verification: r.strict_verification,
            last6_tag: hasher.last6_tag(r.identity.last6()),
            unit_key: r.responsible_unit.as_ref().map(|u| hasher.id_key(u)),
        }),
        by: authz::current_actor(),
    })
}

/// Cancel checks the request id before the card, as it always has.
pub fn cancel(req: &pb::CancelCardRequest) -> Result<Envelope, ApiError> {
    let request_id = convert::request_id(&req.request_id)?;
    let msisdn = convert::msisdn(&req.msisdn)?;
    let carrier = convert::carrier(&req.carrier)?;
    Ok(Envelope {
        version: COMMAND_VERSION,
        request_id,
        command: Command::Cancel(Cancel {
            msisdn: msisdn.as_str().to_string(),
            carrier: carrier.as_str().to_string(),
        }),
        by: authz::current_actor(),
    })
}

pub fn reverified(req: &pb::ReportReverificationRequest) -> Result<Command, ApiError> {
    Ok(Command::Reverified(Reverified {
        msisdn: convert::msisdn(&req.msisdn)?.as_str().to_string(),
        carrier: convert::carrier(&req.carrier)?.as_str().to_string(),
    }))
}

/// The count notification's command, and the number whose possession the
/// handler checks against the replica before proposing it.
pub fn notify_count(
    hasher: &IdHasher,
    req: &pb::CountNotificationRequest,
) -> Result<(NotifyCount, Msisdn), ApiError> {
    let identity = convert::identity(req.identity.as_ref())?;
    let verify = convert::msisdn(&req.verify_msisdn)?;
    let command = NotifyCount {
        id_key: hasher.id_key(&identity),
        verify_msisdn: verify.as_str().to_string(),
    };
    Ok((command, verify))
}

pub fn flag_high_risk(req: &pb::FlagHighRiskRequest) -> Result<Command, ApiError> {
    Ok(Command::FlagHighRisk(FlagHighRisk {
        msisdn: convert::msisdn(&req.msisdn)?.as_str().to_string(),
        window_ms: u64::from(req.reverify_within_seconds) * 1000,
    }))
}

pub fn restrict(hasher: &IdHasher, req: &pb::RestrictRequest) -> Result<Command, ApiError> {
    let identity = convert::identity(req.identity.as_ref())?;
    let reason = convert::note("reason", &req.reason, MAX_REASON)?;
    Ok(Command::Restrict(Restrict {
        id_key: hasher.id_key(&identity),
        reason,
        duration_ms: u64::from(req.duration_hours) * 3_600_000,
    }))
}

pub fn unrestrict(hasher: &IdHasher, req: &pb::UnrestrictRequest) -> Result<Command, ApiError> {
    let identity = convert::identity(req.identity.as_ref())?;
    Ok(Command::Unrestrict(Unrestrict {
        id_key: hasher.id_key(&identity),
    }))
}

pub fn set_policy(req: &pb::SetPolicyRequest) -> Result<Command, ApiError> {
    let p = req
        .policy
        .as_ref()
        .ok_or_else(|| required("policy is required"))?;
    Ok(Command::SetPolicy(SetPolicy {
        own_hall_threshold: p.own_hall_threshold,
        reverify_window_ms: p.reverify_window_seconds.saturating_mul(1000),
        max_per_carrier: p.max_cards_per_carrier,
        max_total: p.max_cards_total,
        max_failed_verifications: p.max_failed_verifications,
        lockout_ms: p.lockout_seconds.saturating_mul(1000),
    }))
}

pub fn open_dispute(hasher: &IdHasher, req: &pb::OpenDisputeRequest) -> Result<Command, ApiError> {
    let identity = convert::identity(req.identity.as_ref())?;
    let msisdn = convert::msisdn(&req.msisdn)?;
    let contact = if req.contact_msisdn.is_empty() {
        String::new()
    } else {
        convert::msisdn(&req.contact_msisdn)?.as_str().to_string()
    };
    Ok(Command::OpenDispute(OpenDispute {
        id_key: hasher.id_key(&identity),
        msisdn: msisdn.as_str().to_string(),
        contact,
    }))
}

pub fn resolve_dispute(req: &pb::ResolveDisputeRequest) -> Result<Command, ApiError> {
    if req.dispute_id == 0 {
        return Err(required("dispute_id is required"));
    }
    let carrier = convert::carrier(&req.carrier)?;
    let outcome = convert::dispute_outcome(req.outcome)?;
    let operator = convert::note("operator", &req.operator, MAX_OPERATOR)?;
    Ok(Command::ResolveDispute(ResolveDispute {
        dispute_id: req.dispute_id,
        carrier: carrier.as_str().to_string(),
        outcome: outcome.code(),
        operator,
    }))
}

/// The account of a link, unlink or re-verification acknowledgement.
pub fn link(req: &pb::LinkAccountRequest) -> Result<Link, ApiError> {
    Ok(Link {
        msisdn: convert::msisdn(&req.msisdn)?.as_str().to_string(),
        platform: convert::platform(&req.platform)?.as_str().to_string(),
        account: convert::account(&req.account_id)?.as_str().to_string(),
    })
}

pub fn ack_notification(req: &pb::AckNotificationRequest) -> Result<Command, ApiError> {
    if req.notification_id == 0 {
        return Err(required("notification_id is required"));
    }
    Ok(Command::AckNotification(req.notification_id))
}
