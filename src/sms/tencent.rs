//! Tencent Cloud SMS, `SendSms` (API 2021-01-11), signed by TC3-HMAC-SHA256: a canonical request
//! (method, path, query, the `content-type` and `host` headers, the body's SHA-256), a string to
//! sign over its hash, and a key derived from the secret through the date and the service.

use hmac::{Hmac, Mac};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use wxlogin_storage::Phone;

use super::{gateway_answer, unix_now, utc, SmsError};
use crate::config::SmsGateway;

const SERVICE: &str = "sms";
const CONTENT: &str = "application/json; charset=utf-8";

pub async fn send(
    client: &reqwest::Client,
    gateway: &SmsGateway,
    phone: &Phone,
    code: &str,
) -> Result<(), SmsError> {
    let body = json!({
        "PhoneNumberSet": [format!("+86{}", phone.as_str())],
        "SmsSdkAppId": gateway.sdk_app_id.as_deref().unwrap_or_default(),
        "SignName": gateway.sign_name,
        "TemplateId": gateway.template,
        "TemplateParamSet": [code],
    })
    .to_string();
    let now = unix_now();
    let request = Request {
        secret_id: &gateway.access_key_id,
        secret_key: gateway.access_key_secret.expose(),
        service: SERVICE,
        host: &host(&gateway.endpoint),
        timestamp: now,
        payload: &body,
    };
    let sending = client
        .post(gateway.endpoint.clone())
        .header(CONTENT_TYPE, CONTENT)
        .header(AUTHORIZATION, request.authorization())
        .header("X-TC-Action", "SendSms")
        .header("X-TC-Version", "2021-01-11")
        .header("X-TC-Timestamp", now.to_string())
        .header("X-TC-Region", &gateway.region)
        .body(body);
    let answer: Answer = gateway_answer(sending).await?;
    let response = answer.response;
    // A refused request (a bad signature, say) has `Error`; a sent one a status per number.
    let code = match (response.error, response.send_status_set.into_iter().next()) {
        (Some(error), _) => error.code,
        (None, Some(status)) => status.code,
        (None, None) => return Err(SmsError::Unreachable("an empty SendSms answer".into())),
    };
    outcome(code)
}

/// The `Host` the request carries, which the signature covers: with a port only when it is
/// not the scheme's default (as on a test's loopback gateway).
fn host(endpoint: &url::Url) -> String {
    let host = endpoint.host_str().unwrap_or_default();
    match endpoint.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

/// What a POST to API 3.0's `/` is signed over.
struct Request<'a> {
    secret_id: &'a str,
    secret_key: &'a str,
    service: &'a str,
    host: &'a str,
    timestamp: u64,
    payload: &'a str,
}

impl Request<'_> {
    fn canonical_request(&self) -> String {
        format!(
            "POST\n/\n\ncontent-type:{CONTENT}\nhost:{}\n\ncontent-type;host\n{}",
            self.host,
            sha256_hex(self.payload)
        )
    }

    /// `<date>/<service>/tc3_request`, the date in UTC (not the local date: at 00:44 in Beijing
    /// the UTC date is still the day before).
    fn credential_scope(&self) -> String {
        let t = utc(self.timestamp);
        format!(
            "{:04}-{:02}-{:02}/{}/tc3_request",
            t.year(),
            u8::from(t.month()),
            t.day(),
            self.service
        )
    }

    fn string_to_sign(&self) -> String {
        format!(
            "TC3-HMAC-SHA256\n{}\n{}\n{}",
            self.timestamp,
            self.credential_scope(),
            sha256_hex(&self.canonical_request())
        )
    }

    fn signature(&self) -> String {
        let scope = self.credential_scope();
        let date = &scope[..10];
        let secret_date = hmac_sha256(format!("TC3{}", self.secret_key).as_bytes(), date);
        let secret_service = hmac_sha256(&secret_date, self.service);
        let secret_signing = hmac_sha256(&secret_service, "tc3_request");
        hex::encode(hmac_sha256(&secret_signing, &self.string_to_sign()))
    }

    fn authorization(&self) -> String {
        format!(
            "TC3-HMAC-SHA256 Credential={}/{}, SignedHeaders=content-type;host, Signature={}",
            self.secret_id,
            self.credential_scope(),
            self.signature()
        )
    }
}

