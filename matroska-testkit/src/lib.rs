//! # The Matroska conformance suite
//!
//! Every Matroska store must behave the same: this crate holds the cases that prove it, as plain
//! public `async fn`s grouped by concern in [`cases`], and one macro, [`conformance!`], that turns
//! them into one `#[test]` per case for any store through a small [`Harness`].
//!
//! A store author writes a harness (fresh isolated stores, a way to let time pass, a way to lose
//! index metadata) and one macro call:
//!
//! ```ignore
//! // tests/conformance.rs of a store crate
//! struct MyHarness { /* a connection, the namespaces to drop afterwards */ }
//!
//! impl matroska_testkit::Harness for MyHarness { /* ... */ }
//!
//! impl MyHarness {
//!     async fn create() -> Option<Self> {
//!         let url = matroska_testkit::server_url("MY_STORE_URL")?; // skips, or fails in CI
//!         Some(MyHarness { /* connect to url */ })
//!     }
//! }
//!
//! matroska_testkit::conformance!(MyHarness::create());
//! ```
//!
//! That expands to modules named after the groups (`basic`, `dependencies`, `scopes`, `expiry`,
//! `namespaces`, `edge_cases`, `bounded`, `invariants`, `concurrency`, `cache`, `cache_safety`,
//! `refresh`, `fetchers`, `model`), each with one test per case, so `cargo nextest run -E 'test(/invariants::/)'` runs
//! one group. Each case runs on its own multi-threaded runtime with a time limit, and the harness
//! cleans up even when it fails.
//!
//! The cases named `invN_...` check the six consistency invariants stated in the documentation of
//! [`matroska_core::store`]: no stale read after invalidation, no stale fill (including negative
//! results), metadata loss means misses, put replaces, expiry, bounded work. The `bounded` cases
//! run the invalidations whose work a store splits (on [`Harness::small_store`]); the
//! `cache_safety` cases check the `Cache` front end's own rules on the store under test, through
//! [`support::Faulty`], a wrapper that fails or holds the store's calls on demand.

// A test-support crate: it reports skipped tests and random seeds on stderr, and its cases use
// the short names of test code (h for the harness, k for a key, t for a tag).
#![allow(clippy::print_stderr, clippy::many_single_char_names)]

mod harness;
pub mod model;
pub mod support;

pub use crate::harness::{CASE_TIMEOUT, Harness, run, server_url};

/// The cases, grouped by concern. Each is `pub async fn name<H: Harness>(h: &H)`, and panics
/// (through `assert!` and `unwrap`) when the store breaks its contract: that is how a case fails
/// its test.
#[allow(clippy::unwrap_used, clippy::missing_panics_doc)]
pub mod cases {
    pub mod basic;
    pub mod batch;
    pub mod bounded;
    pub mod cache;
    pub mod cache_safety;
    pub mod concurrency;
    pub mod dependencies;
    pub mod edge_cases;
    pub mod expiry;
    pub mod fetchers;
    pub mod invariants;
    pub mod model;
    pub mod namespaces;
    pub mod refresh;
    pub mod scopes;
}

