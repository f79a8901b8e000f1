//! What each kind of receiver is sent for one notification, as plain data: resurgo's own
//! JSON for a webhook (and its HMAC-SHA256 signature), an Alertmanager v2 alert list, a Slack
//! message. No I/O.
//!
//! The webhook's signature (documented in `docs/deployment.md`, "Notifications"): header
//! `X-Resurgo-Signature: sha256=<hex>`, the HMAC-SHA256 under the receiver's `hmac_key` of
//! `<X-Resurgo-Timestamp>.<body>` — the timestamp (Unix seconds of the attempt) is signed with
//! the body so that a receiver can refuse a replayed request by its age.

use hmac::{KeyInit, Mac};
use resurgo_spec::NotifyEvent;
use serde_json::{json, Value};

use super::queue::{resolves, Pending};

/// The version of the webhook's JSON (`schema` in every body).
pub const WEBHOOK_SCHEMA: &str = "resurgo.notification/v1";

/// How long an Alertmanager alert that something else ends (an RPO breach, a preemption, a
/// failover under way) is held firing when nothing ends it; other alerts end when
/// Alertmanager's `resolve_timeout` passes, as alerts sent once do.
pub const HELD_FIRING: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// The webhook's body.
pub fn webhook(system: &str, receiver: &str, delivery: &str, p: &Pending) -> Value {
    json!({
        "schema": WEBHOOK_SCHEMA,
        "delivery": delivery,
        "system": system,
        "receiver": receiver,
        "event": p.event,
        "count": p.count,
        "first_time": p.first_time,
        "last_time": p.last_time,
    })
}

/// `sha256=<hex>`: the HMAC-SHA256 under `key` of `<timestamp>.<body>`.
pub fn signature(key: &[u8], timestamp: u64, body: &[u8]) -> String {
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex(&mac.finalize().into_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How bad a kind is, as Alertmanager's `severity` label.
fn severity(kind: NotifyEvent) -> &'static str {
    use NotifyEvent::*;
    match kind {
        FailoverStarted | FailoverFailed | Fenced | RpoBreached => "critical",
        BackupFailed | DrillFailed | WorkspacePreempted => "warning",
        FailoverFinished | RpoRestored | DrillPassed | WorkspaceRestored => "info",
    }
}

/// `ResurgoFailoverStarted` for `failover_started`.
pub fn alertname(kind: NotifyEvent) -> String {
    let camel: String = kind
        .as_str()
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map_or(String::new(), |f| f.to_ascii_uppercase().to_string() + c.as_str())
        })
        .collect();
    format!("Resurgo{camel}")
}

/// The alerts for Alertmanager's `POST /api/v2/alerts`: one firing alert named after the kind
/// (labels `alertname`, `system`, `site`, `service`, `dataset` where the event has them,
/// `severity`), and — for a kind that ends a trouble — that trouble's alert, with the same
/// labels, resolved (`endsAt` the event's time). `rpo_restored` and `workspace_restored` only
/// resolve. An alert that something ends is held firing for [`HELD_FIRING`].
pub fn alertmanager(system: &str, delivery: &str, p: &Pending) -> Value {
    let kind = p.subject.kind;
    let labels = |kind: NotifyEvent| {
        let mut l = serde_json::Map::new();
        l.insert("alertname".into(), alertname(kind).into());
        l.insert("system".into(), system.into());
        for (k, v) in [
            ("site", &p.event.site),
            ("service", &p.event.service),
            ("dataset", &p.event.dataset),
        ] {
            if let Some(v) = v {
                l.insert(k.into(), v.as_str().into());
            }
        }
        l.insert("severity".into(), severity(kind).into());
        Value::Object(l)
    };
    let annotations = json!({
        "summary": format!("{}{}: {}", kind.as_str(), p.event.site.as_deref().map(|s| format!(" at {s}")).unwrap_or_default(), p.event.message),
        "count": p.count.to_string(),
        "first_time": p.first_time,
        "last_time": p.last_time,
        "delivery": delivery,
    });
    let mut alerts = Vec::new();
    if let Some(trouble) = resolves(kind) {
        alerts.push(json!({
            "labels": labels(trouble),
            "annotations": annotations,
            "endsAt": p.last_time,
        }));
    }
    if !matches!(kind, NotifyEvent::RpoRestored | NotifyEvent::WorkspaceRestored) {
        let mut alert = json!({
            "labels": labels(kind),
            "annotations": annotations,
            "startsAt": p.first_time,
        });
        let held = [
            NotifyEvent::RpoBreached,
            NotifyEvent::WorkspacePreempted,
            NotifyEvent::FailoverStarted,
        ];
        if held.contains(&kind) {
            if let Ok(start) = resurgo_spec::units::parse_rfc3339(&p.first_time) {
                let until = std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(start.max(0.0)) + HELD_FIRING;
                alert["endsAt"] = crate::events::format_rfc3339(until).into();
            }
        }
        alerts.push(alert);
    }
    Value::Array(alerts)
}

