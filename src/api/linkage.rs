//! The `Linkage` service (一证通查 2.0): platforms link accounts to numbers; a
//! person counts the accounts on their number with the last 6 characters of
//! their ID number; platforms work through accounts to re-verify.

use std::collections::BTreeMap;

use tonic::{Request, Response, Status};

use super::keyring::Keyring;
use super::writer::{write_response, Writer};
use super::{commands, convert, verify, ApiError};
use crate::command::{Command, Link};
use crate::domain::link::parse_last6;
use crate::domain::{DomainError, Reason};
use crate::limits::QueryLimit;
use crate::pb;
use crate::pb::linkage_server::Linkage;
use crate::reader::Reader;
use crate::security::authz;

const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

pub struct LinkageApi {
    writer: Writer,
    reader: Reader,
    keyring: Keyring,
    queries: QueryLimit,
}

impl LinkageApi {
    pub fn new(writer: Writer, reader: Reader, keyring: Keyring, queries: QueryLimit) -> Self {
        LinkageApi {
            writer,
            reader,
            keyring,
            queries,
        }
    }

    async fn write(
        &self,
        req: Request<pb::LinkAccountRequest>,
        command: fn(Link) -> Command,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        authz::own_platform(&req, &req.get_ref().platform)?;
        let req = req.into_inner();
        let link = commands::link(&req)?;
        let (index, applied) = self.writer.submit(&req.request_id, command(link)).await?;
        Ok(write_response(index, applied.replayed))
    }
}

#[tonic::async_trait]
impl Linkage for LinkageApi {
    async fn link_account(
        &self,
        req: Request<pb::LinkAccountRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        self.write(req, Command::Link).await
    }

    async fn unlink_account(
        &self,
        req: Request<pb::LinkAccountRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        self.write(req, Command::Unlink).await
    }

    async fn ack_reverify(
        &self,
        req: Request<pb::LinkAccountRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        self.write(req, Command::AckReverify).await
    }

    async fn count_linked_accounts(
        &self,
        req: Request<pb::CountLinkedAccountsRequest>,
    ) -> Result<Response<pb::CountLinkedAccountsResponse>, Status> {
        let subject = super::verify::msisdn_subject(&req.get_ref().msisdn);
        let allowed = self.queries.check(&req);
        let result: Result<Response<pb::CountLinkedAccountsResponse>, Status> = async {
            allowed?;
            let req = req.into_inner();
            let msisdn = convert::msisdn(&req.msisdn).map_err(ApiError::from)?;
            let last6 = parse_last6(&req.id_last6).map_err(ApiError::from)?;
            let tags = self.keyring.last6_tags(&last6)?;
            verify::number_barrier(&self.writer, &self.reader, msisdn.as_str()).await?;
            let holder = self
                .reader
                .held_card(msisdn.as_str())
                .map_err(ApiError::from)?;
            // Same answer for "no such number" and "wrong digits": the query must
            // not reveal whether a number is registered. Guesses against a held
            // number count toward its holder's lockout.
            let failure = "the number is not registered under an ID ending in these characters";
            match holder {
                None => {
                    return Err(ApiError::from(DomainError::new(
                        Reason::VerificationFailed,
                        failure,
                    ))
                    .into())
                }
                Some((id_key, card)) => {
                    let lockout = verify::check_lockout(&self.reader, &id_key)?;
                    verify::settle(
                        &self.keyring,
                        &self.writer,
                        verify::Subject::Stored(id_key),
                        lockout,
                        tags.contains(&card.last6_tag),
                        failure,
                    )
                    .await?;
                }
            }
            let mut by_platform: BTreeMap<String, (u32, u32)> = BTreeMap::new();
            for (platform, _, link) in self.reader.links(msisdn.as_str()).map_err(ApiError::from)? {
                let e = by_platform.entry(platform).or_default();
                e.0 += 1;
                e.1 += u32::from(link.needs_reverify);
            }
            Ok(Response::new(pb::CountLinkedAccountsResponse {
                total: by_platform.values().map(|(n, _)| n).sum(),
                by_platform: by_platform
                    .into_iter()
                    .map(|(platform, (accounts, needs_reverify))| pb::PlatformCount {
                        platform,
                        accounts,
                        needs_reverify,
                    })
                    .collect(),
            }))
        }
        .await;
        self.writer
            .audited("holder", "count_linked_accounts", &subject, result)
    }

    async fn list_reverify(
        &self,
        req: Request<pb::ListReverifyRequest>,
    ) -> Result<Response<pb::ListReverifyResponse>, Status> {
        let actor = super::verify::short(&req.get_ref().platform);
        let subject = String::new();
        let result: Result<Response<pb::ListReverifyResponse>, Status> = async {
            authz::own_platform(&req, &req.get_ref().platform)?;
            let req = req.into_inner();
            let platform = convert::platform(&req.platform).map_err(ApiError::from)?;
            let limit = super::writer::page_limit(req.limit, DEFAULT_PAGE, MAX_PAGE)?;
            let after = convert::parse_page_token(&req.page_token).map_err(ApiError::from)?;
            self.writer.linearizable_outside_footprints().await?;
            let rows = self
                .reader
                .reverify_queue(
                    platform.as_str(),
                    after.as_ref().map(|(m, a)| (m.as_str(), a.as_str())),
                    limit,
                )
                .map_err(ApiError::from)?;
            let next_page_token = match rows.last() {
                Some((m, a, _)) if rows.len() == limit => convert::page_token(m, a),
                _ => String::new(),
            };
            Ok(Response::new(pb::ListReverifyResponse {
                items: rows
                    .into_iter()
                    .map(|(msisdn, account_id, r)| pb::ReverifyItem {
                        msisdn,
                        account_id,
                        cause: r.cause,
                        marked_at_ms: r.marked_at_ms,
                    })
                    .collect(),
                next_page_token,
            }))
        }
        .await;
        self.writer
            .audited(&actor, "list_reverify", &subject, result)
    }
}
