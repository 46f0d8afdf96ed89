//! The `Disputes` service: a person disputes a card under their identity; the
//! card's carrier resolves it (confirmed, stripped, suspended, cancelled).

use tonic::{Request, Response, Status};

use super::keyring::Keyring;
use super::registry::card_status_response;
use super::writer::{unexpected, Writer};
use super::{convert, ApiError};
use crate::command::{Command, OpenDispute, Outcome, ResolveDispute};
use crate::domain::{DisputeOutcome, DomainError, Msisdn, Reason};
use crate::pb;
use crate::pb::disputes_server::Disputes;
use crate::reader::Reader;
use crate::security::authz;

/// Longest operator id kept with a resolution.
const MAX_OPERATOR: usize = 64;

pub struct DisputesApi {
    writer: Writer,
    reader: Reader,
    keyring: Keyring,
}

impl DisputesApi {
    pub fn new(writer: Writer, reader: Reader, keyring: Keyring) -> Self {
        DisputesApi {
            writer,
            reader,
            keyring,
        }
    }
}

#[tonic::async_trait]
impl Disputes for DisputesApi {
    async fn open_dispute(
        &self,
        req: Request<pb::OpenDisputeRequest>,
    ) -> Result<Response<pb::OpenDisputeResponse>, Status> {
        let req = req.into_inner();
        let identity = convert::identity(req.identity.as_ref()).map_err(ApiError::from)?;
        let msisdn = convert::msisdn(&req.msisdn).map_err(ApiError::from)?;
        let contact = if req.contact_msisdn.is_empty() {
            String::new()
        } else {
            convert::msisdn(&req.contact_msisdn)
                .map_err(ApiError::from)?
                .as_str()
                .to_string()
        };
        let (index, applied) = self
            .keyring
            .submit(&self.writer, &req.request_id, &identity, |id_key| {
                Command::OpenDispute(OpenDispute {
                    id_key,
                    msisdn: msisdn.as_str().to_string(),
                    contact: contact.clone(),
                })
            })
            .await?;
        match applied.outcome {
            Outcome::DisputeOpened { dispute_id } => Ok(Response::new(pb::OpenDisputeResponse {
                dispute_id,
                applied_index: index,
                replayed: applied.replayed,
            })),
            other => Err(unexpected("open dispute", &other).into()),
        }
    }

    async fn resolve_dispute(
        &self,
        req: Request<pb::ResolveDisputeRequest>,
    ) -> Result<Response<pb::CardStatusResponse>, Status> {
        authz::own_carrier(&req, &req.get_ref().carrier)?;
        let req = req.into_inner();
        if req.dispute_id == 0 {
            return Err(ApiError::from(DomainError::new(
                Reason::InvalidArgument,
                "dispute_id is required",
            ))
            .into());
        }
        let carrier = convert::carrier(&req.carrier).map_err(ApiError::from)?;
        let outcome = convert::dispute_outcome(req.outcome).map_err(ApiError::from)?;
        let operator =
            convert::note("operator", &req.operator, MAX_OPERATOR).map_err(ApiError::from)?;
        let command = Command::ResolveDispute(ResolveDispute {
            dispute_id: req.dispute_id,
            carrier: carrier.as_str().to_string(),
            outcome: outcome.code(),
            operator,
        });
        let (index, applied) = self.writer.submit(&req.request_id, command).await?;
        Ok(Response::new(card_status_response(
            "resolve dispute",
            index,
            applied,
        )?))
    }

    async fn get_dispute(
        &self,
        req: Request<pb::GetDisputeRequest>,
    ) -> Result<Response<pb::Dispute>, Status> {
        let subject = format!("dispute:{}", req.get_ref().dispute_id);
        let result: Result<Response<pb::Dispute>, Status> = async {
            let id = req.get_ref().dispute_id;
            self.writer.linearizable().await?;
            let Some(d) = self.reader.dispute(id).map_err(ApiError::from)? else {
                return Err(ApiError::from(DomainError::new(
                    Reason::NotFound,
                    format!("no dispute {id}"),
                ))
                .into());
            };
            // A carrier sees only disputes about its own cards.
            authz::own_carrier(&req, &d.carrier)?;
            let outcome = DisputeOutcome::from_code(d.outcome as i32);
            Ok(Response::new(pb::Dispute {
                dispute_id: id,
                masked_msisdn: Msisdn::mask(&d.msisdn).unwrap_or_default(),
                carrier: d.carrier,
                opened_at_ms: d.opened_at_ms,
                open: outcome.is_none(),
                outcome: outcome.map(|o| o.code() as i32).unwrap_or(0),
                resolved_by: d.resolved_by,
                resolved_at_ms: d.resolved_at_ms,
            }))
        }
        .await;
        self.writer
            .audited("caller", "get_dispute", &subject, result)
    }
}
