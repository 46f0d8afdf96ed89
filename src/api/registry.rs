//! The `Registry` service: carriers register and cancel cards; query services
//! count an identity's cards. Writes go through raft (group committed); counts
//! pass a coalesced read barrier, then read the local replica.

use tonic::{Request, Response, Status};

use super::keyring::Keyring;
use super::writer::{unexpected, Writer};
use super::{commands, convert, verify, ApiError};
use crate::command::{self, Applied, Outcome};
use crate::domain::{check_rules_allow, RULES_REAL_NAME};
use crate::limits::QueryLimit;
use crate::pb;
use crate::pb::registry_server::Registry;
use crate::reader::Reader;
use crate::security::authz;

/// Most items per ImportCards request that `limits.max_import_batch` may
/// allow: big enough to amortize an entry and an fsync, small enough to
/// bound one request's memory (~2 MiB).
pub const MAX_IMPORT_BATCH: usize = 10_000;

/// A per-item refusal; only domain errors are refusals.
fn refused(e: ApiError) -> pb::ImportItemResult {
    let status: Status = e.into();
    pb::ImportItemResult {
        ok: false,
        reason: super::error::reason_of(&status).unwrap_or_else(|| format!("{:?}", status.code())),
        message: status.message().to_string(),
        replayed: false,
    }
}

pub struct RegistryApi {
    writer: Writer,
    reader: Reader,
    keyring: Keyring,
    queries: QueryLimit,
    max_import_batch: usize,
}

impl RegistryApi {
    pub fn new(
        writer: Writer,
        reader: Reader,
        keyring: Keyring,
        queries: QueryLimit,
        max_import_batch: usize,
    ) -> Self {
        RegistryApi {
            writer,
            reader,
            keyring,
            queries,
            max_import_batch,
        }
    }

    /// Real-name reports enter the log only after the entry that moved the
    /// rules to [`RULES_REAL_NAME`] (checked against this node's applied
    /// state: revisions only move forward, so an entry proposed after this
    /// node applied that one follows it in the log), which every member's
    /// build applies. An older build could not decode them.
    fn real_name_reports_allowed(&self) -> Result<(), ApiError> {
        let policy = self.reader.policy()?;
        check_rules_allow(&policy, RULES_REAL_NAME, "a real-name report")?;
        Ok(())
    }

    /// One pass of an import: every valid item proposed in one go.
    async fn import_once(
        &self,
        cards: &[pb::RegisterCardRequest],
    ) -> Result<Vec<pb::ImportItemResult>, ApiError> {
        let mut results = vec![pb::ImportItemResult::default(); cards.len()];
        let mut slots = Vec::with_capacity(cards.len());
        let mut commands = Vec::with_capacity(cards.len());
        let keyring = self.keyring.pinned()?;
        for (i, card) in cards.iter().enumerate() {
            match commands::register(&keyring, card)
                .and_then(|e| e.encode().map_err(|e| ApiError::Internal(e.to_string())))
            {
                Ok(bytes) => {
                    slots.push(i);
                    commands.push(bytes);
                }
                Err(e) => results[i] = refused(e),
            }
        }
        let outcomes = tokio::time::timeout(
            self.writer.timeout(),
            self.writer.replica().propose_many(commands),
        )
        .await
        .map_err(|_| {
            ApiError::Indeterminate(format!("no outcome within {:?}", self.writer.timeout()))
        })?;
        for (slot, outcome) in slots.into_iter().zip(outcomes) {
            results[slot] = match outcome.map_err(ApiError::from).and_then(|(_, bytes)| {
                command::decode::<Applied>(&bytes).map_err(|e| ApiError::Internal(e.to_string()))
            }) {
                Ok(applied) => match applied.outcome.as_error() {
                    Some(e) if e.reason == crate::domain::Reason::KeyRotated => {
                        return Err(e.into())
                    }
                    Some(e) => refused(e.into()),
                    None => pb::ImportItemResult {
                        ok: true,
                        replayed: applied.replayed,
                        ..Default::default()
                    },
                },
                // Not a refusal but a cluster condition (no leader, a
                // timeout): the whole request fails so the importer retries
                // it; request ids make the retry safe.
                Err(e) => return Err(e),
            };
        }
        Ok(results)
    }
}

#[tonic::async_trait]
impl Registry for RegistryApi {
    async fn register_card(
        &self,
        req: Request<pb::RegisterCardRequest>,
    ) -> Result<Response<pb::RegisterCardResponse>, Status> {
        authz::own_carrier(&req, &req.get_ref().carrier)?;
        let req = req.into_inner();
        let (index, applied) = self
            .keyring
            .write(&self.writer, || {
                Ok(self
                    .writer
                    .execute(commands::register(&self.keyring, &req)?))
            })
            .await?;
        match applied.outcome {
            Outcome::Registered {
                active_at_carrier_province,
            } => Ok(Response::new(pb::RegisterCardResponse {
                applied_index: index,
                active_at_carrier_province,
                replayed: applied.replayed,
            })),
            other => Err(unexpected("register", &other).into()),
        }
    }

