//! The pure part of delivery, one receiver at a time ([`Outbox`]): which events it is sent,
//! how a burst of one event is folded into one notification, when a failed one is tried again
//! and when it is given up, and from where the event log must be read again after a restart.
//! No I/O and no clock: times (Unix seconds) are handed in.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use resurgo_spec::{NotifyEvent, Receiver};

use crate::events::{Event, EventKind};

/// The longest wait between two attempts at a receiver.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The kind a receiver can ask for, of an event kind that is one.
pub fn notifiable(kind: EventKind) -> Option<NotifyEvent> {
    use EventKind as K;
    use NotifyEvent as N;
    Some(match kind {
        K::FailoverStarted => N::FailoverStarted,
        K::FailoverFinished => N::FailoverFinished,
        K::FailoverFailed => N::FailoverFailed,
        K::Fenced => N::Fenced,
        K::RpoBreached => N::RpoBreached,
        K::RpoRestored => N::RpoRestored,
        K::BackupFailed => N::BackupFailed,
        K::DrillPassed => N::DrillPassed,
        K::DrillFailed => N::DrillFailed,
        K::WorkspacePreempted => N::WorkspacePreempted,
        K::WorkspaceRestored => N::WorkspaceRestored,
        _ => return None,
    })
}

/// The trouble a kind ends: a restored RPO ends its breach, a restored workspace its
/// preemption, a finished failover its start.
pub fn resolves(kind: NotifyEvent) -> Option<NotifyEvent> {
    match kind {
        NotifyEvent::RpoRestored => Some(NotifyEvent::RpoBreached),
        NotifyEvent::WorkspaceRestored => Some(NotifyEvent::WorkspacePreempted),
        NotifyEvent::FailoverFinished => Some(NotifyEvent::FailoverStarted),
        _ => None,
    }
}

/// How long to wait after the `failures`-th failed attempt in a row: 1 s, doubling, at most
/// [`MAX_BACKOFF`].
pub fn backoff(failures: u32) -> Duration {
    let doubled = 1u64 << failures.saturating_sub(1).min(16);
    Duration::from_secs(doubled).min(MAX_BACKOFF)
}

/// What "the same event" means for de-duplication: its kind and what it is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Subject {
    pub kind: NotifyEvent,
    pub site: Option<String>,
    pub service: Option<String>,
    pub dataset: Option<String>,
}

impl Subject {
    fn of(kind: NotifyEvent, event: &Event) -> Subject {
        Subject {
            kind,
            site: event.site.clone(),
            service: event.service.clone(),
            dataset: event.dataset.clone(),
        }
    }
}

/// One notification not yet delivered nor given up.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub subject: Subject,
    /// The event shown: the first it stands for, or (repeats folded after one was sent) the
    /// newest.
    pub event: Event,
    /// How many events it stands for.
    pub count: u32,
    /// When the first and the newest of them happened (RFC 3339).
    pub first_time: String,
    pub last_time: String,
    /// Where the first of them starts in the event log.
    pub offset: u64,
    /// Attempts so far.
    pub attempts: u32,
    /// When (Unix seconds) the first of them happened, for the give-up rule.
    first_unix: f64,
}

impl Pending {
    fn new(subject: Subject, offset: u64, event: &Event, at: f64) -> Pending {
        Pending {
            subject,
            event: event.clone(),
            count: 1,
            first_time: event.time.clone(),
            last_time: event.time.clone(),
            offset,
            attempts: 0,
            first_unix: at,
        }
    }
}

/// The repeats of one subject within its window, after the first was queued.
#[derive(Debug, Clone)]
struct Window {
    /// When the event that opened it happened.
    opened: f64,
    /// The repeats folded since the notification that opened it was queued, as one
    /// notification; none yet.
    folded: Option<Pending>,
}

/// What a failed attempt leads to.
#[derive(Debug, PartialEq)]
pub enum AfterFailure {
    /// Tried again in this long.
    Retry(Duration),
    /// Given up: these notifications (the one attempted first) are undelivered.
    GiveUp(Vec<Pending>),
}

/// One receiver's queue, in the order the events happened.
#[derive(Debug)]
pub struct Outbox {
    events: Vec<NotifyEvent>,
    window: f64,
    give_up_after: f64,
    queue: VecDeque<Pending>,
    windows: HashMap<Subject, Window>,
    /// Failed attempts in a row, and when the next may be made.
    failures: u32,
    next_try: f64,
}

