//! Notifications: the events people must hear of (a failover, a fence, an RPO breached or
//! restored, a failed backup, a drill's verdict, a workspace taken back or given back) sent to
//! the receivers the spec declares (`notifications:`) — a webhook of resurgo's own JSON signed
//! with HMAC-SHA256, Alertmanager's v2 API, or a Slack-compatible incoming webhook.
//!
//! The event log is the source and the record. A site daemon runs [`run`] on a thread of its
//! own; it delivers the events of its state folder's log, so each is delivered once: on its
//! own host a daemon's log holds what happened there, and the daemons that share one state
//! folder (`controller --agents`) share one log, which only the one holding
//! `<state>/notify/lock` delivers (another takes over if it stops). Each receiver has its own
//! queue (`queue.rs`, pure: filter, de-duplication, back-off, give-up) and its own cursor on
//! disk (`<state>/notify/<receiver>.cursor`: the offset in the log of the first event not yet
//! delivered nor given up), so a restart re-reads what was pending and loses nothing — at the
//! cost of sending again one that was delivered just before the process died (at least once;
//! the `X-Resurgo-Delivery` id / the `delivery` field is the same each time). A receiver newly
//! declared starts at the end of the log.
//!
//! Every outcome is written to the event log: `notification_delivered`,
//! `notification_failed` (an attempt failed; tried again after 1 s, doubling, at most 60 s),
//! `notification_undelivered` (given up: older than the receiver's `give_up_after`, or refused
//! for good by a 4xx answer), the last holding the body that would have been sent. They name
//! the receiver, never its URL or key, which are read from their secret references at each
//! attempt and appear nowhere else. `/metrics` counts them (`metrics.rs`).
//!
//! One thread sends to every receiver of the folder in turn, each request bounded by
//! [`REQUEST_TIMEOUT`]: a receiver that does not answer delays the others by that much per
//! attempt.

mod payload;
mod queue;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use nix::fcntl::{Flock, FlockArg};
use resurgo_spec::{PlainOrSecret, Receiver, ReceiverKind};

use crate::daemon::SiteContext;
use crate::events::{Event, EventKind, EventLog, NotificationRecord, Tail};

pub use payload::{alertname, signature, WEBHOOK_SCHEMA};
pub use queue::{backoff, notifiable, MAX_BACKOFF};
use queue::{AfterFailure, Outbox, Pending};

/// The longest one request to a receiver may take, connection included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Time between two rounds (new events read, due notifications sent).
const ROUND: Duration = Duration::from_millis(250);

/// Why one attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The receiver could not be reached, timed out or answered 5xx, 408 or 429; or a secret
    /// could not be read. Trying again can help.
    #[error("{0}")]
    Transient(String),
    /// The receiver answered 4xx: it will never take this notification. Not retried.
    #[error("{0}")]
    Refused(String),
}

/// The folder of the cursors and the lock (`<state>/notify`).
pub fn notify_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("notify")
}

