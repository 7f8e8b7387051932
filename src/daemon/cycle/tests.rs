//! The loop's scheduling with tokio's paused time and a fake reconcile: every time below is
//! exact, because nothing but the timers moves the clock.

use super::{run, Cadence, Ran, Reconcile};
use crate::config::{parse_schedule, Config};
use crate::status::StatusHub;
use crate::trigger::{Reasons, Trigger, Why};
use chrono::{DateTime, Local, TimeZone};
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::{sleep_until, Instant};

const GITHUB: Why = Why::Webhook { provider: "github" };
const GITLAB: Why = Why::Webhook { provider: "gitlab" };
/// Jan 1 at midnight: a year away from the clock below, so no tick comes during a test.
const YEARLY: &str = "0 0 0 1 1 *";
/// At second 0 of every minute: the first tick is 30 s after the start (see [`clock`]).
const EACH_MINUTE: &str = "0 * * * * *";

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// One call of the fake: when (since the test began) and why.
#[derive(Debug, Clone, PartialEq)]
struct Call {
    at: Duration,
    why: Reasons,
}

#[derive(Default)]
struct FakeState {
    calls: Vec<Call>,
    finished: usize,
    /// How long each reconcile takes.
    busy: Duration,
    /// The next reconcile waits for `release` before it ends.
    hold: bool,
    /// What the next reconcile reports about healthchecks (then none).
    recheck_for: Option<Duration>,
    /// How many rechecks still find a healthcheck starting.
    starting: u32,
    rechecks: Vec<Duration>,
}

/// A reconcile that does nothing but record, take time, and wait when told to.
#[derive(Clone)]
struct Fake {
    t0: Instant,
    state: Rc<RefCell<FakeState>>,
    release: Rc<Notify>,
}

impl Fake {
    fn new(t0: Instant) -> Fake {
        Fake {
            t0,
            state: Rc::default(),
            release: Rc::default(),
        }
    }

    fn set(&self, f: impl FnOnce(&mut FakeState)) {
        f(&mut self.state.borrow_mut());
    }

    fn calls(&self) -> Vec<Call> {
        self.state.borrow().calls.clone()
    }

    fn labels(&self) -> Vec<(Duration, String)> {
        self.calls()
            .into_iter()
            .map(|c| (c.at, c.why.to_string()))
            .collect()
    }
}

impl Reconcile for Fake {
    async fn reconcile(&mut self, why: &Reasons) -> Ran {
        let (busy, hold) = {
            let mut s = self.state.borrow_mut();
            s.calls.push(Call {
                at: Instant::now() - self.t0,
                why: why.clone(),
            });
            (s.busy, std::mem::take(&mut s.hold))
        };
        if hold {
            self.release.notified().await;
        }
        tokio::time::sleep(busy).await;
        let mut s = self.state.borrow_mut();
        s.finished += 1;
        Ran {
            recheck_for: s.recheck_for.take(),
        }
    }

    async fn recheck(&mut self) -> bool {
        let mut s = self.state.borrow_mut();
        s.rechecks.push(Instant::now() - self.t0);
        s.starting = s.starting.saturating_sub(1);
        s.starting > 0
    }
}

fn cadence(poll: &str, debounce: Duration) -> Cadence {
    Cadence {
        schedule: parse_schedule(poll).unwrap(),
        poll: poll.into(),
        debounce,
        recheck: secs(2),
    }
}

/// A wall clock that starts at 12:00:30 and moves with tokio's (paused) time.
fn clock(t0: Instant) -> impl Fn() -> DateTime<Local> {
    let w0 = Local
        .with_ymd_and_hms(2030, 1, 7, 12, 0, 30)
        .single()
        .unwrap();
    move || w0 + (Instant::now() - t0)
}

/// What a test drives: the fake, the trigger, and the stop button.
struct Rig {
    t0: Instant,
    fake: Fake,
    trigger: Trigger,
    stop: Rc<Notify>,
    /// Set when the loop returned.
    done: Rc<Cell<bool>>,
}

impl Rig {
    fn new() -> Rig {
        let t0 = Instant::now();
        Rig {
            t0,
            fake: Fake::new(t0),
            trigger: Trigger::default(),
            stop: Rc::default(),
            done: Rc::default(),
        }
    }

    /// Sleeps until `d` after the test began.
    async fn at(&self, d: Duration) {
        sleep_until(self.t0 + d).await;
    }