fn sha256_hex(data: &str) -> String {
    hex::encode(Sha256::digest(data.as_bytes()))
}

fn hmac_sha256(key: &[u8], message: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(message.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

#[derive(Deserialize)]
struct Answer {
    #[serde(rename = "Response")]
    response: AnswerBody,
}

#[derive(Deserialize)]
struct AnswerBody {
    #[serde(rename = "Error")]
    error: Option<Coded>,
    #[serde(rename = "SendStatusSet", default)]
    send_status_set: Vec<Coded>,
}

#[derive(Deserialize)]
struct Coded {
    #[serde(rename = "Code")]
    code: String,
}

/// `Ok`, or the provider's error code sorted by what the browser should hear.
fn outcome(code: String) -> Result<(), SmsError> {
    match code.as_str() {
        "Ok" => Ok(()),
        // The per-number limits (30 s, hour, day, same content) and the app's own frequency cap.
        c if c.starts_with("LimitExceeded.") => Err(SmsError::RateLimited(code)),
        "InvalidParameterValue.IncorrectPhoneNumber"
        | "FailedOperation.PhoneNumberInBlacklist"
        | "UnsupportedOperation.UnsupportedRegion" => Err(SmsError::InvalidNumber(code)),
        "FailedOperation.InsufficientBalanceInSmsPackage" => Err(SmsError::OutOfBalance(code)),
        _ => Err(SmsError::Refused(code)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of Tencent Cloud's "Signature v3" page (TC3-HMAC-SHA256, e.g.
    /// https://www.tencentcloud.com/document/product/382/40467 for SMS, the same text as
    /// https://cloud.tencent.com/document/api/213/30654): CVM `DescribeInstances` at
    /// 1551113065, SecretKey `Gu5t9xGARNpq86cd98joQYCN3EXAMPLE`, and each intermediate value.
    #[test]
    fn the_signature_reproduces_tencents_worked_example() {
        let request = Request {
            secret_id: "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE",
            secret_key: "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE",
            service: "cvm",
            host: "cvm.tencentcloudapi.com",
            timestamp: 1_551_113_065,
            payload: r#"{"Limit": 1, "Filters": [{"Values": ["\u672a\u547d\u540d"], "Name": "instance-name"}]}"#,
        };
        assert_eq!(
            request.canonical_request(),
            "POST\n/\n\ncontent-type:application/json; charset=utf-8\nhost:cvm.tencentcloudapi.com\n\ncontent-type;host\n35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
        );
        assert_eq!(
            request.string_to_sign(),
            "TC3-HMAC-SHA256\n1551113065\n2019-02-25/cvm/tc3_request\n5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031"
        );
        assert_eq!(
            request.authorization(),
            "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2019-02-25/cvm/tc3_request, SignedHeaders=content-type;host, Signature=72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
        );
    }

    #[test]
    fn the_host_has_a_port_only_when_it_is_not_the_default() {
        let url = |s: &str| url::Url::parse(s).unwrap();
        assert_eq!(
            host(&url("https://sms.tencentcloudapi.com/")),
            "sms.tencentcloudapi.com"
        );
        assert_eq!(host(&url("http://127.0.0.1:4321/")), "127.0.0.1:4321");
    }

    #[test]
    fn answers_sort_into_what_the_browser_hears() {
        assert!(outcome("Ok".into()).is_ok());
        let limited = outcome("LimitExceeded.PhoneNumberDailyLimit".into());
        assert!(matches!(limited, Err(SmsError::RateLimited(_))));
        let invalid = outcome("InvalidParameterValue.IncorrectPhoneNumber".into());
        assert!(matches!(invalid, Err(SmsError::InvalidNumber(_))));
        let broke = outcome("FailedOperation.InsufficientBalanceInSmsPackage".into());
        assert!(matches!(broke, Err(SmsError::OutOfBalance(_))));
        let auth = outcome("AuthFailure.SignatureFailure".into());
        assert!(matches!(auth, Err(SmsError::Refused(_))));
    }
}