/// Delivers the notifications of the context's state folder until `stop`, when this daemon
/// holds the folder's lock (see the module's documentation); else waits for it.
pub fn run(context: &SiteContext, stop: &AtomicBool) {
    let mut worker: Option<Worker> = None;
    while !stop.load(Ordering::Relaxed) {
        // Nothing to send, nothing to hold: the lock (and `<state>/notify/`) only once the
        // spec declares a receiver.
        let declared = context
            .spec()
            .is_some_and(|s| !s.loaded.system.notifications.is_empty());
        if worker.is_none() && declared {
            worker = Worker::take(context);
        }
        if let Some(w) = worker.as_mut() {
            w.round(context, stop);
        }
        // Paced by the stop flag, not slept through: a stopping daemon is not held up.
        let until = std::time::Instant::now() + ROUND;
        while std::time::Instant::now() < until && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// One receiver being delivered to.
struct Receiving {
    spec: Receiver,
    outbox: Outbox,
    tail: Tail,
    /// The cursor as last written.
    saved: u64,
}

/// The state folder's deliverer: holds its lock while it lives.
struct Worker {
    _lock: Flock<std::fs::File>,
    dir: PathBuf,
    log: EventLog,
    http: Option<reqwest::blocking::Client>,
    receivers: BTreeMap<String, Receiving>,
}

impl Worker {
    /// The deliverer, if no other process or thread of this state folder is.
    fn take(context: &SiteContext) -> Option<Worker> {
        let dir = notify_dir(context.state_dir());
        resurgo_provider::private_dir(&dir).ok()?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("lock"))
            .ok()?;
        let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock).ok()?;
        tracing::debug!(site = context.site(), "delivering this state folder's notifications");
        Some(Worker {
            _lock: lock,
            dir,
            log: context.event_log(),
            http: None,
            receivers: BTreeMap::new(),
        })
    }

    fn cursor_path(&self, receiver: &str) -> PathBuf {
        self.dir.join(format!("{receiver}.cursor"))
    }

    /// Follows the spec's receivers: one new starts at the end of the log (or where its
    /// cursor says, after a restart); one gone is forgotten, its cursor with it.
    fn follow(&mut self, declared: &indexmap::IndexMap<String, Receiver>) {
        let gone: Vec<String> = self
            .receivers
            .keys()
            .filter(|n| !declared.contains_key(*n))
            .cloned()
            .collect();
        for name in gone {
            self.receivers.remove(&name);
            let _ = std::fs::remove_file(self.cursor_path(&name));
        }
        for (name, spec) in declared {
            if let Some(r) = self.receivers.get_mut(name) {
                if &r.spec != spec {
                    r.outbox.configure(spec);
                    r.spec = spec.clone();
                }
                continue;
            }
            let path = self.cursor_path(name);
            let tail = match read_cursor(&path) {
                Some(offset) => Tail::at(self.log.path().to_path_buf(), offset),
                None => Tail::of_log_from_end(&self.log),
            };
            let saved = tail.offset();
            if let Err(e) = write_cursor(&path, saved) {
                tracing::warn!(receiver = %name, "cannot keep the notification cursor: {e}");
            }
            self.receivers.insert(
                name.clone(),
                Receiving {
                    spec: spec.clone(),
                    outbox: Outbox::new(spec),
                    tail,
                    saved,
                },
            );
        }
    }

    fn round(&mut self, context: &SiteContext, stop: &AtomicBool) {
        let Some(spec) = context.spec() else { return };
        let system = &spec.loaded.system;
        self.follow(&system.notifications);
        if self.receivers.is_empty() {
            return;
        }
        if self.http.is_none() {
            self.http = client()
                .map_err(|e| tracing::warn!("cannot make the notifications' HTTP client: {e}"))
                .ok();
        }
        let Some(http) = self.http.clone() else { return };
        let names: Vec<String> = self.receivers.keys().cloned().collect();
        for name in names {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let r = self.receivers.get_mut(&name).expect("a receiver just listed");
            let now = unix_now();
            for (offset, event) in r.tail.new_events_at() {
                r.outbox.offer(offset, &event, now);
            }
            r.outbox.close_windows(now);
            // What is due, in order, until one fails (then its receiver backs off).
            while let Some(p) = r.outbox.next(unix_now()) {
                let delivery = delivery_id(&name, &p);
                let sent = send(&http, &system.name, &name, &r.spec, &delivery, &p);
                let record = |kind, error: Option<String>, payload| {
                    let event = Event::new(kind, describe(kind, &name, &p, error.as_deref())).site(context.site());
                    Event {
                        notification: Some(NotificationRecord {
                            receiver: name.clone(),
                            event: p.event.kind,
                            delivery: delivery.clone(),
                            count: p.count,
                            attempts: p.attempts,
                            error,
                            payload,
                        }),
                        ..event
                    }
                };
                let mut records = Vec::new();
                let failed = match sent {
                    Ok(()) => {
                        r.outbox.delivered();
                        records.push(record(EventKind::NotificationDelivered, None, None));
                        false
                    }
                    Err(e) => {
                        let refused = matches!(e, DeliveryError::Refused(_));
                        match r.outbox.failed(unix_now(), refused) {
                            AfterFailure::Retry(wait) => records.push(record(
                                EventKind::NotificationFailed,
                                Some(format!("{e}; tried again in {}s", wait.as_secs())),
                                None,
                            )),
                            AfterFailure::GiveUp(given) => {
                                for g in given {
                                    let delivery = delivery_id(&name, &g);
                                    let event = Event::new(
                                        EventKind::NotificationUndelivered,
                                        describe(EventKind::NotificationUndelivered, &name, &g, Some(&e.to_string())),
                                    )
                                    .site(context.site());
                                    records.push(Event {
                                        notification: Some(NotificationRecord {
                                            receiver: name.clone(),
                                            event: g.event.kind,
                                            delivery: delivery.clone(),
                                            count: g.count,
                                            attempts: g.attempts,
                                            error: Some(e.to_string()),
                                            payload: Some(body(&system.name, &name, &r.spec, &delivery, &g)),
                                        }),
                                        ..event
                                    });
                                }
                            }
                        }
                        true
                    }
                };
                for event in &records {
                    event.log(false);
                    if let Err(e) = self.log.append(event) {
                        tracing::warn!(receiver = %name, "cannot record the notification in the event log: {e}");
                    }
                }
                if failed || stop.load(Ordering::Relaxed) {
                    break;
                }
            }
            // Forward only once what is before it is delivered or recorded undelivered.
            let cursor = r.outbox.cursor(r.tail.offset());
            if cursor != r.saved {
                match write_cursor(&self.dir.join(format!("{name}.cursor")), cursor) {
                    Ok(()) => r.saved = cursor,
                    Err(e) => tracing::warn!(receiver = %name, "cannot keep the notification cursor: {e}"),
                }
            }
        }
    }
}

