//! The `Disputes` service: a person disputes a card under their identity; the
//! card's carrier resolves it (confirmed, stripped, suspended, cancelled).

use tonic::{Request, Response, Status};

use super::keyring::Keyring;
use super::registry::card_status_response;
use super::writer::{unexpected, Writer};
use super::{commands, ApiError};
use crate::command::Outcome;
use crate::domain::{DisputeOutcome, DomainError, Msisdn, Reason};
use crate::limits::QueryLimit;
use crate::pb;
use crate::pb::disputes_server::Disputes;
use crate::reader::Reader;
use crate::security::authz;

pub struct DisputesApi {
    writer: Writer,
    reader: Reader,
    keyring: Keyring,
    queries: QueryLimit,
}

impl DisputesApi {
    pub fn new(writer: Writer, reader: Reader, keyring: Keyring, queries: QueryLimit) -> Self {
        DisputesApi {
            writer,
            reader,
            keyring,
            queries,
        }
    }
}

#[tonic::async_trait]
impl Disputes for DisputesApi {
    async fn open_dispute(
        &self,
        req: Request<pb::OpenDisputeRequest>,
    ) -> Result<Response<pb::OpenDisputeResponse>, Status> {
        // Whether a dispute opens says whether a number is held under an
        // identity, as a count does: it draws on the same allowance, or a
        // caller could probe numbers here without the count's limits.
        self.queries.check(&req)?;
        let req = req.into_inner();
        let (index, applied) = self
            .keyring
            .submit(&self.writer, &req.request_id, || {
                commands::open_dispute(&self.keyring, &req)
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
        let command = commands::resolve_dispute(&req)?;
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
            self.writer.linearizable_outside_footprints().await?;
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
