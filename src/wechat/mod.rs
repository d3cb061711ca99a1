//! WeChat's wire protocol: callback signatures, message XML, and the HTTP API client.

pub mod api;
pub mod crypto;
pub mod envelope;
pub mod ip_ranges;
pub mod message;
pub mod scene_key;
pub mod shared_token;
pub mod signature;
