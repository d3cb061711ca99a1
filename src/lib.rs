//! wxlogin: "scan the QR code with WeChat to log in" as a small service.
//!
//! `config` reads settings, `startup` wires everything (`mode_marker` keeps the sandbox off a
//! real account's data), `http` is the API, `wechat` the protocol, `sandbox` the built-in WeChat
//! simulator, `oidc` the OpenID Connect provider, `unionid` the users' unionids fetched after a login.
//! State machines and storage live in the `wxlogin-actors` and `wxlogin-storage` crates.

pub mod audit;
pub mod backup;
pub mod config;
pub mod error;
pub mod files;
pub mod http;
pub mod i18n;
pub mod metrics;
pub mod mode_marker;
pub mod oidc;
pub mod open_files;
pub mod reply_templates;
pub mod sandbox;
pub mod sms;
pub mod startup;
pub mod telemetry;
pub mod unionid;
pub mod wechat;
