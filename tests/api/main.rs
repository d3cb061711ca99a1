//! Black-box tests: the real server on a random port, the sandbox simulator as WeChat.

mod abuse;
mod admin;
mod authjs;
mod browser;
mod callback;
mod code_login;
mod config;
mod confirm;
mod crash;
mod events;
mod helpers;
mod hijack;
mod hostile;
mod load_tool;
mod login;
mod oidc;
mod operations;
mod page;
mod power_cut;
mod safe_mode;
mod sandbox;
mod sessions;
mod shutdown;
mod sms;
mod wechat_api;
