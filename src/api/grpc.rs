//! The tonic adapter for `monitor.v1.MonitorService`.

use tonic::{Request, Response, Status};

use super::convert::{
    assertions_from_proto, channel_to_proto, channel_update_from_proto, delivery_to_proto,
    incident_to_proto, new_channel_from_proto, new_window_from_proto, period_from_proto,
    stats_row_to_proto, status_page_to_proto, status_page_update_from_proto, status_to_proto,
    tier_from_proto, tier_to_proto, time_from_proto, time_to_proto, url_to_proto,
    url_update_from_proto, window_to_proto,
};
use crate::{
    auth::limit::Peer,
    domain::{Email, Password, TargetUrl, UserId},
    error::Error,
    proto::monitor::v1::{self as pb, monitor_service_server::MonitorService},
    service::{DeliveryQuery, IncidentQuery, Services, StatsQuery, StatusQuery},
};

#[derive(Debug, Clone)]
pub struct MonitorApi {
    services: Services,
}

impl MonitorApi {
    pub fn new(services: Services) -> Self {
        Self { services }
    }

    /// The services behind the API (the status pages' routes use them too).
    pub fn services(&self) -> &Services {
        &self.services
    }
}

/// The client's address: from the JSON side's `Peer`, or the connection.
fn peer<T>(req: &Request<T>) -> Option<std::net::IpAddr> {
    req.extensions()
        .get::<Peer>()
        .map(|p| p.0)
        .or_else(|| req.remote_addr().map(|a| a.ip()))
}

/// The caller the auth layer authenticated.
fn caller<T>(req: &Request<T>) -> Result<UserId, Status> {
    req.extensions().get::<UserId>().copied().ok_or_else(|| {
        Error::Unauthenticated("missing authorization: send `authorization: Bearer <token>`".into())
            .into()
    })
}

#[tonic::async_trait]
impl MonitorService for MonitorApi {
    type WatchEventsStream = std::pin::Pin<
        Box<dyn futures_util::Stream<Item = Result<pb::Event, Status>> + Send + 'static>,
    >;

    async fn watch_events(
        &self,
        req: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        use futures_util::StreamExt;
        let user = caller(&req)?;
        let r = req.into_inner();
        let events = self
            .services
            .events
            .watch(user, r.url_id, &r.resume_token)
            .await?;
        Ok(Response::new(Box::pin(events.map(|e| {
            e.map(super::convert::event_to_proto).map_err(Status::from)
        }))))
    }

    async fn register(
        &self,
        req: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let peer = peer(&req);
        let pb::RegisterRequest { email, password } = req.into_inner();
        let email = Email::parse("email", &email)?;
        let password = Password::parse("password", password)?;
        let account = self
            .services
            .accounts
            .register(email, password, peer)
            .await?;
        Ok(Response::new(pb::RegisterResponse {
            id: account.id.0,
            email: account.email,
        }))
    }

    async fn login(
        &self,
        req: Request<pb::LoginRequest>,
    ) -> Result<Response<pb::LoginResponse>, Status> {
        let peer = peer(&req);
        let pb::LoginRequest { email, password } = req.into_inner();
        let email = Email::parse("email", &email)?;
        let password = Password::parse("password", password)?;
        let issued = self.services.accounts.login(email, password, peer).await?;
        Ok(Response::new(pb::LoginResponse {
            token: issued.token,
            expires_at: Some(time_to_proto(issued.expires_at)),
        }))
    }

    async fn add_url(
        &self,
        req: Request<pb::AddUrlRequest>,
    ) -> Result<Response<pb::AddUrlResponse>, Status> {
        let user = caller(&req)?;
        let pb::AddUrlRequest {
            url,
            period,
            assertions,
        } = req.into_inner();
        let url = TargetUrl::parse("url", &url)?;
        let period = period_from_proto("period", period, self.services.urls.bounds())?;
        let assertions = assertions_from_proto("", assertions)?;
        let record = self
            .services
            .urls
            .add(user, url, period, assertions)
            .await?;
        Ok(Response::new(pb::AddUrlResponse {
            url: Some(url_to_proto(record)),
        }))
    }

