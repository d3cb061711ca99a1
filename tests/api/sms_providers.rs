//! Verification codes through Alibaba Cloud SMS and Tencent Cloud SMS, each played by a fake
//! gateway on loopback that checks the request's signature itself (computed here, apart from
//! the service's code) and answers success or the provider's errors by phone number.

use base64::Engine;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::helpers::{answering_server, Received, TestApp};

const KEY_ID: &str = "LTAI-test-key-id";
const KEY_SECRET: &str = "the-provider-key-secret-0123";

/// Asks for a code for `phone` on a new scene scanned by a new user.
async fn request_code(app: &TestApp, phone: &str) -> reqwest::Response {
    let qr = app.create_qr().await;
    app.scan(&qr.ticket, &format!("o{phone}"), true).await;
    app.request_code(&qr.scene_id, phone).await
}

/// The browser hears what it can act on, and none of the provider's words or the key.
async fn assert_refused(app: &TestApp, phone: &str, status: StatusCode, code: &str) {
    let response = request_code(app, phone).await;
    assert_eq!(response.status(), status, "{phone}");
    let text = response.text().await.unwrap();
    assert!(
        !text.contains(KEY_SECRET) && !text.contains(KEY_ID),
        "{text}"
    );
    assert!(
        !text.contains("isv.") && !text.contains("Exceeded"),
        "{text}"
    );
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"], code, "{phone}: {body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
}

/// A successful send: 202, the code the gateway got binds the phone, and the simulated phone
/// shows it too.
async fn assert_sent(
    app: &TestApp,
    phone: &str,
    code_of: impl Fn(&Received) -> String,
    gateway: &mut UnboundedReceiver<Received>,
) -> Received {
    let qr = app.create_qr().await;
    app.scan(&qr.ticket, &format!("o{phone}"), true).await;
    assert_eq!(
        app.request_code(&qr.scene_id, phone).await.status(),
        StatusCode::ACCEPTED
    );
    let request = gateway.recv().await.unwrap();
    let code = code_of(&request);
    assert!(
        code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()),
        "{request:?}"
    );
    assert_eq!(app.sms_code(phone).await, code);
    assert_eq!(
        app.bind(&qr.scene_id, phone, &code).await.status(),
        StatusCode::OK
    );
    request
}

// --- Alibaba Cloud ------------------------------------------------------------------------

/// The documented encoding, the way Alibaba's page suggests building it: form-encode, then
/// `+` → `%20`, `*` → `%2A`, `%7E` → `~`.
fn aliyun_encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
        .replace('*', "%2A")
        .replace("%7E", "~")
}