/// Generates one `#[test]` per conformance case for a store.
///
/// `$make` is an expression evaluating to a future of `Option<impl Harness>` (`None` skips the
/// tests, for example when the store's server is not configured). It is evaluated once per test,
/// inside that test's runtime, in the modules the macro creates (which import the caller's module
/// with `use super::*`).
///
/// # Examples
///
/// ```ignore
/// mod memory {
///     matroska_testkit::conformance!(crate::MemoryHarness::create());
/// }
/// ```
#[macro_export]
macro_rules! conformance {
    ($make:expr) => {
        $crate::__conformance_cases!(@emit $make;
            basic: [
                put_then_get,
                missing_key_is_a_miss,
                overwrite_replaces_value,
                delete_reports_whether_a_live_entry_was_removed,
                exists_agrees_with_get,
                miss_token_fills_the_entry,
                a_put_without_a_token_after_its_tag_was_invalidated_is_a_hit,
                the_token_of_a_miss_after_expiry_or_delete_fills_the_entry,
            ],
            batch: [
                get_many_answers_each_key_like_get_in_order,
                get_many_miss_tokens_fill_through_put_many,
                put_many_refuses_only_the_entries_whose_tags_were_invalidated,
                put_many_checks_every_entry_first,
                put_many_without_tokens_replaces_and_invalidation_removes,
                fetch_many_keeps_the_fill_protocol,
                batches_follow_logical_expiry_and_item_history,
            ],
            dependencies: [
                invalidate_removes_every_dependent,
                invalidate_leaves_unrelated_entries,
                any_of_several_tags_invalidates,
                several_tags_in_one_call,
                unknown_tag_is_a_noop,
                dead_index_members_do_not_remove_new_entries,
                an_entry_matching_several_tags_counts_once,
            ],
            scopes: [
                new_row_entering_a_scope_invalidates_the_list,
                row_moving_between_scopes_invalidates_both_lists,
                a_row_moving_with_an_incomplete_modified_list_invalidates_both_lists,
                unwatched_modification_keeps_other_lists_cached,
                deleted_row_invalidates_its_scope,
                undescribed_condition_in_lenient_mode_is_never_stale,
                kind_invalidation_drops_everything_about_the_kind,
            ],
            expiry: [
                expired_entry_is_never_served,
                entry_without_ttl_persists,
                ttl_reports_missing_persistent_and_remaining,
                put_without_ttl_removes_an_earlier_ttl,
                sub_second_ttl_works,
                zero_ttl_is_rejected_before_anything_is_written,
            ],
            namespaces: [
                namespaces_are_isolated,
                invalidation_is_confined_to_the_namespace,
                clear_is_confined_to_the_namespace,
                clear_rejects_fills_that_started_before_it,
                reopened_handle_shares_the_namespace,
                a_fill_token_from_another_namespace_is_refused,
                clear_rejects_every_fill_held_across_it,
                clear_racing_fills_never_serves_a_value_from_before_it,
                clear_racing_invalidations_leaves_no_entry_from_before_it,
            ],
            edge_cases: [
                unicode_keys_tags_and_values,
                key_limits_are_enforced,
                empty_binary_and_large_values_round_trip,
                many_tags_on_one_entry,
                separator_characters_in_tags,
                long_tags_are_hashed_and_still_invalidate,
                undecodable_bytes_are_a_miss_and_removed,
                type_change_is_a_miss,
                oversized_value_is_rejected_and_nothing_is_lost,
                too_many_tags_are_rejected_and_nothing_is_lost,
            ],
            bounded: [
                one_invalidation_of_many_tags_beyond_the_budget_leaves_no_dependent,
                a_budget_spent_on_earlier_tags_still_sweeps_the_later_ones,
                an_index_of_exactly_a_budget_of_expiring_members_sweeps_the_persistent_ones,
                more_than_64_tags_in_one_invalidation_leave_no_dependent,
                two_handles_invalidating_one_large_tag_at_once_leave_no_dependent,
                set_aside_entries_stay_misses_after_the_fill_window,
            ],
            invariants: [
                inv1_no_stale_read_after_invalidation,
                inv2_stale_fill_rejected_changed_row,
                inv2_stale_fill_rejected_negative_result,
                inv2_store_rejects_tokens_older_than_an_invalidation,
                inv2_token_older_than_fill_window_is_rejected,
                inv3_lost_index_means_miss,
                inv3_lost_index_stays_a_miss_after_housekeeping_and_the_fill_window,
                inv3_lost_index_of_one_of_several_tags_means_miss,
                inv3_a_lost_stamp_never_readmits_an_invalidated_entry,
                inv2_a_stale_put_leaves_the_existing_entry_untouched,
                inv4_put_replaces_value_and_tags,
                inv5_index_does_not_keep_expired_entries_alive,
                inv5_index_does_not_shorten_entry_life,
                inv6_bounded_invalidation_of_many_dependents,
            ],
            concurrency: [
                single_flight_shares_one_load,
                loader_error_reaches_every_waiter_and_the_next_call_retries,
                loader_panic_reaches_every_waiter_and_the_next_call_retries,
                cancelled_leader_hands_over_to_a_waiter,
                randomized_fills_reads_and_invalidations_never_read_stale,
                randomized_race_across_two_handles_never_reads_stale,
            ],
            cache: [
                get_or_insert_with_caches_and_tracks_deps,
                counters_track_what_happened,
                json_codec_round_trips_and_codecs_do_not_mix,
                schema_version_change_is_a_miss,
                default_ttl_applies_to_puts_and_fills,
                fetch_reports_the_origin_of_values,
            ],
            cache_safety: [
                a_waiter_whose_miss_follows_an_invalidation_loads_again,
                a_waiter_does_not_share_a_load_whose_leader_had_no_token,
                a_waiter_without_a_token_does_not_share_an_older_load,
                a_load_without_a_fill_token_is_returned_but_never_stored,
                fail_open_across_a_store_recovery_never_stores_a_stale_fill,
                counters_count_calls_as_the_application_sees_them,
            ],
            refresh: [
                a_begin_fill_token_fills_like_a_miss,
                a_begin_fill_token_is_rejected_after_an_invalidation_or_a_clear,
                one_lease_holder_per_key_across_handles,
                a_lease_runs_out,
                last_modified_is_kept_across_an_identical_refresh,
                a_refresh_racing_an_invalidation_is_not_stored,
                one_refresher_across_two_caches,
                fail_safe_serves_the_expired_value_after_an_error_never_an_invalidated_one,
                fail_safe_never_serves_a_value_invalidated_during_the_load,
                fail_safe_ends_at_the_maximum_staleness,
                soft_and_hard_timeouts,
                old_envelopes_still_decode,
            ],
            fetchers: [
                a_query_is_one_key_whatever_its_field_order,
                keys_read_within_the_idle_window_are_refreshed_and_idle_ones_are_not,
                proactive_refresh_is_bounded_and_its_task_stops,
            ],
            model: [
                random_operations_match_the_model,
            ],
        );
    };
}

