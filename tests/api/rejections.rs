//! What the framework's extractors refuse comes back in our words: our JSON error, a stable
//! code, a message naming the parameter or field where there is one, and none of actix's texts.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{spawn_app_with, ADMIN_TOKEN};
use crate::oidc::provider;

/// Phrases of actix's own error texts.
const FRAMEWORK_WORDING: [&str; 6] = [
    "deserialize error",
    "Content type error",
    "Parse error",
    "payload",
    "URL encoded",
    "Error that occur",
];

/// Asserts our JSON error with `code`, and returns its message.
async fn refusal(response: reqwest::Response, status: StatusCode, code: &str) -> String {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.expect("a JSON error");
    assert_eq!(body["error"], code, "{body}");
    let message = body["message"].as_str().unwrap().to_owned();
    for phrase in FRAMEWORK_WORDING {
        assert!(!message.contains(phrase), "actix's wording in {body}");
    }
    message
}

#[tokio::test]
async fn a_query_that_does_not_fit_names_the_parameter() {
    let app = spawn_app_with(&[("WXLOGIN_ADMIN_TOKEN", ADMIN_TOKEN)]).await;
    let message = refusal(
        app.admin_get("/admin/logins").await,
        StatusCode::BAD_REQUEST,
        "invalid_query",
    )
    .await;
    assert_eq!(message, "the query parameter `openid` is missing");
    let message = refusal(
        app.admin_get("/admin/logins?openid=a&openid=b").await,
        StatusCode::BAD_REQUEST,
        "invalid_query",
    )
    .await;
    assert_eq!(
        message,
        "the query parameter `openid` is given more than once"
    );
    let message = refusal(
        app.get("/api/qrcode/x/status?wait=soon").await,
        StatusCode::BAD_REQUEST,
        "invalid_query",
    )
    .await;
    assert!(
        message.starts_with("a query parameter is malformed"),
        "{message}"
    );
}

#[tokio::test]
async fn a_json_body_that_does_not_fit_names_the_field() {
    let app = spawn_app_with(&[]).await;
    let send = |content_type: &'static str, body: &'static str| {
        app.client
            .post(app.url("/api/qrcode/x/bind"))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let message = refusal(
        send("application/json", r#"{"phone": "13800000000"}"#)
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
        "invalid_json",
    )
    .await;
    assert_eq!(message, "the body's field `code` is missing");
    let message = refusal(
        send("application/json", r#"{"phone": 138, "code": "1"}"#)
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
        "invalid_json",
    )
    .await;
    assert!(
        message.starts_with("the body does not fit this endpoint: invalid type"),
        "{message}"
    );
    let message = refusal(
        send("application/json", "{not json").await.unwrap(),
        StatusCode::BAD_REQUEST,
        "invalid_json",
    )
    .await;
    assert!(
        message.starts_with("the body is not valid JSON"),
        "{message}"
    );
    let message = refusal(
        send("text/plain", r#"{"phone": "13800000000", "code": "1"}"#)
            .await
            .unwrap(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    assert!(message.contains("application/json"), "{message}");
    refusal(
        send(
            "application/json",
            Box::leak("x".repeat(5000).into_boxed_str()),
        )
        .await
        .unwrap(),
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    )
    .await;
}

#[tokio::test]
async fn a_form_that_does_not_fit_is_an_oauth_error_in_our_words() {
    let app = provider().await;
    let token = |content_type: &'static str, body: &'static str| {
        app.client
            .post(app.url("/oauth/token"))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let response = token(
        "application/x-www-form-urlencoded",
        "grant_type=authorization_code&code=a&code=b&client_id=spa",
    )
    .await
    .unwrap();
    let message = refusal(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    assert_eq!(message, "the parameter `code` is given more than once");
    let response = token(
        "application/json",
        r#"{"grant_type": "authorization_code"}"#,
    )
    .await
    .unwrap();
    let message = refusal(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    assert_eq!(
        message,
        "the body must be an application/x-www-form-urlencoded form"
    );
}
