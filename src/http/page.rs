//! The login page at `/`: the reference integration sites copy. Plain HTML, CSS and JavaScript
//! compiled into the binary, so there is no front-end build step and `cargo run` serves it all.

use actix_web::http::header;
use actix_web::{web, HttpResponse};

/// Scripts and styles only from this origin, and QR images from here or WeChat.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' https://mp.weixin.qq.com";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/",
        web::get().to(|| async { asset("text/html", include_str!("page/login.html")) }),
    )
    .route(
        "/login.css",
        web::get().to(|| async { asset("text/css", include_str!("page/login.css")) }),
    )
    .route(
        "/login.js",
        web::get().to(|| async { asset("text/javascript", include_str!("page/login.js")) }),
    );
}

/// A file compiled into the binary.
pub fn asset(content_type: &str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(format!("{content_type}; charset=utf-8"))
        // Revalidate on every load, so a new release is never mixed with a cached old file.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(body)
}