/// Implementation detail of [`conformance!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    (@emit $make:expr; $($group:ident: [$($case:ident),* $(,)?]),* $(,)?) => {
        $(
            mod $group {
                #[allow(unused_imports)]
                use super::*;
                $(
                    #[test]
                    fn $case() {
                        $crate::run($make, |h| async move {
                            $crate::cases::$group::$case(&*h).await;
                        });
                    }
                )*
            }
        )*
    };
}

#[cfg(test)]
mod tests {
    /// Every `pub async fn` case in `src/cases/` is listed in the macro, so none is silently
    /// never run.
    #[test]
    fn every_case_is_in_the_macro() {
        let macro_text = include_str!("lib.rs");
        let groups = [
            ("basic", include_str!("cases/basic.rs")),
            ("batch", include_str!("cases/batch.rs")),
            ("bounded", include_str!("cases/bounded.rs")),
            ("cache", include_str!("cases/cache.rs")),
            ("cache_safety", include_str!("cases/cache_safety.rs")),
            ("concurrency", include_str!("cases/concurrency.rs")),
            ("dependencies", include_str!("cases/dependencies.rs")),
            ("edge_cases", include_str!("cases/edge_cases.rs")),
            ("expiry", include_str!("cases/expiry.rs")),
            ("fetchers", include_str!("cases/fetchers.rs")),
            ("invariants", include_str!("cases/invariants.rs")),
            ("model", include_str!("cases/model.rs")),
            ("namespaces", include_str!("cases/namespaces.rs")),
            ("refresh", include_str!("cases/refresh.rs")),
            ("scopes", include_str!("cases/scopes.rs")),
        ];
        let mut count = 0;
        for (group, source) in groups {
            let block_start = macro_text
                .find(&format!("            {group}: ["))
                .unwrap_or_else(|| panic!("group {group} is missing from the macro"));
            let block = &macro_text[block_start..];
            let block = &block[..block.find(']').unwrap()];
            for line in source.lines() {
                let Some(rest) = line.strip_prefix("pub async fn ") else {
                    continue;
                };
                let name = &rest[..rest.find('<').unwrap()];
                assert!(
                    block.contains(&format!(" {name},")),
                    "case {group}::{name} is not listed in conformance!"
                );
                count += 1;
            }
        }
        assert!(count >= 50, "only {count} cases found");
    }
}