fn aliyun_params(request: &Received) -> Vec<(String, String)> {
    let query = request.target.split_once('?').map_or("", |(_, q)| q);
    url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

fn aliyun_signature_is_valid(request: &Received) -> bool {
    let mut params = aliyun_params(request);
    let Some(at) = params.iter().position(|(n, _)| n == "Signature") else {
        return false;
    };
    let signature = params.remove(at).1;
    params.sort();
    let canonical = params
        .iter()
        .map(|(n, v)| format!("{}={}", aliyun_encode(n), aliyun_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let mut mac = Hmac::<Sha1>::new_from_slice(format!("{KEY_SECRET}&").as_bytes()).unwrap();
    mac.update(format!("{}&%2F&{}", request.method, aliyun_encode(&canonical)).as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()) == signature
}

fn aliyun_param(request: &Received, name: &str) -> String {
    aliyun_params(request)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
        .unwrap_or_default()
}

/// Alibaba answers business errors with HTTP 200 and a `Code`, a bad signature with a 400.
fn aliyun_answer(request: &Received) -> (u16, String) {
    if !aliyun_signature_is_valid(request) {
        return (400, json!({"Code": "SignatureDoesNotMatch", "Message": "Specified signature is not matched with our calculation."}).to_string());
    }
    let code = match aliyun_param(request, "PhoneNumbers").as_str() {
        "13800000051" => "isv.BUSINESS_LIMIT_CONTROL",
        "13800000052" => "isv.MOBILE_NUMBER_ILLEGAL",
        "13800000053" => "isv.AMOUNT_NOT_ENOUGH",
        _ => "OK",
    };
    (200, json!({"Code": code, "Message": code, "RequestId": "F655A8D5-B967-440B-8683-DAD6FF8DE990", "BizId": "900619746936498440^0"}).to_string())
}

fn aliyun_env(endpoint: &str) -> Vec<(&str, String)> {
    vec![
        ("WXLOGIN_SMS_PROVIDER", "aliyun".into()),
        ("WXLOGIN_SMS_ACCESS_KEY_ID", KEY_ID.into()),
        ("WXLOGIN_SMS_ACCESS_KEY_SECRET", KEY_SECRET.into()),
        ("WXLOGIN_SMS_SIGN_NAME", "阿里云短信测试".into()),
        ("WXLOGIN_SMS_TEMPLATE", "SMS_154950909".into()),
        ("WXLOGIN_SMS_ENDPOINT", endpoint.into()),
    ]
}

async fn spawn_with(env: &[(&str, String)]) -> TestApp {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    crate::helpers::spawn_app_with(&env).await
}

#[tokio::test]
async fn aliyun_sends_a_signed_sendsms_and_its_errors_reach_the_browser() {
    let (base, mut gateway) = answering_server(aliyun_answer).await;
    let app = spawn_with(&aliyun_env(&format!("{base}/"))).await;
    let code_of = |r: &Received| {
        let param: Value = serde_json::from_str(&aliyun_param(r, "TemplateParam")).unwrap();
        param["code"].as_str().unwrap().to_owned()
    };
    let first = assert_sent(&app, "13800000050", code_of, &mut gateway).await;
    assert_eq!(first.method, "GET");
    assert!(aliyun_signature_is_valid(&first));
    for (name, value) in [
        ("Action", "SendSms"),
        ("Version", "2017-05-25"),
        ("Format", "JSON"),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureVersion", "1.0"),
        ("AccessKeyId", KEY_ID),
        ("PhoneNumbers", "13800000050"),
        ("SignName", "阿里云短信测试"),
        ("TemplateCode", "SMS_154950909"),
    ] {
        assert_eq!(aliyun_param(&first, name), value, "{name}");
    }
    assert!(!first.target.contains(KEY_SECRET));
    let timestamp = aliyun_param(&first, "Timestamp");
    assert!(
        timestamp.len() == 20 && timestamp.ends_with('Z'),
        "{timestamp}"
    );
    // Each request has its own nonce, so a captured one replayed is refused by Alibaba.
    let second = assert_sent(&app, "13800000054", code_of, &mut gateway).await;
    assert_ne!(
        aliyun_param(&first, "SignatureNonce"),
        aliyun_param(&second, "SignatureNonce")
    );

    assert_refused(
        &app,
        "13800000051",
        StatusCode::TOO_MANY_REQUESTS,
        "sms_rate_limited",
    )
    .await;
    assert_refused(
        &app,
        "13800000052",
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_phone",
    )
    .await;
    assert_refused(
        &app,
        "13800000053",
        StatusCode::SERVICE_UNAVAILABLE,
        "sms_unavailable",
    )
    .await;
    // The refused numbers' codes never reached the simulated phone.
    assert_eq!(
        app.get("/sandbox/sms/13800000053").await.status(),
        StatusCode::NOT_FOUND
    );
    // The provider's code is logged for the operator; the key never is.
    app.wait_for_log("isv.AMOUNT_NOT_ENOUGH").await;
    assert!(!app.log().contains(KEY_SECRET));
}

#[tokio::test]
async fn aliyun_refusing_our_signature_is_503() {
    let (base, _gateway) = answering_server(aliyun_answer).await;
    let endpoint = format!("{base}/");
    let mut env = aliyun_env(&endpoint);
    env[2].1 = "another-secret-altogether".into();
    let app = spawn_with(&env).await;
    assert_refused(
        &app,
        "13800000055",
        StatusCode::SERVICE_UNAVAILABLE,
        "sms_unavailable",
    )
    .await;
    app.wait_for_log("SignatureDoesNotMatch").await;
}

// --- Tencent Cloud ------------------------------------------------------------------------

fn hmac_sha256(key: &[u8], message: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(message.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// Recomputes TC3-HMAC-SHA256 from what arrived: the headers as sent, the body as sent.
fn tencent_signature_is_valid(request: &Received) -> bool {
    let header = |name| request.header(name).unwrap_or_default();
    let timestamp: i64 = header("x-tc-timestamp").parse().unwrap_or(0);
    let date = time::OffsetDateTime::from_unix_timestamp(timestamp)
        .unwrap()
        .date();
    let date = format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    );
    let canonical = format!(
        "{}\n/\n\ncontent-type:{}\nhost:{}\n\ncontent-type;host\n{}",
        request.method,
        header("content-type"),
        header("host"),
        hex::encode(Sha256::digest(request.body.as_bytes()))
    );
    let scope = format!("{date}/sms/tc3_request");
    let string_to_sign = format!(
        "TC3-HMAC-SHA256\n{timestamp}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let key = hmac_sha256(
        &hmac_sha256(
            &hmac_sha256(format!("TC3{KEY_SECRET}").as_bytes(), &date),
            "sms",
        ),
        "tc3_request",
    );
    let signature = hex::encode(hmac_sha256(&key, &string_to_sign));
    header("authorization") == format!("TC3-HMAC-SHA256 Credential={KEY_ID}/{scope}, SignedHeaders=content-type;host, Signature={signature}")
}

fn tencent_body(request: &Received) -> Value {
    serde_json::from_str(&request.body).unwrap_or_default()
}

/// Tencent answers HTTP 200 throughout: `Response.Error` for a refused request, else a status
/// per number.
fn tencent_answer(request: &Received) -> (u16, String) {
    if !tencent_signature_is_valid(request) {
        let error = json!({"Code": "AuthFailure.SignatureFailure", "Message": "The provided credentials could not be validated."});
        return (
            200,
            json!({"Response": {"Error": error, "RequestId": "r1"}}).to_string(),
        );
    }
    let phone = tencent_body(request)["PhoneNumberSet"][0]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let code = match phone.as_str() {
        "+8613800000061" => "LimitExceeded.PhoneNumberDailyLimit",
        "+8613800000062" => "InvalidParameterValue.IncorrectPhoneNumber",
        "+8613800000063" => "FailedOperation.InsufficientBalanceInSmsPackage",
        _ => "Ok",
    };
    let status = json!({"SerialNo": "5000:1045710669157053657849499619", "PhoneNumber": phone, "Fee": 1, "SessionContext": "", "Code": code, "Message": code, "IsoCode": "CN"});
    (
        200,
        json!({"Response": {"SendStatusSet": [status], "RequestId": "r2"}}).to_string(),
    )
}

fn tencent_env(endpoint: &str) -> Vec<(&str, String)> {
    vec![
        ("WXLOGIN_SMS_PROVIDER", "tencent".into()),
        ("WXLOGIN_SMS_ACCESS_KEY_ID", KEY_ID.into()),
        ("WXLOGIN_SMS_ACCESS_KEY_SECRET", KEY_SECRET.into()),
        ("WXLOGIN_SMS_SIGN_NAME", "腾讯云".into()),
        ("WXLOGIN_SMS_TEMPLATE", "449739".into()),
        ("WXLOGIN_SMS_SDK_APP_ID", "1400006666".into()),
        ("WXLOGIN_SMS_ENDPOINT", endpoint.into()),
    ]
}

#[tokio::test]
async fn tencent_sends_a_signed_sendsms_and_its_errors_reach_the_browser() {
    let (base, mut gateway) = answering_server(tencent_answer).await;
    let app = spawn_with(&tencent_env(&format!("{base}/"))).await;
    let code_of = |r: &Received| {
        tencent_body(r)["TemplateParamSet"][0]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let sent = assert_sent(&app, "13800000060", code_of, &mut gateway).await;
    assert_eq!(sent.method, "POST");
    assert!(tencent_signature_is_valid(&sent));
    for (name, value) in [
        ("x-tc-action", "SendSms"),
        ("x-tc-version", "2021-01-11"),
        ("x-tc-region", "ap-guangzhou"),
        ("content-type", "application/json; charset=utf-8"),
    ] {
        assert_eq!(sent.header(name), Some(value), "{name}");
    }
    let body = tencent_body(&sent);
    assert_eq!(body["PhoneNumberSet"], json!(["+8613800000060"]));
    assert_eq!(body["SmsSdkAppId"], "1400006666");
    assert_eq!(body["SignName"], "腾讯云");
    assert_eq!(body["TemplateId"], "449739");
    assert!(!sent.body.contains(KEY_SECRET));

    assert_refused(
        &app,
        "13800000061",
        StatusCode::TOO_MANY_REQUESTS,
        "sms_rate_limited",
    )
    .await;
    assert_refused(
        &app,
        "13800000062",
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_phone",
    )
    .await;
    assert_refused(
        &app,
        "13800000063",
        StatusCode::SERVICE_UNAVAILABLE,
        "sms_unavailable",
    )
    .await;
    app.wait_for_log("FailedOperation.InsufficientBalanceInSmsPackage")
        .await;
    assert!(!app.log().contains(KEY_SECRET));
}

#[tokio::test]
async fn tencent_refusing_our_signature_is_503() {
    let (base, _gateway) = answering_server(tencent_answer).await;
    let endpoint = format!("{base}/");
    let mut env = tencent_env(&endpoint);
    env[2].1 = "another-secret-altogether".into();
    let app = spawn_with(&env).await;
    assert_refused(
        &app,
        "13800000064",
        StatusCode::SERVICE_UNAVAILABLE,
        "sms_unavailable",
    )
    .await;
    app.wait_for_log("AuthFailure.SignatureFailure").await;
}