    async fn list_urls(
        &self,
        req: Request<pb::ListUrlsRequest>,
    ) -> Result<Response<pb::ListUrlsResponse>, Status> {
        let user = caller(&req)?;
        let urls = self.services.urls.list(user).await?;
        Ok(Response::new(pb::ListUrlsResponse {
            urls: urls.into_iter().map(url_to_proto).collect(),
        }))
    }

    async fn delete_url(
        &self,
        req: Request<pb::DeleteUrlRequest>,
    ) -> Result<Response<pb::DeleteUrlResponse>, Status> {
        let user = caller(&req)?;
        self.services.urls.delete(user, req.get_ref().id).await?;
        Ok(Response::new(pb::DeleteUrlResponse {}))
    }

    async fn list_statuses(
        &self,
        req: Request<pb::ListStatusesRequest>,
    ) -> Result<Response<pb::ListStatusesResponse>, Status> {
        let user = caller(&req)?;
        let r = req.into_inner();
        let page = self
            .services
            .statuses
            .list(
                user,
                StatusQuery {
                    url_id: r.url_id,
                    page_size: r.page_size,
                    page_token: r.page_token,
                    start_time: r
                        .start_time
                        .map(|t| time_from_proto("start_time", t))
                        .transpose()?,
                    end_time: r
                        .end_time
                        .map(|t| time_from_proto("end_time", t))
                        .transpose()?,
                },
            )
            .await?;
        Ok(Response::new(pb::ListStatusesResponse {
            statuses: page.statuses.into_iter().map(status_to_proto).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn get_url(&self, req: Request<pb::GetUrlRequest>) -> Result<Response<pb::Url>, Status> {
        let user = caller(&req)?;
        let id = req.into_inner().id;
        let url = self.services.urls.get(user, "id", id).await?;
        Ok(Response::new(url_to_proto(url)))
    }

    async fn update_url(
        &self,
        req: Request<pb::UpdateUrlRequest>,
    ) -> Result<Response<pb::Url>, Status> {
        let user = caller(&req)?;
        let (id, update) = url_update_from_proto(req.into_inner(), self.services.urls.bounds())?;
        let url = self.services.urls.update(user, id, update).await?;
        Ok(Response::new(url_to_proto(url)))
    }

    async fn list_incidents(
        &self,
        req: Request<pb::ListIncidentsRequest>,
    ) -> Result<Response<pb::ListIncidentsResponse>, Status> {
        let user = caller(&req)?;
        let r = req.into_inner();
        let page = self
            .services
            .incidents
            .list(
                user,
                IncidentQuery {
                    url_id: r.url_id,
                    page_size: r.page_size,
                    page_token: r.page_token,
                },
            )
            .await?;
        Ok(Response::new(pb::ListIncidentsResponse {
            incidents: page.incidents.into_iter().map(incident_to_proto).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn get_url_stats(
        &self,
        req: Request<pb::GetUrlStatsRequest>,
    ) -> Result<Response<pb::GetUrlStatsResponse>, Status> {
        let user = caller(&req)?;
        let r = req.into_inner();
        let stats = self
            .services
            .stats
            .get(
                user,
                StatsQuery {
                    url_id: r.url_id,
                    start: r
                        .start_time
                        .map(|t| time_from_proto("start_time", t))
                        .transpose()?,
                    end: r
                        .end_time
                        .map(|t| time_from_proto("end_time", t))
                        .transpose()?,
                    granularity: tier_from_proto(r.granularity)?,
                },
            )
            .await?;
        Ok(Response::new(pb::GetUrlStatsResponse {
            buckets: stats.buckets.iter().map(stats_row_to_proto).collect(),
            total: Some(stats_row_to_proto(&stats.total)),
            granularity: tier_to_proto(stats.tier) as i32,
        }))
    }

    async fn create_channel(
        &self,
        req: Request<pb::CreateChannelRequest>,
    ) -> Result<Response<pb::Channel>, Status> {
        let user = caller(&req)?;
        let min_remind = self.services.urls.bounds().min;
        let (new, url_field) = new_channel_from_proto(req.into_inner().channel, min_remind)?;
        let record = self.services.channels.create(user, url_field, new).await?;
        Ok(Response::new(channel_to_proto(record, true)))
    }

    async fn list_channels(
        &self,
        req: Request<pb::ListChannelsRequest>,
    ) -> Result<Response<pb::ListChannelsResponse>, Status> {
        let user = caller(&req)?;
        let channels = self.services.channels.list(user).await?;
        Ok(Response::new(pb::ListChannelsResponse {
            channels: channels
                .into_iter()
                .map(|c| channel_to_proto(c, false))
                .collect(),
        }))
    }

    async fn create_maintenance_window(
        &self,
        req: Request<pb::CreateMaintenanceWindowRequest>,
    ) -> Result<Response<pb::MaintenanceWindow>, Status> {
        let user = caller(&req)?;
        let new = new_window_from_proto(req.into_inner().window)?;
        let window = self.services.maintenance.create(user, new).await?;
        Ok(Response::new(window_to_proto(window)))
    }

    async fn list_maintenance_windows(
        &self,
        req: Request<pb::ListMaintenanceWindowsRequest>,
    ) -> Result<Response<pb::ListMaintenanceWindowsResponse>, Status> {
        let user = caller(&req)?;
        let windows = self.services.maintenance.list(user).await?;
        Ok(Response::new(pb::ListMaintenanceWindowsResponse {
            windows: windows.into_iter().map(window_to_proto).collect(),
        }))
    }

    async fn delete_maintenance_window(
        &self,
        req: Request<pb::DeleteMaintenanceWindowRequest>,
    ) -> Result<Response<pb::DeleteMaintenanceWindowResponse>, Status> {
        let user = caller(&req)?;
        self.services
            .maintenance
            .delete(user, req.get_ref().id)
            .await?;
        Ok(Response::new(pb::DeleteMaintenanceWindowResponse {}))
    }

    async fn delete_channel(
        &self,
        req: Request<pb::DeleteChannelRequest>,
    ) -> Result<Response<pb::DeleteChannelResponse>, Status> {
        let user = caller(&req)?;
        self.services
            .channels
            .delete(user, req.get_ref().id)
            .await?;
        Ok(Response::new(pb::DeleteChannelResponse {}))
    }

    async fn update_channel(
        &self,
        req: Request<pb::UpdateChannelRequest>,
    ) -> Result<Response<pb::Channel>, Status> {
        let user = caller(&req)?;
        let min_remind = self.services.urls.bounds().min;
        let (id, update, url_field) = channel_update_from_proto(req.into_inner(), min_remind)?;
        let (record, new_secret) = self
            .services
            .channels
            .update(user, id, url_field, update)
            .await?;
        Ok(Response::new(channel_to_proto(record, new_secret)))
    }

    async fn test_channel(
        &self,
        req: Request<pb::TestChannelRequest>,
    ) -> Result<Response<pb::Delivery>, Status> {
        let user = caller(&req)?;
        let delivery = self.services.channels.test(user, req.get_ref().id).await?;
        Ok(Response::new(delivery_to_proto(delivery)))
    }

    async fn list_deliveries(
        &self,
        req: Request<pb::ListDeliveriesRequest>,
    ) -> Result<Response<pb::ListDeliveriesResponse>, Status> {
        let user = caller(&req)?;
        let r = req.into_inner();
        let page = self
            .services
            .channels
            .deliveries(
                user,
                DeliveryQuery {
                    channel_id: r.channel_id,
                    page_size: r.page_size,
                    page_token: r.page_token,
                },
            )
            .await?;
        Ok(Response::new(pb::ListDeliveriesResponse {
            deliveries: page.deliveries.into_iter().map(delivery_to_proto).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn get_status_page(
        &self,
        req: Request<pb::GetStatusPageRequest>,
    ) -> Result<Response<pb::StatusPage>, Status> {
        let user = caller(&req)?;
        let page = self.services.status_pages.get(user).await?;
        Ok(Response::new(status_page_to_proto(page)))
    }

    async fn update_status_page(
        &self,
        req: Request<pb::UpdateStatusPageRequest>,
    ) -> Result<Response<pb::StatusPage>, Status> {
        let user = caller(&req)?;
        let update = status_page_update_from_proto(req.into_inner())?;
        let page = self.services.status_pages.update(user, update).await?;
        Ok(Response::new(status_page_to_proto(page)))
    }
}