    /// Runs the loop beside `script`, then stops it; the loop's result.
    async fn run(&self, cadence: Cadence, script: impl Future<Output = ()>) -> anyhow::Result<()> {
        let cfg = Config::parse("repo: x\n", std::path::Path::new("/c.yaml")).unwrap();
        let hub = StatusHub::new(&cfg);
        let mut rec = self.fake.clone();
        let stop = self.stop.clone();
        let looped = async {
            let r = run(
                &mut rec,
                &cadence,
                &self.trigger,
                &hub,
                clock(self.t0),
                async move { stop.notified().await },
            )
            .await;
            self.done.set(true);
            r
        };
        let scripted = async {
            script.await;
            self.stop.notify_one();
        };
        tokio::join!(looped, scripted).0
    }
}

#[tokio::test(start_paused = true)]
async fn the_first_reconcile_is_for_the_start_and_a_lone_nudge_runs_at_once() {
    let r = Rig::new();
    r.run(cadence(YEARLY, ms(500)), async {
        r.at(secs(10)).await;
        r.trigger.nudge_for(GITHUB);
        r.at(secs(20)).await;
    })
    .await
    .unwrap();
    assert_eq!(
        r.fake.labels(),
        vec![(secs(0), "start".into()), (secs(10), "webhook".into())],
        "no debounce for a nudge long after the last reconcile"
    );
    assert!(r.fake.calls()[1].why.contains(GITHUB));
}

#[tokio::test(start_paused = true)]
async fn a_nudge_soon_after_a_reconcile_waits_until_the_debounce_has_passed() {
    let r = Rig::new();
    r.fake.set(|s| s.busy = secs(1));
    r.run(cadence(YEARLY, ms(500)), async {
        r.at(ms(1100)).await;
        r.trigger.nudge();
        r.at(secs(10)).await;
    })
    .await
    .unwrap();
    // The start ended at 1 s: the nudge waits until 1.5 s, not a full debounce after itself.
    assert_eq!(
        r.fake.labels(),
        vec![(secs(0), "start".into()), (ms(1500), "nudge".into())]
    );
}

