//! The `Regulator` service: high-risk cards (二次实人认证) and restrictions on
//! new cards (限制入网).

use tonic::{Request, Response, Status};

use super::keyring::Keyring;
use super::registry::card_status_response;
use super::writer::{write_response, Writer};
use super::{commands, ApiError};
use crate::domain::{DomainError, Reason};
use crate::pb;
use crate::pb::regulator_server::Regulator;
use crate::reader::Reader;

pub struct RegulatorApi {
    writer: Writer,
    reader: Reader,
    keyring: Keyring,
}

impl RegulatorApi {
    pub fn new(writer: Writer, reader: Reader, keyring: Keyring) -> Self {
        RegulatorApi {
            writer,
            reader,
            keyring,
        }
    }
}

#[tonic::async_trait]
impl Regulator for RegulatorApi {
    async fn flag_high_risk(
        &self,
        req: Request<pb::FlagHighRiskRequest>,
    ) -> Result<Response<pb::CardStatusResponse>, Status> {
        let req = req.into_inner();
        let command = commands::flag_high_risk(&req)?;
        let (index, applied) = self.writer.submit(&req.request_id, command).await?;
        Ok(Response::new(card_status_response(
            "flag high-risk",
            index,
            applied,
        )?))
    }

    async fn restrict(
        &self,
        req: Request<pb::RestrictRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let req = req.into_inner();
        let (index, applied) = self
            .keyring
            .submit(&self.writer, &req.request_id, || {
                commands::restrict(&self.keyring, &req)
            })
            .await?;
        Ok(write_response(index, applied.replayed))
    }

    async fn unrestrict(
        &self,
        req: Request<pb::UnrestrictRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let req = req.into_inner();
        let (index, applied) = self
            .keyring
            .submit(&self.writer, &req.request_id, || {
                commands::unrestrict(&self.keyring, &req)
            })
            .await?;
        Ok(write_response(index, applied.replayed))
    }

    async fn get_restriction(
        &self,
        req: Request<pb::GetRestrictionRequest>,
    ) -> Result<Response<pb::Restriction>, Status> {
        let (identity, derived, subject) =
            super::verify::keyed_subject(&self.keyring, req.get_ref().identity.as_ref());
        let result: Result<Response<pb::Restriction>, Status> = async {
            let identity = identity.map_err(ApiError::from)?;
            let derived = derived.map_or_else(|| self.keyring.derived(&identity), Ok)?;
            super::verify::identity_barrier(&self.writer, &self.reader, &derived, &[]).await?;
            let r = self
                .keyring
                .read(&identity, |at| Ok(self.reader.restriction(at)?))?;
            Ok(Response::new(match r {
                None => pb::Restriction::default(),
                Some(r) => pb::Restriction {
                    restricted: true,
                    reason: r.reason,
                    added_at_ms: r.added_at_ms,
                    expires_at_ms: r.expires_at_ms,
                },
            }))
        }
        .await;
        self.writer
            .audited("regulator", "get_restriction", &subject, result)
    }

    async fn set_policy(
        &self,
        req: Request<pb::SetPolicyRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let req = req.into_inner();
        let command = commands::set_policy(&req)?;
        let (index, applied) = self.writer.submit(&req.request_id, command).await?;
        Ok(write_response(index, applied.replayed))
    }

    async fn set_rules(
        &self,
        req: Request<pb::SetRulesRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let req = req.into_inner();
        let command = commands::set_rules(&req)?;
        super::rules::every_member_applies(self.writer.replica(), req.version).await?;
        let (index, applied) = self.writer.submit(&req.request_id, command).await?;
        Ok(write_response(index, applied.replayed))
    }