impl Outbox {
    pub fn new(receiver: &Receiver) -> Outbox {
        let mut outbox = Outbox {
            events: Vec::new(),
            window: 0.0,
            give_up_after: 0.0,
            queue: VecDeque::new(),
            windows: HashMap::new(),
            failures: 0,
            next_try: 0.0,
        };
        outbox.configure(receiver);
        outbox
    }

    /// Follows a change of the receiver's declaration; what is queued stays queued.
    pub fn configure(&mut self, receiver: &Receiver) {
        self.events = receiver.events().to_vec();
        self.window = receiver.dedupe_window().as_secs_f64();
        self.give_up_after = receiver.give_up_after().as_secs_f64();
    }

    /// Takes an event read from the log at `offset`; `now` stands in for a time that cannot
    /// be read.
    pub fn offer(&mut self, offset: u64, event: &Event, now: f64) {
        let Some(kind) = notifiable(event.kind).filter(|k| self.events.contains(k)) else {
            return;
        };
        let at = resurgo_spec::units::parse_rfc3339(&event.time).unwrap_or(now);
        let subject = Subject::of(kind, event);
        // The end of a trouble: what its burst folded goes first, and the next such trouble
        // is news again.
        if let Some(trouble) = resolves(kind) {
            let ended = Subject {
                kind: trouble,
                ..subject.clone()
            };
            if let Some(folded) = self.windows.remove(&ended).and_then(|w| w.folded) {
                self.queue.push_back(folded);
            }
        }
        if self.window > 0.0 {
            let window = self.window;
            // Not sent yet (and not ended since by a resolution queued after it): one more
            // event it stands for.
            let ends = |p: &Pending| {
                resolves(p.subject.kind) == Some(kind)
                    && Subject {
                        kind,
                        ..p.subject.clone()
                    } == subject
            };
            let queued = self
                .queue
                .iter_mut()
                .rev()
                .take_while(|p| !ends(p))
                .find(|p| p.subject == subject && at - p.first_unix < window);
            if let Some(queued) = queued {
                queued.count += 1;
                queued.last_time = event.time.clone();
                return;
            }
            if let Some(open) = self.windows.get_mut(&subject) {
                if at - open.opened < window {
                    match &mut open.folded {
                        Some(folded) => {
                            folded.count += 1;
                            folded.last_time = event.time.clone();
                            folded.event = event.clone();
                        }
                        None => open.folded = Some(Pending::new(subject, offset, event, at)),
                    }
                    return;
                }
                if let Some(folded) = self.windows.remove(&subject).and_then(|w| w.folded) {
                    self.queue.push_back(folded);
                }
            }
            self.windows.insert(
                subject.clone(),
                Window {
                    opened: at,
                    folded: None,
                },
            );
        }
        self.queue.push_back(Pending::new(subject, offset, event, at));
    }

    /// Windows closed by `now` queue what they folded, as one notification each.
    pub fn close_windows(&mut self, now: f64) {
        let window = self.window;
        let mut closed: Vec<(Subject, Window)> = Vec::new();
        self.windows.retain(|subject, w| {
            let open = now - w.opened < window;
            if !open {
                closed.push((subject.clone(), w.clone()));
            }
            open
        });
        closed.sort_by_key(|(_, w)| w.folded.as_ref().map(|f| f.offset));
        self.queue.extend(closed.into_iter().filter_map(|(_, w)| w.folded));
    }

    /// The notification to attempt now, its attempt counted; none while backing off.
    pub fn next(&mut self, now: f64) -> Option<Pending> {
        if now < self.next_try {
            return None;
        }
        let head = self.queue.front_mut()?;
        head.attempts += 1;
        Some(head.clone())
    }

    /// The notification [`Outbox::next`] gave was delivered.
    pub fn delivered(&mut self) -> Option<Pending> {
        self.failures = 0;
        self.next_try = 0.0;
        self.queue.pop_front()
    }

