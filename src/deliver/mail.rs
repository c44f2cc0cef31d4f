//! Email notifications: the server's SMTP relay (`MONITOR_SMTP_URL`,
//! `MONITOR_SMTP_FROM`), through `lettre`.
//!
//! The relay is the operator's, not a user's, so it is not behind the SSRF
//! guard; a user only chooses the recipient. Each delivery's message has a
//! `Message-ID` made from the delivery's id, the same on every attempt, so
//! a mail client can fold a repeated send.

use std::{fmt, time::Duration};

use lettre::{
    AsyncSmtpTransport, AsyncTransport, Tokio1Executor,
    message::{Mailbox, MultiPart},
};

use super::{SendResult, render};
use crate::error::SettingsError;

/// The SMTP relay's URL: `smtp://host:port` (plain),
/// `smtp://user:password@host:587?tls=required` (STARTTLS; `opportunistic`
/// when offered), `smtps://user:password@host` (implicit TLS). Its `Debug`
/// hides the credentials.
#[derive(Clone)]
pub struct SmtpUrl(String);

impl SmtpUrl {
    /// Checked the way the transport will read it.
    pub fn parse(raw: &str) -> Result<Self, String> {
        AsyncSmtpTransport::<Tokio1Executor>::from_url(raw)
            .map(|_| Self(raw.to_owned()))
            .map_err(|e| {
                format!("{e}; expected e.g. smtp://127.0.0.1:2525 or smtps://user:pass@host")
            })
    }
}

impl fmt::Debug for SmtpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match url::Url::parse(&self.0) {
            Ok(url) => write!(
                f,
                "SmtpUrl({}://{}:{})",
                url.scheme(),
                url.host_str().unwrap_or_default(),
                url.port().map_or_else(String::new, |p| p.to_string())
            ),
            Err(_) => f.write_str("SmtpUrl(unparsed)"),
        }
    }
}

/// The sender of notification emails.
pub fn parse_from(raw: &str) -> Result<Mailbox, String> {
    raw.parse::<Mailbox>()
        .map_err(|e| format!("{e}; expected an address, e.g. monitor@example.com"))
}

/// Sends notification emails through the relay.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl fmt::Debug for Mailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mailer")
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

impl Mailer {
    pub fn new(url: &SmtpUrl, from: Mailbox, timeout: Duration) -> Result<Self, SettingsError> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&url.0)
            .map_err(|e| SettingsError::new("MONITOR_SMTP_URL", e.to_string()))?
            .timeout(Some(timeout))
            .build();
        Ok(Self { transport, from })
    }

    /// One attempt: delivered when the relay accepts the message; given up
    /// at once when it refuses it for good (5xx: a bad recipient); sent
    /// again otherwise (4xx, connection, timeout).
    pub async fn send(&self, to: &str, mail: &render::Email, delivery_id: i64) -> SendResult {
        let to = match to.parse::<Mailbox>() {
            Ok(to) => to,
            Err(e) => return SendResult::Refused(format!("recipient {to:?}: {e}")),
        };
        let domain = self.from.email.domain().to_owned();
        let message = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .message_id(Some(format!("<delivery-{delivery_id}@{domain}>")))
            .subject(mail.subject.clone())
            .multipart(MultiPart::alternative_plain_html(
                mail.text.clone(),
                mail.html.clone(),
            ));
        let message = match message {
            Ok(m) => m,
            Err(e) => return SendResult::Refused(format!("the message: {e}")),
        };
        match self.transport.send(message).await {
            Ok(_) => SendResult::Status(250, None),
            Err(e) if e.is_permanent() => {
                SendResult::Refused(format!("SMTP refused it: {}", super::error_chain(&e)))
            }
            Err(e) => SendResult::Failed(format!("SMTP: {}", super::error_chain(&e))),
        }
    }
}
