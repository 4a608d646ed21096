//! The SQLite backend shares one database file between OS processes: two
//! processes write and read the same file at the same time, and each sees
//! every write of the other.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use h3fleet::cache::{SessionCacheBackend, SqliteBackend};
use support::sessions::state;

const ENTRIES: usize = 150;
const DB_VAR: &str = "H3FLEET_TEST_SQLITE_DB";
const ROLE_VAR: &str = "H3FLEET_TEST_SQLITE_ROLE";

#[test]
fn sqlite_file_is_shared_between_processes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shared.db");
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|role| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "worker::sqlite_worker",
                    "--ignored",
                    "--test-threads=1",
                    "--nocapture",
                ])
                .env(DB_VAR, &db)
                .env(ROLE_VAR, role)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "a worker process failed ({:?}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // And a third process (this one) sees all of both.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let backend = SqliteBackend::open(&db).unwrap();
        for role in ["a", "b"] {
            for i in 0..ENTRIES {
                let got = backend.get(&key(role, i)).await.unwrap();
                assert_eq!(got.map(|s| s.ticket), Some(format!("{role}{i}")));
            }
        }
    });
}

fn key(role: &str, i: usize) -> String {
    format!("h3fleet:sessions:default:h3:{role}-{i}.example:443")
}

mod worker {
    use super::*;

    /// The body of one worker process; run only by the test above.
    #[test]
    #[ignore = "a child process of sqlite_file_is_shared_between_processes"]
    fn sqlite_worker() {
        let (Some(db), Some(role)) = (std::env::var_os(DB_VAR), std::env::var(ROLE_VAR).ok()) else {
            eprintln!("sqlite_worker runs only as a child of sqlite_file_is_shared_between_processes");
            return;
        };
        let other = if role == "a" { "b" } else { "a" };
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(run(Path::new(&db), &role, other));
    }

    async fn run(db: &Path, me: &str, other: &str) {
        let backend = SqliteBackend::open(db).unwrap();
        let long = Duration::from_secs(600);
        let mut seen = vec![false; ENTRIES];
        for i in 0..ENTRIES {
            let value = state(&format!("{me}{i}"), "cw==");
            backend.put(&key(me, i), &value, long).await.unwrap();
            // Interleave reads of the other process's keys with our writes.
            poll_other(&backend, other, &mut seen).await;
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while seen.iter().any(|s| !s) {
            assert!(
                Instant::now() < deadline,
                "{me} never saw all of {other}'s writes"
            );
            poll_other(&backend, other, &mut seen).await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn poll_other(backend: &SqliteBackend, other: &str, seen: &mut [bool]) {
        for (i, s) in seen.iter_mut().enumerate().filter(|(_, s)| !**s) {
            if let Some(v) = backend.get(&key(other, i)).await.unwrap() {
                assert_eq!(
                    v.ticket,
                    format!("{other}{i}"),
                    "a read returned another entry's value"
                );
                *s = true;
            }
        }
    }
}
