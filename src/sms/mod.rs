//! Delivers phone verification codes: through the site's webhook, Alibaba Cloud SMS or Tencent
//! Cloud SMS (`WXLOGIN_SMS_PROVIDER`), and in the sandbox to its simulated phone.

mod aliyun;
mod tencent;
mod webhook;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::Rng;
use wxlogin_storage::Phone;

use crate::config::SmsProvider;
use crate::sandbox::Simulator;

/// Why a code was not sent. Each carries what the logs may show: the provider's error code or
/// the transport's failure, never the code, the number or a key.
#[derive(Debug, thiserror::Error)]
pub enum SmsError {
    /// The provider's own limit on texts to this number (per minute, hour or day).
    #[error("the SMS provider rate-limited the number ({0})")]
    RateLimited(String),
    /// The provider says the number cannot receive texts.
    #[error("the SMS provider refused the number as invalid ({0})")]
    InvalidNumber(String),
    /// The account has run out of credit: the operator must top it up.
    #[error("the SMS account is out of balance ({0}): top it up")]
    OutOfBalance(String),
    /// Any other refusal: a bad key or signature, an unapproved sign name or template.
    #[error("the SMS provider refused the request ({0})")]
    Refused(String),
    /// No answer we understand: the network, a timeout, an HTTP error without a body.
    #[error("the SMS provider could not be reached: {0}")]
    Unreachable(String),
}

/// A new verification code: six random digits.
pub fn new_code() -> String {
    format!("{:06}", rand::thread_rng().gen_range(0..1_000_000))
}

impl SmsError {
    fn unreachable(e: reqwest::Error) -> Self {
        SmsError::Unreachable(e.without_url().to_string())
    }
}

/// A gateway's JSON answer to `request`, sent: errors come with a 4xx and the same JSON as
/// success, so any status is read; what isn't that JSON (a proxy's page, a cut connection) is
/// no answer.
async fn gateway_answer<T: serde::de::DeserializeOwned>(
    request: reqwest::RequestBuilder,
) -> Result<T, SmsError> {
    let response = request.send().await.map_err(SmsError::unreachable)?;
    let status = response.status();
    response
        .json()
        .await
        .map_err(|_| SmsError::Unreachable(format!("HTTP {status}, no SendSms answer")))
}

/// How long one call to the provider may take: the browser waits on it.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Where codes go: the configured provider, the sandbox's simulated phone, or, with neither,
/// the debug log.
#[derive(Clone)]
pub struct SmsSender {
    provider: Option<(reqwest::Client, SmsProvider)>,
    sandbox: Option<Arc<Simulator>>,
}

impl SmsSender {
    pub fn new(provider: Option<SmsProvider>, sandbox: Option<Arc<Simulator>>) -> Self {
        let provider = provider.map(|provider| {
            let client = reqwest::Client::builder()
                .timeout(TIMEOUT)
                // A redirect would resend the phone, the code and the signature to wherever it
                // points; gateways don't redirect, so one is an error.
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("a TLS backend is compiled in");
            (client, provider)
        });
        Self { provider, sandbox }
    }

    pub async fn send(&self, phone: &Phone, code: &str) -> Result<(), SmsError> {
        match &self.provider {
            Some((client, SmsProvider::Webhook { url, secret })) => {
                webhook::send(client, url, secret.as_ref(), phone, code, unix_now()).await?
            }
            Some((client, SmsProvider::Aliyun(gateway))) => {
                aliyun::send(client, gateway, phone, code).await?
            }
            Some((client, SmsProvider::Tencent(gateway))) => {
                tencent::send(client, gateway, phone, code).await?
            }
            None if self.sandbox.is_none() => {
                tracing::debug!(phone = ?phone, code, "verification code (set WXLOGIN_SMS_PROVIDER or WXLOGIN_SMS_WEBHOOK to send it)");
            }
            None => {}
        }
        // The simulated phone shows what a real one would have received: only codes that left.
        if let Some(simulator) = &self.sandbox {
            // Codes are secrets; the sandbox is the one place they may be logged at info.
            tracing::info!(phone = phone.as_str(), code, "sandbox: verification code");
            simulator.deliver_sms(phone, code);
        }
        Ok(())
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The UTC calendar date and time of a Unix time, as both providers' signatures spell it.
fn utc(unix: u64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(unix as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}
