//! Alibaba Cloud SMS, dysmsapi `SendSms` (version 2017-05-25), signed by the RPC ("POP")
//! signature v1: HMAC-SHA1, keyed by the AccessKey secret and `&`, over the method and the
//! sorted, percent-encoded query. This is the signature of the SMS service's own documentation,
//! whose worked example is a `SendSms` call (the unit test below reproduces it).

use std::collections::BTreeMap;

use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::Deserialize;
use serde_json::json;
use sha1::Sha1;
use wxlogin_storage::Phone;

use super::{gateway_answer, unix_now, utc, SmsError};
use crate::config::SmsGateway;

pub async fn send(
    client: &reqwest::Client,
    gateway: &SmsGateway,
    phone: &Phone,
    code: &str,
) -> Result<(), SmsError> {
    let mut nonce = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut nonce);
    let mut params = request_params(gateway, phone, code, &hex::encode(nonce), unix_now());
    let signature = sign(gateway.access_key_secret.expose(), &params);
    params.insert("Signature", signature);
    let mut url = gateway.endpoint.clone();
    url.set_query(Some(&canonical_query(&params)));
    let answer: Answer = gateway_answer(client.get(url)).await?;
    outcome(answer.code)
}

/// The parameters of one `SendSms`, before the signature. The template's one variable is
/// `${code}`.
fn request_params(
    gateway: &SmsGateway,
    phone: &Phone,
    code: &str,
    nonce: &str,
    now: u64,
) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("AccessKeyId", gateway.access_key_id.clone()),
        ("Action", "SendSms".into()),
        ("Format", "JSON".into()),
        ("PhoneNumbers", phone.as_str().into()),
        ("RegionId", gateway.region.clone()),
        ("SignName", gateway.sign_name.clone()),
        ("SignatureMethod", "HMAC-SHA1".into()),
        ("SignatureNonce", nonce.into()),
        ("SignatureVersion", "1.0".into()),
        ("TemplateCode", gateway.template.clone()),
        ("TemplateParam", json!({"code": code}).to_string()),
        ("Timestamp", timestamp(now)),
        ("Version", "2017-05-25".into()),
    ])
}

