//! The SQLite backend shares one database file between OS processes: four
//! processes create, write and read the same new file at the same time, and
//! each sees every write of the others.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use h3fleet::cache::{SessionCacheBackend, SqliteBackend};
use support::sessions::state;

const ENTRIES: usize = 100;
const ROLES: [&str; 4] = ["a", "b", "c", "d"];
const DB_VAR: &str = "H3FLEET_TEST_SQLITE_DB";
const ROLE_VAR: &str = "H3FLEET_TEST_SQLITE_ROLE";

#[test]
fn sqlite_file_is_shared_between_processes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shared.db");
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = ROLES
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
        for role in ROLES {
            for i in 0..ENTRIES {
                let got = backend.get(&key(role, i)).await.unwrap();
                assert_eq!(got.map(|s| s.ticket), Some(format!("{role}{i}")));
            }
        }
    });
}

const POOL_KEY: &str = "h3fleet:pool:default:h3:pooled.example:443";
const POOLED: usize = 16;
const TAKERS_PER_PROCESS: usize = 16;

/// Two processes with 16 concurrent takers each race for 16 pooled tickets
/// in one SQLite file: every ticket is taken once, by one taker.
#[test]
fn pooled_tickets_are_taken_once_across_processes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pool.db");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let backend = SqliteBackend::open(&db).unwrap();
        let max = std::num::NonZeroUsize::new(POOLED).unwrap();
        for i in 0..POOLED {
            let s = state(&format!("t{i:02}"), "cw==");
            backend
                .pool_add(POOL_KEY, &s, Duration::from_secs(600), max)
                .await
                .unwrap();
        }
    });
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..2)
        .map(|_| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "worker::pool_taker",
                    "--ignored",
                    "--test-threads=1",
                    "--nocapture",
                ])
                .env(DB_VAR, &db)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut taken: Vec<String> = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "a taker process failed:\n{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // libtest writes `test NAME ... ` before the first line, on the same line.
        let tickets = stdout
            .lines()
            .filter_map(|l| l.split_once("taken ").map(|(_, t)| t.to_owned()));
        taken.extend(tickets);
    }
    let mut unique = taken.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), taken.len(), "a ticket was taken twice: {taken:?}");
    assert_eq!(taken.len(), POOLED, "every pooled ticket was taken: {taken:?}");
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
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(run(Path::new(&db), &role));
    }

    /// One process of pooled_tickets_are_taken_once_across_processes:
    /// prints `taken TICKET` per ticket its takers got.
    #[test]
    #[ignore = "a child process of pooled_tickets_are_taken_once_across_processes"]
    fn pool_taker() {
        let Some(db) = std::env::var_os(DB_VAR) else {
            eprintln!("pool_taker runs only as a child of pooled_tickets_are_taken_once_across_processes");
            return;
        };
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let backend = std::sync::Arc::new(SqliteBackend::open(Path::new(&db)).unwrap());
            let takers: Vec<_> = (0..TAKERS_PER_PROCESS)
                .map(|_| {
                    let b = std::sync::Arc::clone(&backend);
                    tokio::spawn(async move { b.pool_take(POOL_KEY).await })
                })
                .collect();
            for t in takers {
                if let Some(take) = t.await.unwrap().unwrap() {
                    println!("taken {}", take.session.ticket);
                }
            }
        });
    }

    async fn run(db: &Path, me: &str) {
        let backend = SqliteBackend::open(db).unwrap();
        let long = Duration::from_secs(600);
        let others: Vec<&str> = ROLES.into_iter().filter(|r| *r != me).collect();
        // seen[o][i]: entry i of the other process o has been read back.
        let mut seen = vec![vec![false; ENTRIES]; others.len()];
        for i in 0..ENTRIES {
            let value = state(&format!("{me}{i}"), "cw==");
            backend.put(&key(me, i), &value, long).await.unwrap();
            // Interleave reads of the other processes' keys with our writes.
            poll_others(&backend, &others, &mut seen).await;
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while seen.iter().flatten().any(|s| !s) {
            assert!(
                Instant::now() < deadline,
                "{me} never saw all the other processes' writes"
            );
            poll_others(&backend, &others, &mut seen).await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn poll_others(backend: &SqliteBackend, others: &[&str], seen: &mut [Vec<bool>]) {
        for (other, seen) in others.iter().zip(seen.iter_mut()) {
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
}
