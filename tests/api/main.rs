//! Black-box tests: the real server on a random port, the sandbox simulator as WeChat.

mod callback;
mod config;
mod helpers;
mod hostile;
mod load_tool;
mod login;
mod safe_mode;
mod sessions;
mod sms;
mod wechat_api;
