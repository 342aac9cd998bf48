//! What the server's `maxmemory-policy` means for the store, reported at connect time.

/// Reads the server's eviction settings (servers that refuse `CONFIG GET`, as managed services
/// do, are not checked) and logs what they mean. Every policy keeps the consistency invariants
/// (`PROTOCOL.md`, "Eviction"; the test `eviction` runs each under memory pressure): what an
/// eviction loses only ever causes misses. Under `allkeys-*` the namespace's state and metadata
/// can be evicted too, and each such eviction makes every entry of the namespace a miss, so the
/// hit rate suffers where `noeviction` or a `volatile-*` policy with TTLs on entries would not.
pub(crate) async fn report_eviction_policy(conn: &mut redis::aio::ConnectionManager) {
    let reply: redis::RedisResult<Vec<String>> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory*")
        .query_async(conn)
        .await;
    let Ok(pairs) = reply else {
        return;
    };
    let value = |name: &str| {
        pairs
            .chunks(2)
            .find(|pair| pair.first().is_some_and(|n| n == name))
            .and_then(|pair| pair.get(1).cloned())
    };
    let maxmemory = value("maxmemory").unwrap_or_default();
    let policy = value("maxmemory-policy").unwrap_or_default();
    if maxmemory == "0" || maxmemory.is_empty() || policy == "noeviction" {
        return;
    }
    if policy.starts_with("allkeys-") {
        tracing::warn!(
            %policy,
            %maxmemory,
            "Redis may evict matroska's namespace state and metadata: reads stay correct (a lost \
             namespace starts a new generation, its entries become misses), but each such \
             eviction empties the cache; prefer noeviction, or a volatile-* policy with TTLs on \
             entries (see the matroska-redis PROTOCOL.md, \"Eviction\")"
        );
    } else {
        tracing::debug!(
            %policy,
            %maxmemory,
            "Redis may evict entries and indexes that have a TTL; the namespace's metadata has \
             none and stays"
        );
    }
}