    async fn import_cards(
        &self,
        req: Request<pb::ImportCardsRequest>,
    ) -> Result<Response<pb::ImportCardsResponse>, Status> {
        for card in &req.get_ref().cards {
            authz::own_carrier(&req, &card.carrier)?;
        }
        let cards = req.into_inner().cards;
        if cards.len() > self.max_import_batch {
            return Err(ApiError::from(crate::domain::DomainError::new(
                crate::domain::Reason::InvalidArgument,
                format!(
                    "{} cards in one import request; at most {} allowed",
                    cards.len(),
                    self.max_import_batch
                ),
            ))
            .into());
        }
        // A rotation between deriving the keys and applying them refuses the
        // affected items KEY_ROTATED; the whole batch is derived again and
        // resubmitted (its request ids replay the items that went through).
        let results = self
            .keyring
            .write(&self.writer, || Ok(self.import_once(&cards)))
            .await?;
        Ok(Response::new(pb::ImportCardsResponse { results }))
    }

    async fn cancel_card(
        &self,
        req: Request<pb::CancelCardRequest>,
    ) -> Result<Response<pb::CancelCardResponse>, Status> {
        authz::own_carrier(&req, &req.get_ref().carrier)?;
        let envelope = commands::cancel(&req.into_inner())?;
        let (index, applied) = self.writer.execute(envelope).await?;
        match applied.outcome {
            Outcome::Cancelled => Ok(Response::new(pb::CancelCardResponse {
                applied_index: index,
                replayed: applied.replayed,
            })),
            other => Err(unexpected("cancel", &other).into()),
        }
    }

    async fn count_cards(
        &self,
        req: Request<pb::CountCardsRequest>,
    ) -> Result<Response<pb::CountCardsResponse>, Status> {
        let (identity, derived, subject) =
            verify::keyed_subject(&self.keyring, req.get_ref().identity.as_ref());
        let allowed = self.queries.check(&req);
        let result: Result<Response<pb::CountCardsResponse>, Status> = async {
            allowed?;
            let req = req.into_inner();
            let identity = identity.map_err(ApiError::from)?;
            let verify = convert::msisdn(&req.verify_msisdn).map_err(ApiError::from)?;
            let holder = verify::possession(
                &self.keyring,
                &self.reader,
                &self.writer,
                &identity,
                &verify,
                derived,
            )
            .await?;
            let counts = |m: std::collections::BTreeMap<&str, u32>| -> Vec<pb::CarrierCount> {
                m.into_iter()
                    .map(|(carrier, count)| pb::CarrierCount {
                        carrier: carrier.to_string(),
                        count,
                    })
                    .collect()
            };
            Ok(Response::new(pb::CountCardsResponse {
                total: holder.total(),
                by_carrier: counts(holder.by_carrier()),
                iot_total: holder.iot.values().sum(),
                iot_by_carrier: counts(holder.iot_by_carrier()),
            }))
        }
        .await;
        self.writer
            .audited("holder", "count_cards", &subject, result)
    }

    async fn list_carrier_cards(
        &self,
        req: Request<pb::ListCarrierCardsRequest>,
    ) -> Result<Response<pb::ListCarrierCardsResponse>, Status> {
        let actor = super::verify::short(&req.get_ref().carrier);
        let (identity, derived, subject) =
            verify::keyed_subject(&self.keyring, req.get_ref().identity.as_ref());
        let result: Result<Response<pb::ListCarrierCardsResponse>, Status> = async {
            // Inside the audited block: a carrier asking about another
            // carrier's cards is recorded in the query audit trail.
            authz::own_carrier(&req, &req.get_ref().carrier)?;
            let req = req.into_inner();
            let identity = identity.map_err(ApiError::from)?;
            let carrier = convert::carrier(&req.carrier).map_err(ApiError::from)?;
            let derived = derived.map_or_else(|| self.keyring.derived(&identity), Ok)?;
            verify::identity_barrier(&self.writer, &self.reader, &derived, &[]).await?;
            let cards = self
                .keyring
                .read(&identity, |at| Ok(self.reader.cards_of(at)?))?
                .into_iter()
                .filter(|(_, c)| c.carrier == carrier.as_str())
                .map(|(msisdn, c)| pb::CarrierCard {
                    masked_msisdn: crate::domain::Msisdn::mask(&msisdn).unwrap_or_default(),
                    province: format!("{:02}", c.province),
                    kind: c.kind as i32,
                    state: Some(convert::card_state(
                        c.status,
                        c.suspend_reason,
                        c.reverify_deadline_ms,
                    )),
                    registered_at_ms: c.registered_at_ms,
                    updated_at_ms: c.updated_at_ms,
                    open_dispute_id: c.open_dispute,
                })
                .collect();
            Ok(Response::new(pb::ListCarrierCardsResponse { cards }))
        }
        .await;
        self.writer
            .audited(&actor, "list_carrier_cards", &subject, result)
    }

