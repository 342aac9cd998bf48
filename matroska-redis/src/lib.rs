#![doc = include_str!("../README.md")]

mod batch;
mod clock;
mod config;
mod error;
mod format;
mod keys;
mod policy;
mod replies;
mod scripts;
mod store;

pub use redis;

pub use crate::config::{IntoClient, RedisConfig, RedisStoreBuilder};
pub use crate::keys::KeyLayout;
pub use crate::store::RedisStore;

#[doc = include_str!("../PROTOCOL.md")]
pub mod protocol {}
