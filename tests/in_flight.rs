//! What one caller may have running at once: tool calls (all tools together, and per tool with
//! `concurrency = N`) and open responses (event streams, requests being answered). Tools here
//! wait until the test lets them finish, so "running" is exact, not a matter of timing.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use mcp_gatekeeper::{
    ApiKey, ApiKeys, Gatekeeper, GatekeeperLayer, RunningServer, codes, prelude::*,
};
use serde_json::{Value, json};
use tokio::{sync::Semaphore, task::JoinSet};

use crate::common::{Cred, Mcp, Reply, Version};

const ALICE: &str = "alice-in-flight-key-0123456789abcdef";
const BOB: &str = "bob-in-flight-key-0123456789abcdef";

/// What the tools are doing, shared with the test.
struct Calls {
    running: AtomicUsize,
    peak: AtomicUsize,
    /// Calls whose future was dropped before it finished.
    stopped: AtomicUsize,
    finished: AtomicUsize,
    /// A call finishes once it takes a permit: the test hands them out.
    release: Semaphore,
}

impl Default for Calls {
    fn default() -> Self {
        Self {
            running: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            stopped: AtomicUsize::new(0),
            finished: AtomicUsize::new(0),
            release: Semaphore::new(0),
        }
    }
}

/// Tools that wait for the test's permission to finish.
#[derive(Clone, Default)]
struct Held(Arc<Calls>);

/// One running call: counted while it lives, and counted as stopped if dropped unfinished.
struct Running<'a> {
    calls: &'a Calls,
    finished: bool,
}

impl<'a> Running<'a> {
    fn start(calls: &'a Calls) -> Self {
        let now = calls.running.fetch_add(1, Ordering::SeqCst) + 1;
        calls.peak.fetch_max(now, Ordering::SeqCst);
        Self {
            calls,
            finished: false,
        }
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.calls.running.fetch_sub(1, Ordering::SeqCst);
        let counter = if self.finished {
            &self.calls.finished
        } else {
            &self.calls.stopped
        };
        counter.fetch_add(1, Ordering::SeqCst);
    }
}

impl Held {
    async fn run(&self) -> String {
        let mut running = Running::start(&self.0);
        self.0
            .release
            .acquire()
            .await
            .expect("the semaphore stays open")
            .forget();
        running.finished = true;
        "done".into()
    }
}

#[mcp_tools]
impl Held {
    /// Waits until the test lets it finish.
    #[mcp_tool(public)]
    async fn hold(&self) -> String {
        self.run().await
    }

    /// The same, at most two calls per caller at once.
    #[mcp_tool(public, concurrency = 2)]
    async fn narrow(&self) -> String {
        self.run().await
    }
}

fn keys() -> ApiKeys {
    ApiKeys::new()
        .with_key(ApiKey::new("alice", ALICE))
        .with_key(ApiKey::new("bob", BOB))
}