    /// The notification [`Outbox::next`] gave was not delivered at `now`. Refused for good
    /// (`permanent`: the receiver answered that it will never take it), it alone is given
    /// up. Else it is retried after the back-off — unless its first event is older than
    /// `give_up_after`: then it is given up, with every other one that old (its receiver
    /// has just been found down).
    pub fn failed(&mut self, now: f64, permanent: bool) -> AfterFailure {
        if permanent {
            return AfterFailure::GiveUp(self.queue.pop_front().into_iter().collect());
        }
        self.failures += 1;
        let wait = backoff(self.failures);
        self.next_try = now + wait.as_secs_f64();
        let too_old = |p: &Pending| now - p.first_unix >= self.give_up_after;
        if !self.queue.front().is_some_and(too_old) {
            return AfterFailure::Retry(wait);
        }
        let (old, young): (Vec<Pending>, Vec<Pending>) = self.queue.drain(..).partition(too_old);
        self.queue = young.into();
        AfterFailure::GiveUp(old)
    }

    /// Where the event log must be read from again after a restart so that nothing is lost:
    /// the first event not yet delivered nor given up (queued, or folded in an open window),
    /// else `read_to`, how far it has been read.
    pub fn cursor(&self, read_to: u64) -> u64 {
        self.queue
            .iter()
            .map(|p| p.offset)
            .chain(
                self.windows
                    .values()
                    .filter_map(|w| w.folded.as_ref().map(|f| f.offset)),
            )
            .min()
            .unwrap_or(read_to)
            .min(read_to)
    }

