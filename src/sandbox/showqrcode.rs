//! `/sandbox/showqrcode`: the sandbox's stand-in for WeChat's QR image server. Its QR codes
//! encode the simulated phone's page for the ticket, so any camera that "scans" one opens the
//! simulator. `/sandbox/account-qrcode` is the simulated account's own QR code (code mode),
//! which opens the phone page without a ticket: follow, then send the login code.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use qrcode::render::svg;
use qrcode::QrCode;
use serde::Deserialize;

use super::Simulator;
use crate::error::ApiError;

/// Where the sandbox serves the image of a QR ticket; the URL-encoded ticket follows. Relative,
/// so the browser asks the host it loaded the login page from.
pub const SHOW_QRCODE: &str = "/sandbox/showqrcode?ticket=";
/// The simulated official account's own QR code.
pub const ACCOUNT_QRCODE: &str = "/sandbox/account-qrcode";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/sandbox/showqrcode", web::get().to(show))
        .route(ACCOUNT_QRCODE, web::get().to(show_account));
}

#[derive(Deserialize)]
struct TicketQuery {
    ticket: String,
}

async fn show(
    sim: web::Data<Simulator>,
    query: web::Query<TicketQuery>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    if !sim.tickets.contains_key(&query.ticket) {
        return Err(ApiError::NotFound("no such ticket"));
    }
    let ticket: String = url::form_urlencoded::byte_serialize(query.ticket.as_bytes()).collect();
    svg_of_phone_page(&req, &format!("?ticket={ticket}"))
}

async fn show_account(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    svg_of_phone_page(&req, "")
}

/// A QR code of the simulated phone's page with `query`.
fn svg_of_phone_page(req: &HttpRequest, query: &str) -> Result<HttpResponse, ApiError> {
    // The host the browser reached us by: when the service listens on a LAN address, a real
    // phone that scans the screen can open the page too.
    let connection = req.connection_info();
    let phone_page = format!(
        "{}://{}/sandbox/phone{query}",
        connection.scheme(),
        connection.host()
    );
    let image = QrCode::new(phone_page.as_bytes())
        .map_err(|_| ApiError::BadRequest("the Host header is too long for a QR code".into()))?
        .render::<svg::Color>()
        .min_dimensions(240, 240)
        .build();
    Ok(HttpResponse::Ok()
        .content_type("image/svg+xml")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(image))
}