    async fn get_policy(
        &self,
        _req: Request<pb::GetPolicyRequest>,
    ) -> Result<Response<pb::Policy>, Status> {
        let subject = String::new();
        let result: Result<Response<pb::Policy>, Status> = async {
            self.writer.linearizable_outside_footprints().await?;
            let p = self.reader.policy().map_err(ApiError::from)?;
            Ok(Response::new(pb::Policy {
                own_hall_threshold: p.own_hall_threshold,
                reverify_window_seconds: p.reverify_window_ms / 1000,
                max_cards_per_carrier: p.max_per_carrier,
                max_cards_total: p.max_total,
                max_failed_verifications: p.max_failed_verifications,
                lockout_seconds: p.lockout_ms / 1000,
            }))
        }
        .await;
        self.writer
            .audited("regulator", "get_policy", &subject, result)
    }

    async fn national_statistics(
        &self,
        _req: Request<pb::StatisticsRequest>,
    ) -> Result<Response<pb::Statistics>, Status> {
        let subject = String::new();
        let result: Result<Response<pb::Statistics>, Status> = async {
            self.writer.linearizable().await?;
            // Index first: the statistics read after it include at least that much.
            let applied_index = self.reader.applied_index().map_err(ApiError::from)?;
            let s = self.reader.stats().map_err(ApiError::from)?;
            Ok(Response::new(pb::Statistics {
                total_held: s.held.values().sum(),
                held: s
                    .held
                    .into_iter()
                    .map(|((carrier, province), cards)| pb::HeldCount {
                        carrier,
                        province: format!("{province:02}"),
                        cards,
                    })
                    .collect(),
                high_risk_flagged: s.high_risk_flagged,
                reverified: s.reverified,
                high_risk_suspended: s.high_risk_suspended,
                disputes_opened: s.disputes_opened,
                disputes_resolved: s
                    .disputes_resolved
                    .into_iter()
                    .map(|(outcome, disputes)| pb::OutcomeCount {
                        outcome: i32::from(outcome),
                        disputes,
                    })
                    .collect(),
                lockouts: s.lockouts,
                applied_index,
            }))
        }
        .await;
        self.writer
            .audited("regulator", "national_statistics", &subject, result)
    }

    async fn list_audit(
        &self,
        req: Request<pb::ListAuditRequest>,
    ) -> Result<Response<pb::ListAuditResponse>, Status> {
        let subject = String::new();
        let result: Result<Response<pb::ListAuditResponse>, Status> = async {
            let req = req.into_inner();
            let limit = super::writer::page_limit(req.limit, 100, 1000)?;
            super::convert::page_token_len(&req.page_token).map_err(ApiError::from)?;
            let after = if req.page_token.is_empty() {
                None
            } else {
                let parsed = req
                    .page_token
                    .split_once('.')
                    .and_then(|(i, p)| Some((i.parse::<u64>().ok()?, p.parse::<u32>().ok()?)));
                Some(parsed.ok_or_else(|| {
                    ApiError::from(invalid_arg("page_token is not one this server returned"))
                })?)
            };
            self.writer.linearizable().await?;
            let rows = if req.queries {
                self.writer
                    .query_trail()
                    .list(after.map(|(i, _)| i).unwrap_or(0), limit)
                    .map_err(ApiError::from)?
                    .into_iter()
                    .map(|(seq, r)| (seq, 0, r))
                    .collect()
            } else {
                self.reader.audit(after, limit).map_err(ApiError::from)?
            };
            let next_page_token = match rows.last() {
                Some((i, p, _)) if rows.len() == limit => format!("{i}.{p}"),
                _ => String::new(),
            };
            Ok(Response::new(pb::ListAuditResponse {
                entries: rows
                    .into_iter()
                    .map(|(log_index, position, r)| pb::AuditEntry {
                        log_index,
                        position,
                        at_ms: r.at_ms,
                        actor: r.actor,
                        action: r.action,
                        subject: r.subject,
                        request_id: r.request_id,
                        outcome: r.outcome,
                    })
                    .collect(),
                next_page_token,
            }))
        }
        .await;
        self.writer
            .audited("regulator", "list_audit", &subject, result)
    }
}

fn invalid_arg(m: &str) -> DomainError {
    DomainError::new(Reason::InvalidArgument, m)
}
