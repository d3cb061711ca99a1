//! Delivers phone verification codes.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use url::Url;
use wxlogin_storage::Phone;

use crate::sandbox::Simulator;

#[derive(Debug, thiserror::Error)]
#[error("the SMS webhook failed: {0}")]
pub struct SmsError(String);

/// Where codes go: the site's SMS gateway (a webhook), the sandbox's simulated phone, or,
/// with neither, the debug log.
#[derive(Clone)]
pub struct SmsSender {
    webhook: Option<(reqwest::Client, Url)>,
    sandbox: Option<Arc<Simulator>>,
}

impl SmsSender {
    pub fn new(webhook: Option<Url>, sandbox: Option<Arc<Simulator>>) -> Self {
        let webhook = webhook.map(|url| {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("a TLS backend is compiled in");
            (client, url)
        });
        Self { webhook, sandbox }
    }

    pub async fn send(&self, phone: &Phone, code: &str) -> Result<(), SmsError> {
        if let Some(simulator) = &self.sandbox {
            // Codes are secrets; the sandbox is the one place they may be logged at info.
            tracing::info!(phone = phone.as_str(), code, "sandbox: verification code");
            simulator.deliver_sms(phone, code);
        }
        match &self.webhook {
            Some((client, url)) => {
                let response = client
                    .post(url.clone())
                    .json(&json!({"phone": phone.as_str(), "code": code}))
                    .send()
                    .await
                    .map_err(|e| SmsError(e.without_url().to_string()))?;
                if !response.status().is_success() {
                    return Err(SmsError(format!("HTTP {}", response.status())));
                }
            }
            None if self.sandbox.is_none() => {
                tracing::debug!(phone = ?phone, code, "verification code (set WXLOGIN_SMS_WEBHOOK to send it)");
            }
            None => {}
        }
        Ok(())
    }
}
