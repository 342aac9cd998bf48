#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod commit;
mod deps;
mod error;
mod model;
mod modified;
#[cfg(feature = "r2d2")]
mod pool;
#[cfg(feature = "tokio")]
mod read;
mod tx;
mod value;
mod write;

#[doc(hidden)]
pub mod __private;

pub use diesel;
pub use matroska_core::{Cache, Dep, Loaded, Scopes, Value};
#[cfg(feature = "derive")]
pub use matroska_diesel_derive::{CacheDeps, CacheModel};

pub use crate::commit::{Invalidations, transaction};
pub use crate::deps::{CacheDeps, Deps, loaded};
pub use crate::error::Error;
pub use crate::model::{CacheModel, ScopeFilter};
#[cfg(feature = "r2d2")]
pub use crate::pool::{CachedPool, PgPool};
pub use crate::tx::Tx;
pub use crate::value::ToValue;
pub use crate::write::Locked;
