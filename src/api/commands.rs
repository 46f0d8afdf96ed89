//! The pure half of every write RPC: a request in, a validated command out.
//! Handlers add authorization and proposing; keeping this half free of
//! I/O lets the fuzz targets (`crate::fuzzing`) drive exactly what the
//! handlers run.

use super::keyring::Keyring;
use super::{convert, ApiError};
use crate::command::{
    Cancel, Command, Envelope, FlagHighRisk, KeyBinding, Link, NotifyCount, OpenDispute,
    RealNameMissing, Register, ResolveDispute, Restrict, Reverified, SetPolicy, SetRules,
    Unrestrict, COMMAND_VERSION,
};
use crate::domain::{window_ms, DomainError, Reason};
use crate::pb;
use crate::security::authz;

/// Longest restriction reason kept.
const MAX_REASON: usize = 200;
/// Longest operator id kept with a resolution.
const MAX_OPERATOR: usize = 64;

fn required(message: &str) -> ApiError {
    ApiError::from(DomainError::new(Reason::InvalidArgument, message))
}

/// A command about an identity with the pepper versions its keys were
/// derived under.
pub type Bound = (Command, KeyBinding);

/// The envelope a client command is proposed in: the request id validated,
/// the authenticated caller named.
pub fn envelope(request_id: &str, (command, keys): Bound) -> Result<Envelope, ApiError> {
    Ok(Envelope {
        version: COMMAND_VERSION,
        request_id: convert::request_id(request_id)?,
        command,
        by: authz::current_actor(),
        keys,
    })
}

/// Validates a registration and hashes its identity: nothing unvalidated
/// and no plaintext ID number reaches the log.
pub fn register(keyring: &Keyring, req: &pb::RegisterCardRequest) -> Result<Envelope, ApiError> {
    let r = convert::registration(req)?;
    let keys = keyring.registration(
        &r.identity,
        Some(r.identity.last6()),
        r.responsible_unit.as_ref(),
    )?;
    Ok(Envelope {
        version: COMMAND_VERSION,
        request_id: r.request_id,
        command: Command::Register(Register {
            id_key: keys.keyed.key,
            msisdn: r.msisdn.as_str().to_string(),
            carrier: r.carrier.as_str().to_string(),
            province: r.province.code(),
            kind: r.kind.code() as u8,
            channel: r.channel.code() as u8,
            strict_verification: r.strict_verification,
            last6_tag: keys.last6_tag,
            unit_key: keys.unit_key,
        }),
        by: authz::current_actor(),
        keys: keys.keyed.binding,
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
        keys: KeyBinding::default(),
    })
}

pub fn reverified(req: &pb::ReportReverificationRequest) -> Result<Command, ApiError> {
    Ok(Command::Reverified(carrier_card(req)?))
}

pub fn real_name_completed(req: &pb::ReportReverificationRequest) -> Result<Command, ApiError> {
    Ok(Command::RealNameCompleted(carrier_card(req)?))
}

/// A number and the carrier reporting on it.
fn carrier_card(req: &pb::ReportReverificationRequest) -> Result<Reverified, ApiError> {
    Ok(Reverified {
        msisdn: convert::msisdn(&req.msisdn)?.as_str().to_string(),
        carrier: convert::carrier(&req.carrier)?.as_str().to_string(),
    })
}

pub fn real_name_missing(req: &pb::ReportRealNameMissingRequest) -> Result<Command, ApiError> {
    if req.window_seconds == 0 {
        return Err(required("window_seconds must be positive"));
    }
    Ok(Command::RealNameMissing(RealNameMissing {
        msisdn: convert::msisdn(&req.msisdn)?.as_str().to_string(),
        carrier: convert::carrier(&req.carrier)?.as_str().to_string(),
        window_ms: window_ms("window_seconds", req.window_seconds)?,
    }))
}

/// The count notification's command (the handler first checks possession
/// of `verify_msisdn` against the replica).
pub fn notify_count(
    keyring: &Keyring,
    req: &pb::CountNotificationRequest,
) -> Result<Bound, ApiError> {
    let identity = convert::identity(req.identity.as_ref())?;
    let verify = convert::msisdn(&req.verify_msisdn)?;
    let keyed = keyring.identity(&identity)?;
    let command = Command::NotifyCount(NotifyCount {
        id_key: keyed.key,
        verify_msisdn: verify.as_str().to_string(),
    });
    Ok((command, keyed.binding))
}

pub fn flag_high_risk(req: &pb::FlagHighRiskRequest) -> Result<Command, ApiError> {
    Ok(Command::FlagHighRisk(FlagHighRisk {
        msisdn: convert::msisdn(&req.msisdn)?.as_str().to_string(),
        window_ms: u64::from(req.reverify_within_seconds) * 1000,
    }))
}

pub fn restrict(keyring: &Keyring, req: &pb::RestrictRequest) -> Result<Bound, ApiError> {
    let identity = convert::identity(req.identity.as_ref())?;
    let reason = convert::note("reason", &req.reason, MAX_REASON)?;
    let keyed = keyring.identity(&identity)?;
    let command = Command::Restrict(Restrict {
        id_key: keyed.key,
        reason,
        duration_ms: u64::from(req.duration_hours) * 3_600_000,
    });
    Ok((command, keyed.binding))
}

pub fn unrestrict(keyring: &Keyring, req: &pb::UnrestrictRequest) -> Result<Bound, ApiError> {
    let identity = convert::identity(req.identity.as_ref())?;
    let keyed = keyring.identity(&identity)?;
    let command = Command::Unrestrict(Unrestrict { id_key: keyed.key });
    Ok((command, keyed.binding))
}

pub fn set_policy(req: &pb::SetPolicyRequest) -> Result<Command, ApiError> {
    let p = req
        .policy
        .as_ref()
        .ok_or_else(|| required("policy is required"))?;
    let values = SetPolicy {
        own_hall_threshold: p.own_hall_threshold,
        reverify_window_ms: window_ms("reverify_window_seconds", p.reverify_window_seconds)?,
        max_per_carrier: p.max_cards_per_carrier,
        max_total: p.max_cards_total,
        max_failed_verifications: p.max_failed_verifications,
        lockout_ms: window_ms("lockout_seconds", p.lockout_seconds)?,
    };
    // Apply checks again; refused here, a bad policy never enters the log.
    crate::apply::policy_of(&values).validate()?;
    Ok(Command::SetPolicy(values))
}

pub fn set_rules(req: &pb::SetRulesRequest) -> Result<Command, ApiError> {
    // Whether the revision moves forward is apply's to say (against the
    // rules in force when the entry applies); a revision this build does
    // not know never enters the log.
    crate::domain::check_rules_change(0, req.version)?;
    Ok(Command::SetRules(SetRules {
        version: req.version,
    }))
}

pub fn open_dispute(keyring: &Keyring, req: &pb::OpenDisputeRequest) -> Result<Bound, ApiError> {
    let identity = convert::identity(req.identity.as_ref())?;
    let msisdn = convert::msisdn(&req.msisdn)?;
    let contact = if req.contact_msisdn.is_empty() {
        String::new()
    } else {
        convert::msisdn(&req.contact_msisdn)?.as_str().to_string()
    };
    let keyed = keyring.identity(&identity)?;
    let command = Command::OpenDispute(OpenDispute {
        id_key: keyed.key,
        msisdn: msisdn.as_str().to_string(),
        contact,
    });
    Ok((command, keyed.binding))
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
