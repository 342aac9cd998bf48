//! Support for the code that the derives generate. Not a public API: it may change in any release.

use diesel::associations::Identifiable;
use matroska_core::{Dep, Scopes, Value};

use crate::model::ScopeFilter;
use crate::value::ToValue;

pub use std::sync::LazyLock;

/// The id of a row, through Diesel's `Identifiable`.
pub fn id_value<'a, M>(row: &'a M) -> Value
where
    &'a M: Identifiable,
    <&'a M as Identifiable>::Id: ToValue,
{
    row.id().to_value()
}

/// The dependency of a generated scope filter. The derive declares every field set it makes a
/// filter for, so the condition cannot be undescribed; should it ever be, the list depends on
/// every row of the kind instead (coarse, never stale).
pub fn scope_dep<M, const N: usize>(scopes: &Scopes<M>, fields: [(&str, Value); N]) -> Dep {
    scopes.condition(fields).unwrap_or_else(|err| {
        tracing::error!(error = %err, "generated scope is not described; using the kind-wide scope");
        scopes.any()
    })
}

/// A scope filter from the derive.
pub fn scope_filter<F>(filter: F, dep: Dep) -> ScopeFilter<F> {
    ScopeFilter::new(filter, dep)
}

/// Reads a field for an extractor.
pub fn value<T: ToValue + ?Sized>(field: &T) -> Value {
    field.to_value()
}
