//! The login page and its files.

use reqwest::StatusCode;

use crate::helpers::spawn_app;

#[tokio::test]
async fn the_login_page_and_its_files_are_served() {
    let app = spawn_app().await;
    for (path, content_type, needle) in [
        ("/", "text/html", "<script src=\"/login.js\""),
        ("/login.js", "text/javascript", "/api/qrcode"),
        ("/login.css", "text/css", ".challenge"),
    ] {
        let response = app.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let header = response.headers()["content-type"].to_str().unwrap();
        assert!(header.starts_with(content_type), "{path}: {header}");
        assert!(response.text().await.unwrap().contains(needle), "{path}");
    }
}
