#![doc = include_str!("../README.md")]

pub mod capture;
pub mod listener;

pub use crate::listener::{Listener, ListenerConfig};
