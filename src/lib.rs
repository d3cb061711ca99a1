//! wxlogin: "scan the QR code with WeChat to log in" as a small service.
//!
//! `config` reads settings, `startup` wires everything, `http` is the API, `wechat` the
//! protocol, `sandbox` the built-in WeChat simulator, `oidc` the OpenID Connect provider.
//! State machines and storage live in the `wxlogin-actors` and `wxlogin-storage` crates.

pub mod backup;
pub mod config;
pub mod error;
pub mod files;
pub mod http;
pub mod metrics;
pub mod oidc;
pub mod sandbox;
pub mod sms;
pub mod startup;
pub mod telemetry;
pub mod wechat;
