//! The `Notifications` service: the SMS gateway drains the outbox and
//! acknowledges what it sent.

use tonic::{Request, Response, Status};

use super::writer::{write_response, Writer};
use super::{commands, ApiError};
use crate::pb;
use crate::pb::notifications_server::Notifications;
use crate::reader::Reader;

const MAX_PAGE: usize = 1000;

pub struct NotificationsApi {
    writer: Writer,
    reader: Reader,
}

impl NotificationsApi {
    pub fn new(writer: Writer, reader: Reader) -> Self {
        NotificationsApi { writer, reader }
    }
}

#[tonic::async_trait]
impl Notifications for NotificationsApi {
    async fn list_outbox(
        &self,
        req: Request<pb::ListOutboxRequest>,
    ) -> Result<Response<pb::ListOutboxResponse>, Status> {
        let subject = String::new();
        let result: Result<Response<pb::ListOutboxResponse>, Status> = async {
            let req = req.into_inner();
            let limit = super::writer::page_limit(req.limit, 100, MAX_PAGE)?;
            self.writer.linearizable_outside_footprints().await?;
            let rows = self
                .reader
                .outbox(req.after_id, limit)
                .map_err(ApiError::from)?;
            Ok(Response::new(pb::ListOutboxResponse {
                notifications: rows
                    .into_iter()
                    .map(|(id, r)| pb::Notification {
                        notification_id: id,
                        to: r.to,
                        kind: r.kind,
                        text: r.text,
                        created_at_ms: r.created_at_ms,
                    })
                    .collect(),
            }))
        }
        .await;
        self.writer
            .audited("sms_gateway", "list_outbox", &subject, result)
    }

    async fn ack_notification(
        &self,
        req: Request<pb::AckNotificationRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let req = req.into_inner();
        let command = commands::ack_notification(&req)?;
        let (index, applied) = self.writer.submit(&req.request_id, command).await?;
        Ok(write_response(index, applied.replayed))
    }
}
