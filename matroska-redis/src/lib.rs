#![doc = include_str!("../README.md")]

mod config;
mod error;
mod keys;
mod scripts;
mod store;

pub use redis;

pub use crate::config::{IntoClient, RedisConfig, RedisStoreBuilder};
pub use crate::keys::KeyLayout;
pub use crate::store::RedisStore;