/// The Slack message: one line of text (`mrkdwn`, its `&`, `<` and `>` escaped).
pub fn slack(system: &str, p: &Pending) -> Value {
    let icon = match severity(p.subject.kind) {
        "critical" => ":rotating_light:",
        "warning" => ":warning:",
        _ => ":information_source:",
    };
    let at = p.event.site.as_deref().map(|s| format!(" at {s}")).unwrap_or_default();
    let times = if p.count > 1 {
        format!(" (×{}, {} to {})", p.count, p.first_time, p.last_time)
    } else {
        format!(" ({})", p.first_time)
    };
    let text = format!(
        "{icon} *resurgo {}*: {}{at}: {}{times}",
        escape(system),
        p.subject.kind.as_str(),
        escape(&p.event.message)
    );
    json!({ "text": text })
}

/// Slack's three control characters, as its `mrkdwn` wants them.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Event, EventKind};

    fn pending(kind: EventKind, count: u32) -> Pending {
        let receiver: resurgo_spec::Receiver =
            serde_json::from_value(json!({"kind": "alertmanager", "url": "http://x", "dedupe_window": "0s"})).unwrap();
        let mut out = super::super::queue::Outbox::new(&receiver);
        let mut e = Event::new(kind, "a is dead: moving site-a here <now> & then").site("b");
        e.time = "2026-03-01T10:00:00.000Z".into();
        out.offer(0, &e, 0.0);
        let mut p = out.next(0.0).unwrap();
        p.count = count;
        p
    }

    /// RFC 4231, test case 2: key "Jefe", data "what do ya want for nothing?".
    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex(&mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn the_signature_covers_the_timestamp_and_the_body() {
        let s = signature(b"k", 1_700_000_000, b"{}");
        assert!(s.starts_with("sha256=") && s.len() == 7 + 64, "{s}");
        assert_ne!(s, signature(b"k", 1_700_000_001, b"{}"), "another time");
        assert_ne!(s, signature(b"k", 1_700_000_000, b"{ }"), "another body");
        assert_ne!(s, signature(b"l", 1_700_000_000, b"{}"), "another key");
        // What a receiver computes: HMAC over "<timestamp>.<body>" in one piece.
        let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(b"k").unwrap();
        mac.update(b"1700000000.{}");
        assert_eq!(s, format!("sha256={}", hex(&mac.finalize().into_bytes())));
    }

    #[test]
    fn the_webhook_body_is_the_event_with_its_count() {
        let body = webhook("shop", "oncall", "d1", &pending(EventKind::FailoverStarted, 3));
        assert_eq!(body["schema"], WEBHOOK_SCHEMA);
        assert_eq!(body["event"]["kind"], "failover_started");
        assert_eq!(body["event"]["site"], "b");
        assert_eq!(
            (&body["count"], &body["receiver"], &body["delivery"]),
            (&json!(3), &json!("oncall"), &json!("d1"))
        );
    }

    #[test]
    fn an_alert_is_named_after_its_kind_and_a_resolution_ends_its_trouble() {
        assert_eq!(alertname(NotifyEvent::FailoverStarted), "ResurgoFailoverStarted");
        assert_eq!(alertname(NotifyEvent::RpoBreached), "ResurgoRpoBreached");
        let started = alertmanager("shop", "d1", &pending(EventKind::FailoverStarted, 1));
        assert_eq!(started.as_array().unwrap().len(), 1);
        let alert = &started[0];
        assert_eq!(
            alert["labels"],
            json!({"alertname": "ResurgoFailoverStarted", "system": "shop", "site": "b", "severity": "critical"})
        );
        assert_eq!(alert["startsAt"], "2026-03-01T10:00:00.000Z");
        assert_eq!(
            alert["endsAt"], "2026-03-02T10:00:00.000Z",
            "held firing until finished"
        );
        assert_eq!(alert["annotations"]["count"], "1");

        let finished = alertmanager("shop", "d2", &pending(EventKind::FailoverFinished, 1));
        let alerts = finished.as_array().unwrap();
        assert_eq!(alerts[0]["labels"]["alertname"], "ResurgoFailoverStarted");
        assert_eq!(alerts[0]["endsAt"], "2026-03-01T10:00:00.000Z", "resolved");
        assert_eq!(alerts[1]["labels"]["alertname"], "ResurgoFailoverFinished");
        assert!(
            alerts[1].get("endsAt").is_none(),
            "ends by Alertmanager's resolve_timeout"
        );

        let restored = alertmanager("shop", "d3", &pending(EventKind::RpoRestored, 1));
        assert_eq!(restored.as_array().unwrap().len(), 1, "only resolves");
        assert_eq!(restored[0]["labels"]["alertname"], "ResurgoRpoBreached");
    }

    #[test]
    fn a_slack_message_is_escaped_text() {
        let text = slack("shop", &pending(EventKind::Fenced, 2))["text"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(
            text,
            ":rotating_light: *resurgo shop*: fenced at b: a is dead: moving site-a here &lt;now&gt; &amp; then (×2, 2026-03-01T10:00:00.000Z to 2026-03-01T10:00:00.000Z)"
        );
    }
}