    /// Notifications waiting (queued; not those still folding in a window).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receiver(yaml: &str) -> Receiver {
        serde_json::from_value(serde_json::from_str::<serde_json::Value>(yaml).unwrap()).unwrap()
    }

    fn all() -> Receiver {
        receiver(r#"{"kind": "alertmanager", "url": "http://127.0.0.1:9093"}"#)
    }

    /// An event `secs` seconds past a fixed minute.
    fn at(kind: EventKind, secs: u32) -> Event {
        let mut e = Event::new(kind, "m").site("a").dataset("orders");
        e.time = format!("2026-03-01T10:{:02}:{:02}.000Z", secs / 60, secs % 60);
        e
    }

    fn unix(secs: u32) -> f64 {
        resurgo_spec::units::parse_rfc3339("2026-03-01T10:00:00Z").unwrap() + f64::from(secs)
    }

    #[test]
    fn only_the_kinds_a_receiver_asks_for_are_queued() {
        let mut out = Outbox::new(&receiver(
            r#"{"kind": "alertmanager", "url": "http://x", "events": ["failover_started"]}"#,
        ));
        out.offer(0, &at(EventKind::DriftSeen, 0), unix(0));
        out.offer(10, &at(EventKind::RpoBreached, 0), unix(0));
        out.offer(20, &at(EventKind::NotificationFailed, 0), unix(0));
        assert!(out.is_empty());
        out.offer(30, &at(EventKind::FailoverStarted, 0), unix(0));
        assert_eq!(out.len(), 1);
        // Every notable kind by default; never resurgo's own notification records.
        let mut out = Outbox::new(&all());
        for kind in [
            EventKind::Fenced,
            EventKind::DrillPassed,
            EventKind::NotificationUndelivered,
        ] {
            out.offer(0, &at(kind, 0), unix(0));
        }
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn a_burst_is_sent_once_with_its_count_and_what_follows_the_first_goes_after_the_window() {
        let mut out = Outbox::new(&all());
        // Queued, not yet sent: repeats add to it.
        out.offer(0, &at(EventKind::BackupFailed, 0), unix(0));
        out.offer(10, &at(EventKind::BackupFailed, 5), unix(5));
        let first = out.next(unix(5)).unwrap();
        assert_eq!((first.count, first.last_time.as_str()), (2, "2026-03-01T10:00:05.000Z"));
        out.delivered();
        // Sent: repeats within the window are folded into one, sent when the window closes.
        out.offer(20, &at(EventKind::BackupFailed, 20), unix(20));
        out.offer(30, &at(EventKind::BackupFailed, 40), unix(40));
        assert!(out.next(unix(40)).is_none(), "nothing before the window closes");
        assert_eq!(out.cursor(40), 20, "the folded repeats are not lost to a restart");
        out.close_windows(unix(60));
        let repeats = out.next(unix(60)).unwrap();
        assert_eq!(repeats.count, 2);
        assert_eq!(repeats.first_time, "2026-03-01T10:00:20.000Z");
        assert_eq!(repeats.event.time, "2026-03-01T10:00:40.000Z", "the newest is shown");
        out.delivered();
        // Past the window, the same event is news again; another subject always was.
        out.offer(40, &at(EventKind::BackupFailed, 61), unix(61));
        let mut other = at(EventKind::BackupFailed, 61);
        other.dataset = Some("notes".into());
        out.offer(50, &other, unix(61));
        assert_eq!(out.len(), 2);
        assert_eq!(out.cursor(60), 40);
    }

    #[test]
    fn a_zero_window_sends_every_event() {
        let mut out = Outbox::new(&receiver(
            r#"{"kind": "alertmanager", "url": "http://x", "dedupe_window": "0s"}"#,
        ));
        for i in 0..3 {
            out.offer(i, &at(EventKind::Fenced, 0), unix(0));
        }
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn a_resolution_sends_the_folded_trouble_first_and_makes_the_next_trouble_news() {
        let mut out = Outbox::new(&all());
        out.offer(0, &at(EventKind::RpoBreached, 0), unix(0));
        out.next(unix(0));
        out.delivered();
        out.offer(10, &at(EventKind::RpoBreached, 10), unix(10));
        out.offer(20, &at(EventKind::RpoRestored, 15), unix(15));
        out.offer(30, &at(EventKind::RpoBreached, 20), unix(20));
        let kinds: Vec<(NotifyEvent, u32)> = std::iter::from_fn(|| {
            let p = out.next(unix(20))?;
            out.delivered();
            Some((p.subject.kind, p.count))
        })
        .collect();
        assert_eq!(
            kinds,
            [
                (NotifyEvent::RpoBreached, 1),
                (NotifyEvent::RpoRestored, 1),
                (NotifyEvent::RpoBreached, 1)
            ]
        );
    }

    #[test]
    fn back_off_doubles_from_one_second_up_to_a_minute() {
        let waits: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn a_failed_notification_is_retried_after_the_back_off_then_given_up_with_everything_as_old() {
        let mut out = Outbox::new(&receiver(
            r#"{"kind": "alertmanager", "url": "http://x", "give_up_after": "10s", "dedupe_window": "0s"}"#,
        ));
        out.offer(0, &at(EventKind::FailoverStarted, 0), unix(0));
        out.offer(10, &at(EventKind::Fenced, 1), unix(1));
        out.offer(20, &at(EventKind::FailoverFinished, 9), unix(9));
        assert_eq!(out.next(unix(1)).unwrap().attempts, 1);
        assert_eq!(out.failed(unix(1), false), AfterFailure::Retry(Duration::from_secs(1)));
        assert!(out.next(unix(1)).is_none(), "backing off");
        assert_eq!(out.next(unix(2)).unwrap().attempts, 2);
        assert_eq!(out.failed(unix(2), false), AfterFailure::Retry(Duration::from_secs(2)));
        assert_eq!(out.next(unix(11)).unwrap().attempts, 3);
        let AfterFailure::GiveUp(given) = out.failed(unix(11), false) else {
            panic!("older than give_up_after")
        };
        let kinds: Vec<_> = given.iter().map(|p| (p.subject.kind, p.attempts)).collect();
        assert_eq!(kinds, [(NotifyEvent::FailoverStarted, 3), (NotifyEvent::Fenced, 0)]);
        assert_eq!(out.len(), 1, "the young one is still retried");
        assert_eq!(out.cursor(30), 20);
        // Delivered at last: no back-off left.
        assert!(out.next(unix(14)).is_none());
        out.next(unix(15)).unwrap();
        out.delivered();
        assert_eq!(out.cursor(30), 30);
    }

    #[test]
    fn a_refusal_for_good_gives_up_that_one_alone_at_once() {
        let mut out = Outbox::new(&all());
        out.offer(0, &at(EventKind::Fenced, 0), unix(0));
        out.offer(10, &at(EventKind::DrillFailed, 0), unix(0));
        out.next(unix(0));
        let AfterFailure::GiveUp(given) = out.failed(unix(0), true) else {
            panic!("refused")
        };
        assert_eq!(given.len(), 1);
        assert_eq!(out.next(unix(0)).unwrap().subject.kind, NotifyEvent::DrillFailed);
    }
}