#[tokio::test(start_paused = true)]
async fn nudges_during_a_reconcile_make_one_follow_up_with_all_their_reasons() {
    let r = Rig::new();
    r.fake.set(|s| s.hold = true);
    r.run(cadence(YEARLY, ms(500)), async {
        for (i, why) in [GITHUB, Why::Secrets, GITLAB, Why::Nudge, GITHUB]
            .into_iter()
            .enumerate()
        {
            r.at(secs(1 + i as u64)).await;
            r.trigger.nudge_for(why);
        }
        r.at(secs(10)).await;
        assert_eq!(r.fake.calls().len(), 1, "nothing starts while one runs");
        r.fake.release.notify_one();
        r.at(secs(60)).await;
    })
    .await
    .unwrap();
    let calls = r.fake.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    // Released at 10 s: the follow-up waits out the debounce after that end.
    assert_eq!(calls[1].at, ms(10_500));
    let mut all = Reasons::default();
    for w in [GITHUB, GITLAB, Why::Secrets, Why::Nudge] {
        all.insert(w);
    }
    assert_eq!(calls[1].why, all);
    assert_eq!(calls[1].why.to_string(), "webhook+secrets+nudge");
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_twenty_deliveries_makes_one_or_two_reconciles() {
    let r = Rig::new();
    r.fake.set(|s| s.busy = ms(300));
    r.run(cadence(YEARLY, ms(500)), async {
        // All at the same instant: the loop wakes once for all of them.
        r.at(secs(10)).await;
        for _ in 0..20 {
            r.trigger.nudge_for(GITHUB);
        }
        // Spread over 400 ms, longer than a reconcile: the first starts one at once, the
        // others land while it runs and make one more together.
        r.at(secs(20)).await;
        for i in 0..20 {
            r.at(secs(20) + ms(20 * i)).await;
            r.trigger.nudge_for(GITLAB);
        }
        r.at(secs(30)).await;
    })
    .await
    .unwrap();
    let labels = r.fake.labels();
    let at_once: Vec<_> = labels.iter().filter(|(t, _)| *t == secs(10)).collect();
    assert_eq!(at_once.len(), 1, "{labels:?}");
    let spread: Vec<_> = labels.iter().filter(|(t, _)| *t >= secs(20)).collect();
    assert_eq!(
        spread,
        vec![
            &(secs(20), "webhook".into()),
            &(ms(20_800), "webhook".into())
        ],
        "one at once, one 500 ms after it ended at 20.3 s"
    );
    assert_eq!(labels.len(), 4, "{labels:?}");
}

#[tokio::test(start_paused = true)]
async fn the_poll_ticks_on_schedule_and_nothing_else_runs_a_reconcile() {
    let r = Rig::new();
    r.fake.set(|s| s.busy = secs(5));
    r.run(cadence(EACH_MINUTE, ms(500)), async {
        r.at(ms(29_999)).await;
        assert_eq!(r.fake.calls().len(), 1, "the tick is at 30 s, not sooner");
        r.at(secs(200)).await;
    })
    .await
    .unwrap();
    // The clock starts at 12:00:30: ticks at 12:01:00, 12:02:00… A reconcile (failed or not)
    // is not requeued by the loop: only the ticks ask again, and it is the reconcile that
    // holds back inputs that failed before.
    assert_eq!(
        r.fake.labels(),
        vec![
            (secs(0), "start".into()),
            (secs(30), "poll".into()),
            (secs(90), "poll".into()),
            (secs(150), "poll".into()),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_lets_a_running_reconcile_finish_and_starts_no_other() {
    let r = Rig::new();
    r.fake.set(|s| s.hold = true);
    r.run(cadence(EACH_MINUTE, ms(500)), async {
        r.at(secs(1)).await;
        r.trigger.nudge();
        r.stop.notify_one();
        r.at(secs(5)).await;
        assert!(!r.done.get(), "the loop waits for the running reconcile");
        r.fake.release.notify_one();
        r.at(secs(6)).await;
        assert!(r.done.get(), "the loop returned once it ended");
    })
    .await
    .unwrap();
    assert_eq!(r.fake.calls().len(), 1, "no follow-up for the nudge");
    assert_eq!(r.fake.state.borrow().finished, 1);
}

#[tokio::test(start_paused = true)]
async fn shutdown_during_the_debounce_starts_no_reconcile() {
    let r = Rig::new();
    r.fake.set(|s| s.busy = secs(1));
    r.run(cadence(YEARLY, secs(5)), async {
        r.at(ms(1100)).await;
        r.trigger.nudge();
        r.at(secs(2)).await;
        r.stop.notify_one();
        r.at(ms(2001)).await;
        assert!(r.done.get(), "stopped at once, not after the debounce");
    })
    .await
    .unwrap();
    assert_eq!(r.fake.calls().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn shutdown_on_an_idle_loop_returns_at_once() {
    let r = Rig::new();
    r.run(cadence(EACH_MINUTE, ms(500)), async {
        r.at(secs(10)).await;
        r.stop.notify_one();
        r.at(ms(10_001)).await;
        assert!(r.done.get());
    })
    .await
    .unwrap();
    assert_eq!(r.fake.calls().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_starting_healthcheck_is_looked_at_again_until_it_decides() {
    let r = Rig::new();
    r.fake.set(|s| {
        s.recheck_for = Some(secs(60));
        s.starting = 3;
    });
    r.run(cadence(YEARLY, ms(500)), async { r.at(secs(30)).await })
        .await
        .unwrap();
    let s = r.fake.state.borrow();
    assert_eq!(s.rechecks, vec![secs(2), secs(4), secs(6)]);
    assert_eq!(s.calls.len(), 1, "a look is not a reconcile");
}

#[tokio::test(start_paused = true)]
async fn a_healthcheck_that_never_decides_is_looked_at_for_a_bounded_time() {
    let r = Rig::new();
    r.fake.set(|s| {
        s.recheck_for = Some(secs(5));
        s.starting = u32::MAX;
    });
    r.run(cadence(YEARLY, ms(500)), async { r.at(secs(60)).await })
        .await
        .unwrap();
    // Looked at while less than 5 s had passed since the reconcile ended.
    assert_eq!(
        r.fake.state.borrow().rechecks,
        vec![secs(2), secs(4), secs(6)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_schedule_without_a_next_run_stops_the_loop_with_an_error() {
    let r = Rig::new();
    // February 30th never comes.
    let err = r
        .run(cadence("0 0 0 30 2 *", ms(500)), async {
            r.at(secs(3600)).await
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no next run"), "{err:#}");
    assert_eq!(r.fake.calls().len(), 1, "the start reconcile ran");
}
