//! Languages: the pages in Simplified Chinese or English, chosen by `?lang=`, the cookie it
//! sets, `Accept-Language` and `WXLOGIN_DEFAULT_LANG`; and the account's replies in WeChat
//! as the operator's templates (`WXLOGIN_REPLIES`).

use reqwest::header::{ACCEPT_LANGUAGE, COOKIE, SET_COOKIE};

use crate::helpers::{run_to_exit, spawn_app, spawn_app_with, TestApp};

const ZH_TITLE: &str = "<title>微信登录</title>";
const EN_TITLE: &str = "<title>Log in with WeChat</title>";

async fn page(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> String {
    let mut request = reqwest::Client::new().get(app.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap().text().await.unwrap()
}

#[tokio::test]
async fn chinese_by_default_and_for_a_chinese_browser_english_for_an_english_one() {
    let app = spawn_app().await;
    let nothing = page(&app, "/", &[]).await;
    assert!(nothing.contains("<html lang=\"zh-CN\">") && nothing.contains(ZH_TITLE));
    let chinese = page(&app, "/", &[("accept-language", "zh-CN,zh;q=0.9,en;q=0.8")]).await;
    assert!(chinese.contains(ZH_TITLE));
    let english = page(&app, "/", &[("accept-language", "en-GB,en;q=0.9,zh;q=0.5")]).await;
    assert!(english.contains("<html lang=\"en\">") && english.contains(EN_TITLE));
    // A language we don't have falls to the default.
    let french = page(&app, "/", &[("accept-language", "fr-FR")]).await;
    assert!(french.contains(ZH_TITLE));
    // The script's strings come in the same language.
    assert!(english.contains("Resend in {secs}s") && chinese.contains("{secs} 秒后可重新获取"));
}

#[tokio::test]
async fn the_default_language_is_a_setting() {
    let app = spawn_app_with(&[("WXLOGIN_DEFAULT_LANG", "en")]).await;
    assert!(page(&app, "/", &[]).await.contains(EN_TITLE));
    assert!(page(&app, "/", &[("accept-language", "zh-TW")])
        .await
        .contains(ZH_TITLE));
    let (status, stderr) = run_to_exit(&[("WXLOGIN_DEFAULT_LANG", "fr")]);
    assert!(!status.success());
    assert!(stderr.contains("WXLOGIN_DEFAULT_LANG"), "{stderr}");
}

#[tokio::test]
async fn lang_switches_and_is_remembered_across_pages() {
    let app = spawn_app().await;
    let response = reqwest::Client::new()
        .get(app.url("/?lang=en&return_to=/oauth/authorize?client_id%3Dx"))
        .header(ACCEPT_LANGUAGE, "zh-CN")
        .send()
        .await
        .unwrap();
    let cookie = response.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("wxlogin_lang=en;"), "{cookie}");
    let html = response.text().await.unwrap();
    assert!(html.contains(EN_TITLE));
    // The switch offers the other language and keeps where the page returns to.
    assert!(
        html.contains("href=\"/?lang=zh-CN&amp;return_to=%2Foauth%2Fauthorize%3Fclient_id%3Dx\""),
        "{html}"
    );
    // The cookie carries the choice to the next page, over Accept-Language.
    let phone = page(
        &app,
        "/sandbox/phone",
        &[("cookie", "wxlogin_lang=en"), ("accept-language", "zh-CN")],
    )
    .await;
    assert!(phone.contains("<title>Simulated WeChat"), "{phone}");
    let chinese = page(
        &app,
        "/sandbox/phone?lang=zh-CN",
        &[(COOKIE.as_str(), "wxlogin_lang=en")],
    )
    .await;
    assert!(chinese.contains("<title>模拟微信"), "{chinese}");
}

#[tokio::test]
async fn discovery_names_both_languages() {
    let dir = tempfile::tempdir().unwrap();
    let clients = crate::oidc::write_clients(dir.path());
    let app = spawn_app_with(&[("WXLOGIN_OIDC_CLIENTS", &clients)]).await;
    let discovery: serde_json::Value = app
        .get("/.well-known/openid-configuration")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        discovery["ui_locales_supported"],
        serde_json::json!(["zh-CN", "en"])
    );
    // An authorization's refusal page honours ui_locales.
    let refusal = page(&app, "/oauth/authorize?client_id=nobody&ui_locales=en", &[]).await;
    assert!(refusal.contains("is not registered here"), "{refusal}");
    let refusal = page(&app, "/oauth/authorize?client_id=nobody", &[]).await;
    assert!(refusal.contains("没有在这里注册"), "{refusal}");
}

#[tokio::test]
async fn an_operators_reply_file_changes_what_the_phone_sees() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("replies.toml");
    std::fs::write(
        &file,
        "need_bind = \"Welcome to {site}: finish on the web page.\"\n",
    )
    .unwrap();
    let app = spawn_app_with(&[
        ("WXLOGIN_REPLIES", file.to_str().unwrap()),
        ("WXLOGIN_SITE_NAME", "Example Shop"),
    ])
    .await;
    let qr = app.create_qr().await;
    let answer = app
        .scan(&qr.ticket, "oReplyTemplateUser000000001", true)
        .await;
    assert_eq!(
        answer["reply"],
        "Welcome to Example Shop: finish on the web page."
    );
    // The replies the file leaves out keep their Chinese defaults.
    let again = app
        .scan(&qr.ticket, "oReplyTemplateUser000000002", true)
        .await;
    assert_eq!(
        again["reply"],
        "这个二维码已经被扫过了，请刷新网页获取新的二维码。"
    );
}

#[test]
fn a_reply_file_with_an_unknown_placeholder_or_key_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    for (text, named) in [
        (
            "need_bind = \"{sitename}\"",
            "unknown placeholder {sitename}",
        ),
        ("loged_in = \"hi\"", "unknown reply \"loged_in\""),
    ] {
        let file = dir.path().join("replies.toml");
        std::fs::write(&file, text).unwrap();
        let (status, stderr) = run_to_exit(&[("WXLOGIN_REPLIES", file.to_str().unwrap())]);
        assert!(!status.success(), "{text}");
        assert!(
            stderr.contains("WXLOGIN_REPLIES") && stderr.contains(named),
            "{text}: {stderr}"
        );
    }
}