/// The body a receiver is sent for `p` (also what an undelivered record keeps).
fn body(system: &str, name: &str, spec: &Receiver, delivery: &str, p: &Pending) -> serde_json::Value {
    match spec.kind {
        ReceiverKind::Webhook => payload::webhook(system, name, delivery, p),
        ReceiverKind::Alertmanager => payload::alertmanager(system, delivery, p),
        ReceiverKind::Slack => payload::slack(system, p),
    }
}

/// One attempt: the body POSTed to the receiver's URL (Alertmanager's `/api/v2/alerts`
/// under it), a webhook's signed. Errors never carry the URL.
fn send(
    http: &reqwest::blocking::Client,
    system: &str,
    name: &str,
    spec: &Receiver,
    delivery: &str,
    p: &Pending,
) -> Result<(), DeliveryError> {
    let secret = |what: &str, r: &resurgo_spec::SecretRef| {
        resurgo_provider::read_secret(r).map_err(|e| DeliveryError::Transient(format!("its {what}: {e}")))
    };
    let mut url = match &spec.url {
        PlainOrSecret::Plain(url) => url.clone(),
        PlainOrSecret::Secret { secret: r } => secret("URL", r)?,
    };
    if spec.kind == ReceiverKind::Alertmanager {
        url = format!("{}/api/v2/alerts", url.trim_end_matches('/'));
    }
    let body = serde_json::to_vec(&body(system, name, spec, delivery, p)).expect("bodies serialize");
    let mut request = http
        .post(&url)
        .header("content-type", "application/json")
        .header("user-agent", concat!("resurgo/", env!("CARGO_PKG_VERSION")));
    if spec.kind == ReceiverKind::Webhook {
        let key = match &spec.hmac_key {
            Some(r) => secret("HMAC key", r)?,
            None => return Err(DeliveryError::Refused("it has no hmac_key".into())),
        };
        let timestamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        request = request
            .header("x-resurgo-event", p.event.kind.to_string())
            .header("x-resurgo-delivery", delivery)
            .header("x-resurgo-timestamp", timestamp.to_string())
            .header(
                "x-resurgo-signature",
                payload::signature(key.as_bytes(), timestamp, &body),
            );
    }
    let answer = request
        .body(body)
        .send()
        .map_err(|e| DeliveryError::Transient(without_url(e)))?;
    let status = answer.status();
    if status.is_success() {
        return Ok(());
    }
    // A few words of the answer help; they are the receiver's, not a secret of ours.
    let said: String = answer.text().unwrap_or_default().chars().take(200).collect();
    let why = format!(
        "answered HTTP {}{}",
        status.as_u16(),
        if said.trim().is_empty() {
            String::new()
        } else {
            format!(": {}", said.trim())
        }
    );
    if status.is_client_error() && status.as_u16() != 408 && status.as_u16() != 429 {
        Err(DeliveryError::Refused(why))
    } else {
        Err(DeliveryError::Transient(why))
    }
}

/// A request's error without its URL (a Slack webhook's is its credential): the error and
/// its causes.
fn without_url(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

/// The HTTP client: reqwest's blocking client (rustls over ring, the system's roots; the
/// environment's proxy settings), no redirects followed.
fn client() -> Result<reqwest::blocking::Client, reqwest::Error> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .timeout(REQUEST_TIMEOUT)
        .build()
}

/// The id of one notification, the same at every attempt and after a restart: from the
/// receiver, and the place and time of the first event it stands for.
fn delivery_id(receiver: &str, p: &Pending) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{receiver}\n{}\n{}", p.offset, p.first_time));
    digest[..12].iter().map(|b| format!("{b:02x}")).collect()
}

/// The record's message: the receiver by name, what was notified, and how it went.
fn describe(kind: EventKind, receiver: &str, p: &Pending, error: Option<&str>) -> String {
    let what = format!(
        "{}{}{}",
        p.event.kind,
        p.event.site.as_deref().map(|s| format!(" at {s}")).unwrap_or_default(),
        if p.count > 1 {
            format!(" (×{})", p.count)
        } else {
            String::new()
        }
    );
    let attempts = if p.attempts == 1 {
        "1 attempt".to_string()
    } else {
        format!("{} attempts", p.attempts)
    };
    match (kind, error) {
        (EventKind::NotificationDelivered, _) => format!("receiver `{receiver}`: {what} delivered ({attempts})"),
        (EventKind::NotificationUndelivered, e) => format!(
            "receiver `{receiver}`: {what} undelivered after {attempts}: {}",
            e.unwrap_or("given up")
        ),
        (_, e) => format!(
            "receiver `{receiver}`: {what} not delivered ({attempts}): {}",
            e.unwrap_or("failed")
        ),
    }
}

fn read_cursor(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Written whole (temporary file, fsync, rename): a crash leaves the old cursor or the new.
fn write_cursor(path: &Path, offset: u64) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("cursor.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(format!("{offset}\n").as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
