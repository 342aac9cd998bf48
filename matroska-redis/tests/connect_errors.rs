//! A store that cannot reach Redis says so in the user's terms: it cannot connect, to which
//! address, and why (not which internal step failed). Needs no Redis server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::error::Error as _;
use std::time::Duration;

use matroska_core::Error;
use matroska_redis::RedisStore;

#[tokio::test]
async fn a_refused_connection_says_it_cannot_connect_to_redis_at_the_address() {
    // A port nobody listens on: bound, then closed.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("redis://:secret@127.0.0.1:{port}");
    let err = RedisStore::builder(url.as_str())
        .connect_timeout(Duration::from_millis(500))
        .build()
        .await
        .expect_err("nothing listens there");
    let message = err.to_string();
    eprintln!("{message}");
    assert!(
        message.contains(&format!(
            "cannot connect to Redis at redis://:***@127.0.0.1:{port}/0"
        )),
        "{message}"
    );
    assert!(
        !message.contains("secret"),
        "the password is redacted: {message}"
    );
    assert!(!message.contains("scripts"), "{message}");
    assert!(err.is_transient(), "a refused connection may succeed later");
    assert!(matches!(err, Error::Backend { store: "redis", .. }));
    assert!(
        err.source().is_some(),
        "the driver's error is kept as the source"
    );
}