    async fn report_reverification(
        &self,
        req: Request<pb::ReportReverificationRequest>,
    ) -> Result<Response<pb::CardStatusResponse>, Status> {
        authz::own_carrier(&req, &req.get_ref().carrier)?;
        let req = req.into_inner();
        let command = commands::reverified(&req)?;
        let (index, applied) = self.writer.submit(&req.request_id, command).await?;
        Ok(Response::new(card_status_response(
            "reverification",
            index,
            applied,
        )?))
    }

    async fn report_real_name_missing(
        &self,
        req: Request<pb::ReportRealNameMissingRequest>,
    ) -> Result<Response<pb::CardStatusResponse>, Status> {
        authz::own_carrier(&req, &req.get_ref().carrier)?;
        let req = req.into_inner();
        let command = commands::real_name_missing(&req)?;
        self.real_name_reports_allowed()?;
        let (index, applied) = self.writer.submit(&req.request_id, command).await?;
        Ok(Response::new(card_status_response(
            "real-name missing",
            index,
            applied,
        )?))
    }

    async fn report_real_name_completed(
        &self,
        req: Request<pb::ReportReverificationRequest>,
    ) -> Result<Response<pb::CardStatusResponse>, Status> {
        authz::own_carrier(&req, &req.get_ref().carrier)?;
        let req = req.into_inner();
        let command = commands::real_name_completed(&req)?;
        self.real_name_reports_allowed()?;
        let (index, applied) = self.writer.submit(&req.request_id, command).await?;
        Ok(Response::new(card_status_response(
            "real-name completed",
            index,
            applied,
        )?))
    }

    async fn request_count_notification(
        &self,
        req: Request<pb::CountNotificationRequest>,
    ) -> Result<Response<pb::NotificationResponse>, Status> {
        self.queries.check(&req)?;
        let req = req.into_inner();
        let identity = convert::identity(req.identity.as_ref()).map_err(ApiError::from)?;
        let verify = convert::msisdn(&req.verify_msisdn).map_err(ApiError::from)?;
        // Before the possession check, which writes the lockout state: a
        // request refused as malformed must leave nothing behind.
        convert::request_id(&req.request_id).map_err(ApiError::from)?;
        // A retry of a request this node has applied gets its first answer
        // from here, whatever the possession check would say now. Nothing
        // is proposed for it: a command that skipped the check below must
        // never run (where the leader has already trimmed the id it would
        // run as new, an uncounted possession check). A retry this node has
        // not applied yet is checked as new, and replayed by apply.
        if let Some(first) = self
            .reader
            .remembered_outcome(&req.request_id)
            .map_err(ApiError::from)?
        {
            let applied_index = self.reader.applied_index().map_err(ApiError::from)?;
            return notification_response(first, applied_index, true);
        }
        // Checked here first so failures count toward the lockout (a refused
        // command leaves no writes); apply checks again against the state it
        // writes into.
        verify::possession(
            &self.keyring,
            &self.reader,
            &self.writer,
            &identity,
            &verify,
            None,
        )
        .await?;
        let (index, applied) = self
            .keyring
            .submit(&self.writer, &req.request_id, || {
                commands::notify_count(&self.keyring, &req)
            })
            .await?;
        notification_response(applied.outcome, index, applied.replayed)
    }
}

/// A count notification's answer from its outcome (a remembered refusal
/// replays as the error it was).
fn notification_response(
    outcome: Outcome,
    applied_index: u64,
    replayed: bool,
) -> Result<Response<pb::NotificationResponse>, Status> {
    if let Some(e) = outcome.as_error() {
        return Err(ApiError::from(e).into());
    }
    match outcome {
        Outcome::Notified { notification_id } => Ok(Response::new(pb::NotificationResponse {
            notification_id,
            applied_index,
            replayed,
        })),
        other => Err(unexpected("count notification", &other).into()),
    }
}

/// The response of a write that changes one card's status.
pub fn card_status_response(
    what: &str,
    index: u64,
    applied: Applied,
) -> Result<pb::CardStatusResponse, ApiError> {
    match applied.outcome {
        Outcome::CardStatus {
            status,
            suspend_reason,
            deadline_ms,
        } => Ok(pb::CardStatusResponse {
            applied_index: index,
            replayed: applied.replayed,
            state: Some(convert::card_state(status, suspend_reason, deadline_ms)),
        }),
        other => Err(unexpected(what, &other)),
    }
}
