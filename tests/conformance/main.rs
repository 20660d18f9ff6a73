//! One store contract, run against every backend compiled in.

mod cases;
mod durability;
mod dynamodb_only;
#[cfg(feature = "dynamodb")]
#[path = "../common/dynamodb.rs"]
mod emulator;
mod harness;
mod plan_cases;
mod secret_cases;

/// Instantiates every case of the contract for one backend.
macro_rules! conformance {
    ($backend:ident, $make:path) => {
        mod $backend {
            conformance!(@cases $make;
                grants_up_to_the_limit_then_refuses,
                concurrent_starts_grant_exactly_the_limit,
                concurrent_evictions_keep_the_limit,
                heartbeat_renews_until_the_lease_runs_out,
                evict_oldest_ends_the_oldest,
                a_device_replaces_its_own_stream,
                terminate_ends_named_streams_in_the_same_step,
                a_retry_of_a_live_stream_changes_nothing,
                stopping_twice_is_harmless,
                an_ended_id_can_start_again,
                accounts_are_isolated,
                a_limit_override_applies_and_clears,
                limit_zero_blocks_the_account,
                tombstones_outlive_ten_leases_then_go,
                an_unknown_account_reads_as_empty,
                a_plan_limit_sits_between_override_and_default,
                a_live_stream_id_belongs_to_its_device,
                a_hot_account_gets_answers_within_the_store_timeout,
                a_large_account_with_long_ids_works_at_the_limit,
                a_per_content_rule_refuses_a_third_stream_of_a_title,
                concurrent_starts_of_one_title_grant_exactly_the_rule,
                match_rules_and_required_attributes_hold,
                evict_oldest_evicts_within_the_refusing_scope,
                a_plan_change_revokes_what_the_new_plan_does_not_allow,
                tags_are_kept_and_fixed_for_the_life_of_a_stream,
                a_lease_with_a_secret_renews_only_for_that_secret,
                a_forgotten_stream_resumes_from_its_grant_and_an_ended_one_never,
            );
        }
    };
    (@cases $make:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                crate::cases::$case($make).await;
            }
        )*
    };
}

conformance!(memory, crate::harness::memory);
#[cfg(feature = "file")]
conformance!(file, crate::harness::file);
#[cfg(feature = "redis")]
conformance!(redis, crate::harness::redis);
#[cfg(feature = "redis")]
conformance!(redis_cluster, crate::harness::redis_cluster);
#[cfg(feature = "redis")]
conformance!(rediss, crate::harness::rediss);
#[cfg(feature = "dynamodb")]
conformance!(dynamodb, crate::harness::dynamodb);