/// ISO 8601 in UTC, to the second: `2017-07-12T02:42:19Z`.
fn timestamp(unix: u64) -> String {
    let t = utc(unix);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// `Base64(HMAC-SHA1(secret + "&", "GET&%2F&" + encode(canonical query)))`.
fn sign(secret: &str, params: &BTreeMap<&str, String>) -> String {
    let string_to_sign = format!("GET&%2F&{}", percent_encode(&canonical_query(params)));
    let mut mac =
        Hmac::<Sha1>::new_from_slice(format!("{secret}&").as_bytes()).expect("HMAC takes any key");
    mac.update(string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// `name=value` pairs, each side percent-encoded, in the names' byte order, joined by `&`.
fn canonical_query(params: &BTreeMap<&str, String>) -> String {
    params
        .iter()
        .map(|(name, value)| format!("{}={}", percent_encode(name), percent_encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// RFC 3986 encoding as Alibaba specifies it: every UTF-8 byte but `A-Z a-z 0-9 - _ . ~` becomes
/// `%XY` (so a space is `%20`, never `+`).
fn percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[derive(Deserialize)]
struct Answer {
    #[serde(rename = "Code")]
    code: String,
}

/// `OK`, or the provider's error code sorted by what the browser should hear.
fn outcome(code: String) -> Result<(), SmsError> {
    match code.as_str() {
        "OK" => Ok(()),
        // BUSINESS_LIMIT_CONTROL: the per-number minute, hour and day limits; DAY_LIMIT_CONTROL:
        // the account's daily cap.
        "isv.BUSINESS_LIMIT_CONTROL" | "isv.DAY_LIMIT_CONTROL" => Err(SmsError::RateLimited(code)),
        "isv.MOBILE_NUMBER_ILLEGAL" | "isv.MOBILE_COUNT_OVER_LIMIT" => {
            Err(SmsError::InvalidNumber(code))
        }
        "isv.AMOUNT_NOT_ENOUGH" | "isv.OUT_OF_SERVICE" => Err(SmsError::OutOfBalance(code)),
        _ => Err(SmsError::Refused(code)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of Alibaba Cloud SMS's "HTTP protocol and signature" page (短信服务
    /// HTTP 协议及签名, https://help.aliyun.com/document_detail/101343.html): AccessKeyId
    /// `testId`, secret `testSecret`, a `SendSms` with these parameters signs to
    /// `zJDF+Lrzhj/ThnlvIToysFRq6t4=`, and the page gives the request URL in full.
    #[test]
    fn the_signature_reproduces_alibabas_worked_example() {
        let params = BTreeMap::from([
            ("AccessKeyId", "testId".to_owned()),
            ("Action", "SendSms".into()),
            ("Format", "XML".into()),
            ("OutId", "123".into()),
            ("PhoneNumbers", "15300000001".into()),
            ("RegionId", "cn-hangzhou".into()),
            ("SignName", "阿里云短信测试专用".into()),
            ("SignatureMethod", "HMAC-SHA1".into()),
            (
                "SignatureNonce",
                "45e25e9b-0a6f-4070-8c85-2956eda1b466".into(),
            ),
            ("SignatureVersion", "1.0".into()),
            ("TemplateCode", "SMS_71390007".into()),
            ("TemplateParam", r#"{"customer":"test"}"#.into()),
            ("Timestamp", "2017-07-12T02:42:19Z".into()),
            ("Version", "2017-05-25".into()),
        ]);
        let signature = sign("testSecret", &params);
        assert_eq!(signature, "zJDF+Lrzhj/ThnlvIToysFRq6t4=");
        assert_eq!(
            format!(
                "http://dysmsapi.aliyuncs.com/?Signature={}&{}",
                percent_encode(&signature),
                canonical_query(&params)
            ),
            "http://dysmsapi.aliyuncs.com/?Signature=zJDF%2BLrzhj%2FThnlvIToysFRq6t4%3D&AccessKeyId=testId&Action=SendSms&Format=XML&OutId=123&PhoneNumbers=15300000001&RegionId=cn-hangzhou&SignName=%E9%98%BF%E9%87%8C%E4%BA%91%E7%9F%AD%E4%BF%A1%E6%B5%8B%E8%AF%95%E4%B8%93%E7%94%A8&SignatureMethod=HMAC-SHA1&SignatureNonce=45e25e9b-0a6f-4070-8c85-2956eda1b466&SignatureVersion=1.0&TemplateCode=SMS_71390007&TemplateParam=%7B%22customer%22%3A%22test%22%7D&Timestamp=2017-07-12T02%3A42%3A19Z&Version=2017-05-25"
        );
    }

    #[test]
    fn the_timestamp_is_iso_8601_utc() {
        // The worked example's time.
        assert_eq!(timestamp(1_499_827_339), "2017-07-12T02:42:19Z");
    }

    #[test]
    fn only_unreserved_bytes_stay_literal() {
        assert_eq!(percent_encode("a b+c*d~e"), "a%20b%2Bc%2Ad~e");
        assert_eq!(percent_encode("短"), "%E7%9F%AD");
    }

    #[test]
    fn answers_sort_into_what_the_browser_hears() {
        assert!(outcome("OK".into()).is_ok());
        assert!(matches!(
            outcome("isv.BUSINESS_LIMIT_CONTROL".into()),
            Err(SmsError::RateLimited(_))
        ));
        assert!(matches!(
            outcome("isv.MOBILE_NUMBER_ILLEGAL".into()),
            Err(SmsError::InvalidNumber(_))
        ));
        assert!(matches!(
            outcome("isv.AMOUNT_NOT_ENOUGH".into()),
            Err(SmsError::OutOfBalance(_))
        ));
        assert!(matches!(
            outcome("SignatureDoesNotMatch".into()),
            Err(SmsError::Refused(_))
        ));
    }
}
