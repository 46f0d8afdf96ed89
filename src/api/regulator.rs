//! The `Regulator` service: high-risk cards (二次实人认证) and restrictions on
//! new cards (限制入网).

use tonic::{Request, Response, Status};

use super::registry::card_status_response;
use super::writer::{write_response, Writer};
use super::{convert, ApiError};
use crate::command::{Command, FlagHighRisk, Restrict, Unrestrict};
use crate::idkey::IdHasher;
use crate::pb;
use crate::pb::regulator_server::Regulator;
use crate::reader::Reader;

const MAX_REASON: usize = 200;

pub struct RegulatorApi {
    writer: Writer,
    reader: Reader,
    hasher: IdHasher,
}

impl RegulatorApi {
    pub fn new(writer: Writer, reader: Reader, hasher: IdHasher) -> Self {
        RegulatorApi {
            writer,
            reader,
            hasher,
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
        let msisdn = convert::msisdn(&req.msisdn).map_err(ApiError::from)?;
        let command = Command::FlagHighRisk(FlagHighRisk {
            msisdn: msisdn.as_str().to_string(),
            window_ms: u64::from(req.reverify_within_seconds) * 1000,
        });
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
        let identity = convert::identity(req.identity.as_ref()).map_err(ApiError::from)?;
        let reason = convert::note("reason", &req.reason, MAX_REASON).map_err(ApiError::from)?;
        let command = Command::Restrict(Restrict {
            id_key: self.hasher.id_key(&identity),
            reason,
            duration_ms: u64::from(req.duration_hours) * 3_600_000,
        });
        let (index, applied) = self.writer.submit(&req.request_id, command).await?;
        Ok(write_response(index, applied.replayed))
    }

    async fn unrestrict(
        &self,
        req: Request<pb::UnrestrictRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let req = req.into_inner();
        let identity = convert::identity(req.identity.as_ref()).map_err(ApiError::from)?;
        let command = Command::Unrestrict(Unrestrict {
            id_key: self.hasher.id_key(&identity),
        });
        let (index, applied) = self.writer.submit(&req.request_id, command).await?;
        Ok(write_response(index, applied.replayed))
    }

    async fn get_restriction(
        &self,
        req: Request<pb::GetRestrictionRequest>,
    ) -> Result<Response<pb::Restriction>, Status> {
        let req = req.into_inner();
        let identity = convert::identity(req.identity.as_ref()).map_err(ApiError::from)?;
        self.writer.linearizable().await?;
        let r = self
            .reader
            .restriction(&self.hasher.id_key(&identity))
            .map_err(ApiError::from)?;
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
}