/// Waits (at most 10 s) until `done` holds.
async fn until(what: &str, done: impl Fn() -> bool) {
    for _ in 0..1000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

/// A server for `tools` whose audit trail is in a fresh file, and the file.
struct Served {
    server: RunningServer,
    url: String,
    audit: std::path::PathBuf,
}

impl Served {
    async fn start(name: &str, gatekeeper: Gatekeeper<Held>) -> Self {
        let dir =
            std::env::temp_dir().join(format!("mcpgk-in-flight-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let audit = dir.join("audit.jsonl");
        let server = gatekeeper
            .audit_file(&audit)
            .bind("127.0.0.1:0")
            .await
            .unwrap();
        let url = format!("http://{}/mcp", server.local_addr());
        Self { server, url, audit }
    }

    /// Audit lines with `"reason":"<reason>"`, once the writer has caught up.
    async fn audited(&self, reason: &str) -> usize {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let needle = format!(r#""reason":"{reason}""#);
        std::fs::read_to_string(&self.audit)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&needle))
            .count()
    }

    async fn stop(self) {
        self.server.shutdown().await.unwrap();
        let _ = std::fs::remove_dir_all(self.audit.parent().unwrap());
    }
}

/// Starts `n` calls of `tool`; their replies arrive in the set as they finish.
fn spawn_calls(mcp: &Arc<Mcp>, tool: &'static str, n: usize) -> JoinSet<Reply> {
    let mut set = JoinSet::new();
    for _ in 0..n {
        let mcp = mcp.clone();
        set.spawn(async move { mcp.call(tool, json!({})).await });
    }
    set
}

/// The next `n` replies of `set`, which must come without the tools finishing.
async fn next_replies(set: &mut JoinSet<Reply>, n: usize) -> Vec<Reply> {
    let mut replies = Vec::new();
    for _ in 0..n {
        let reply = tokio::time::timeout(Duration::from_secs(10), set.join_next())
            .await
            .expect("a refusal comes at once")
            .expect("a call left")
            .unwrap();
        replies.push(reply);
    }
    replies
}

fn assert_too_many(reply: &Reply, scope: &str, limit: u64) {
    assert_eq!(
        reply.error_code(),
        Some(i64::from(codes::TOO_MANY_CALLS)),
        "{reply:#?}"
    );
    let data = &reply.error()["data"];
    assert_eq!(data["reason"], "too_many_calls", "{reply:#?}");
    assert_eq!(data["scope"], scope, "{reply:#?}");
    assert_eq!(data["limit"], limit, "{reply:#?}");
    let message = reply.error()["message"].as_str().unwrap();
    assert!(message.contains(&limit.to_string()), "{message}");
}

#[tokio::test]
async fn the_call_limit_is_exact_under_100_parallel_calls() {
    let held = Held::default();
    let calls = held.0.clone();
    let served = Served::start(
        "exact",
        Gatekeeper::new(held)
            .authenticate(keys())
            .stateless()
            .calls_per_caller(10),
    )
    .await;
    let alice = Arc::new(Mcp::new(
        &served.url,
        Cred::ApiKey(ALICE.into()),
        Version::V2025_06_18,
    ));
    let mut set = spawn_calls(&alice, "hold", 100);
    // 90 are refused at once, while 10 run.
    for reply in next_replies(&mut set, 90).await {
        assert_eq!(reply.status, 200);
        assert_too_many(&reply, "caller", 10);
    }
    assert_eq!(calls.running.load(Ordering::SeqCst), 10);
    // Another caller is not affected.
    let bob = Arc::new(Mcp::new(
        &served.url,
        Cred::ApiKey(BOB.into()),
        Version::V2025_06_18,
    ));
    let mut bobs = spawn_calls(&bob, "hold", 1);
    until("bob's call runs", || {
        calls.running.load(Ordering::SeqCst) == 11
    })
    .await;
    calls.release.add_permits(11);
    while let Some(reply) = set.join_next().await {
        assert_eq!(reply.unwrap().text(), "done");
    }
    assert_eq!(bobs.join_next().await.unwrap().unwrap().text(), "done");
    assert_eq!(calls.peak.load(Ordering::SeqCst), 11);
    // Finished calls gave their places back: ten more run at once.
    let mut again = spawn_calls(&alice, "hold", 10);
    until("ten more run", || {
        calls.running.load(Ordering::SeqCst) == 10
    })
    .await;
    calls.release.add_permits(10);
    while let Some(reply) = again.join_next().await {
        assert_eq!(reply.unwrap().text(), "done");
    }
    assert_eq!(calls.finished.load(Ordering::SeqCst), 21);
    // Audited (a flood of refusals from one address is sampled: the first ones are written).
    assert!(served.audited("too_many_calls").await > 0);
    served.stop().await;
}

#[tokio::test]
async fn a_tool_limit_holds_for_each_caller() {
    let held = Held::default();
    let calls = held.0.clone();
    let served = Served::start("tool", Gatekeeper::new(held).authenticate(keys())).await;
    // In a session: each call answered on its own event stream.
    let alice = Arc::new(
        Mcp::connect(
            &served.url,
            Cred::ApiKey(ALICE.into()),
            Version::V2025_11_25,
        )
        .await,
    );
    let mut set = spawn_calls(&alice, "narrow", 20);
    for reply in next_replies(&mut set, 18).await {
        assert_too_many(&reply, "tool", 2);
        let message = reply.error()["message"].as_str().unwrap();
        assert!(message.contains("`narrow`"), "{message}");
    }
    assert_eq!(calls.running.load(Ordering::SeqCst), 2);
    // The tool's limit is per caller; and the caller may still call other tools.
    let bob =
        Arc::new(Mcp::connect(&served.url, Cred::ApiKey(BOB.into()), Version::V2025_11_25).await);
    let mut others = spawn_calls(&bob, "narrow", 2);
    let mut more = spawn_calls(&alice, "hold", 1);
    until("bob's calls and alice's other call run", || {
        calls.running.load(Ordering::SeqCst) == 5
    })
    .await;
    calls.release.add_permits(5);
    for set in [&mut set, &mut others, &mut more] {
        while let Some(reply) = set.join_next().await {
            assert_eq!(reply.unwrap().text(), "done");
        }
    }
    served.stop().await;
}

#[tokio::test]
async fn with_the_defaults_a_caller_runs_32_calls_and_hears_why_the_others_wait() {
    let held = Held::default();
    let calls = held.0.clone();
    let served = Served::start("defaults", Gatekeeper::new(held).authenticate(keys())).await;
    let alice = Arc::new(
        Mcp::connect(
            &served.url,
            Cred::ApiKey(ALICE.into()),
            Version::V2025_11_25,
        )
        .await,
    );
    let mut set = spawn_calls(&alice, "hold", 100);
    // 32 calls run; the 68 others are refused by the tool guard with the limit, on the event
    // streams that answer them (streams answering requests are counted, never refused).
    let replies = next_replies(&mut set, 68).await;
    for reply in &replies {
        assert_too_many(reply, "caller", 32);
    }
    assert_eq!(calls.running.load(Ordering::SeqCst), 32);
    calls.release.add_permits(32);
    while let Some(reply) = set.join_next().await {
        assert_eq!(reply.unwrap().text(), "done");
    }
    // Every stream that ended gave its place back: more calls than the limit, one after the
    // other, in the same session.
    calls.release.add_permits(100);
    for _ in 0..100 {
        assert_eq!(alice.call("hold", json!({})).await.text(), "done");
    }
    served.stop().await;
}

/// Sends `tools/call` of `hold` with request id `id` in `mcp`'s session, without waiting for
/// the answer: the response, whose body is not read yet.
async fn start_call(mcp: &Mcp, id: u64) -> reqwest::Response {
    mcp.http
        .post(&mcp.url)
        .headers(mcp.base_headers(Some(("tools/call", Some("hold")))))
        .body(
            json!({
                "jsonrpc": "2.0", "id": id, "method": "tools/call",
                "params": { "name": "hold", "arguments": {} },
            })
            .to_string(),
        )
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_cancelled_call_gives_its_place_back() {
    let held = Held::default();
    let calls = held.0.clone();
    let served = Served::start(
        "cancel",
        Gatekeeper::new(held)
            .authenticate(keys())
            .calls_per_caller(1),
    )
    .await;
    let alice = Mcp::connect(
        &served.url,
        Cred::ApiKey(ALICE.into()),
        Version::V2025_11_25,
    )
    .await;
    let pending = start_call(&alice, 77).await;
    assert_eq!(pending.status(), 200);
    until("the call runs", || {
        calls.running.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_too_many(&alice.call("hold", json!({})).await, "caller", 1);
    let note = alice
        .post(
            json!({
                "jsonrpc": "2.0", "method": "notifications/cancelled",
                "params": { "requestId": 77, "reason": "the user gave up" },
            }),
            None,
        )
        .await;
    assert_eq!(note.status, 202, "{note:#?}");
    // The tool's future is dropped (its work stops) and the place is free again.
    until("the call stops", || {
        calls.stopped.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(calls.running.load(Ordering::SeqCst), 0);
    let mut next = spawn_calls(&Arc::new(alice), "hold", 1);
    until("the next call runs", || {
        calls.running.load(Ordering::SeqCst) == 1
    })
    .await;
    calls.release.add_permits(1);
    assert_eq!(next.join_next().await.unwrap().unwrap().text(), "done");
    drop(pending);
    served.stop().await;
}

#[tokio::test]
async fn a_disconnected_client_gives_its_place_back() {
    for stateless in [false, true] {
        let held = Held::default();
        let calls = held.0.clone();
        let gatekeeper = Gatekeeper::new(held)
            .authenticate(keys())
            .calls_per_caller(1);
        let gatekeeper = if stateless {
            gatekeeper.stateless()
        } else {
            gatekeeper
        };
        let served = Served::start(
            if stateless {
                "disconnect-stateless"
            } else {
                "disconnect"
            },
            gatekeeper,
        )
        .await;
        let alice = Mcp::connect(
            &served.url,
            Cred::ApiKey(ALICE.into()),
            Version::V2025_11_25,
        )
        .await;
        // The client gives up on the call: its connection closes before the answer.
        let http = reqwest::Client::new();
        let abandoned = {
            let request = http
                .post(&alice.url)
                .headers(alice.base_headers(Some(("tools/call", Some("hold")))))
                .body(
                    json!({
                        "jsonrpc": "2.0", "id": 5, "method": "tools/call",
                        "params": { "name": "hold", "arguments": {} },
                    })
                    .to_string(),
                );
            tokio::spawn(async move {
                // In a session the answer is an event stream that is open at once; without
                // one the answer is the reply itself. Either way the client stops waiting.
                if let Ok(response) = request.send().await {
                    let _ = tokio::time::timeout(Duration::from_secs(60), response.bytes()).await;
                }
            })
        };
        until("the call runs", || {
            calls.running.load(Ordering::SeqCst) == 1
        })
        .await;
        assert_too_many(&alice.call("hold", json!({})).await, "caller", 1);
        abandoned.abort();
        drop(http);
        until("the abandoned call stops", || {
            calls.stopped.load(Ordering::SeqCst) == 1
        })
        .await;
        let mut next = spawn_calls(&Arc::new(alice), "hold", 1);
        until("the next call runs", || {
            calls.running.load(Ordering::SeqCst) == 1
        })
        .await;
        calls.release.add_permits(1);
        assert_eq!(next.join_next().await.unwrap().unwrap().text(), "done");
        served.stop().await;
    }
}

/// Opens the standalone event stream of `mcp`'s session: the response, status read.
async fn open_stream(mcp: &Mcp) -> reqwest::Response {
    let mut headers = mcp.base_headers(None);
    headers.insert("accept", "text/event-stream".parse().unwrap());
    headers.remove("content-type");
    mcp.http
        .get(&mcp.url)
        .headers(headers)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn open_streams_of_one_caller_are_bounded() {
    let served = Served::start(
        "streams",
        Gatekeeper::new(Held::default())
            .authenticate(keys())
            .streams_per_caller(3),
    )
    .await;
    let alice = Mcp::connect(
        &served.url,
        Cred::ApiKey(ALICE.into()),
        Version::V2025_11_25,
    )
    .await;
    let mut open = Vec::new();
    for _ in 0..3 {
        let stream = open_stream(&alice).await;
        assert_eq!(stream.status(), 200);
        open.push(stream);
    }
    let refused = open_stream(&alice).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "too_many_streams", "{body}");
    assert!(
        body["error_description"].as_str().unwrap().contains('3'),
        "names the limit: {body}"
    );
    // Requests are still answered: only new standalone streams are refused.
    assert_eq!(alice.request("tools/list", json!({})).await.status, 200);
    // Another caller is not affected.
    let bob = Mcp::connect(&served.url, Cred::ApiKey(BOB.into()), Version::V2025_11_25).await;
    assert_eq!(open_stream(&bob).await.status(), 200);
    // A stream the client closes gives its place back.
    drop(open.pop());
    let mut reopened = None;
    for _ in 0..100 {
        let stream = open_stream(&alice).await;
        if stream.status() == 200 {
            reopened = Some(stream);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(reopened.is_some(), "the closed stream's place came back");
    assert!(served.audited("stream_limit").await >= 1);
    drop(open);
    served.stop().await;
}

#[tokio::test]
async fn limits_of_zero_fail_the_build() {
    let calls = Gatekeeper::new(Held::default())
        .authenticate(keys())
        .calls_per_caller(0)
        .bind("127.0.0.1:0")
        .await;
    let Err(error) = calls else {
        panic!("a limit of zero calls was accepted");
    };
    assert!(error.to_string().contains("calls_per_caller"), "{error}");
    let streams = Gatekeeper::new(Held::default())
        .authenticate(keys())
        .streams_per_caller(0)
        .bind("127.0.0.1:0")
        .await;
    let Err(error) = streams else {
        panic!("a limit of zero streams was accepted");
    };
    assert!(error.to_string().contains("streams_per_caller"), "{error}");
    let layer = GatekeeperLayer::builder()
        .authenticate(keys())
        .streams_per_caller(0)
        .build();
    assert!(layer.is_err());
}
