//! The model-based checker as a conformance case: random operation sequences against the store,
//! checked step by step against a reference model (see [`crate::model`]).

use crate::Harness;
use crate::model::{ModelConfig, check};

/// Random sequences of every operation, metadata loss and time passing, on tiny budgets and on
/// the default store, never disagree with the model: no stale read, no stale fill, no lost live
/// entry. The run must also show that it exercised what it checks.
pub async fn random_operations_match_the_model<H: Harness>(h: &H) {
    let report = check(h, ModelConfig::from_env(h.exact_time())).await;
    assert!(report.hits > 0, "no read hit: {report:?}");
    assert!(
        report.fills_refused > 0,
        "no stale fill was refused: {report:?}"
    );
    assert!(report.fills_stored > 0, "no fill was stored: {report:?}");
    assert!(
        report.loads_stored > 0,
        "no held load was stored: {report:?}"
    );
    assert!(
        report.removed > 0,
        "no invalidation removed anything: {report:?}"
    );
    // (Refused leases are rarer in a short run; `refresh::one_lease_holder_*` pins them.)
    assert!(
        report.begin_fills > 0,
        "no begin_fill token was handed out: {report:?}"
    );
}
