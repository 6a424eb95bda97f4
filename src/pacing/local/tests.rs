use std::time::{Duration, Instant};

use super::*;

fn limits(per_sec: u32, interval_ms: u64) -> PacingLimits {
    PacingLimits {
        account_per_sec: per_sec,
        account_burst: 1,
        recipient_interval: Duration::from_millis(interval_ms),
        group_per_min: 20,
        margin: Duration::ZERO,
        recipient_margin: Duration::ZERO,
        daily_cap: 0,
        gap: None,
    }
}

const MS: Duration = Duration::from_millis(1);

/// Runs every reserved send at its turn, as the waiting futures would, and returns when each left.
fn drain(t: &mut Timeline, ids: &[u64], now: Instant) -> Vec<(u64, Instant)> {
    drain_late(t, ids, now, Duration::ZERO)
}

/// [`drain`] with every wake-up `late`.
fn drain_late(
    t: &mut Timeline,
    ids: &[u64],
    mut now: Instant,
    late: Duration,
) -> Vec<(u64, Instant)> {
    let mut left = Vec::new();
    let mut waiting: Vec<u64> = ids.to_vec();
    while !waiting.is_empty() {
        let mut next = None::<Instant>;
        waiting.retain(|id| match t.try_depart(*id, now) {
            Ok(seq) => {
                // A provider that answers at once.
                t.answered(seq, now);
                left.push((*id, now));
                false
            }
            Err(at) => {
                next = Some(next.map_or(at, |n| n.min(at)));
                true
            }
        });
        if let Some(at) = next {
            now = now.max(at + late);
        }
    }
    left
}

#[test]
fn sends_to_different_recipients_leave_one_slot_apart_in_order() {
    let mut t = Timeline::new(limits(20, 1000));
    let now = Instant::now();
    let at: Vec<_> = (0..5)
        .map(|i| t.reserve(&i.to_string(), RecipientKind::Private, now).1)
        .collect();
    for pair in at.windows(2) {
        assert_eq!(pair[1] - pair[0], Duration::from_millis(50));
    }
    assert_eq!(at[0], now);
}

#[test]
fn a_recipient_that_must_wait_leaves_its_slot_to_the_others() {
    let mut t = Timeline::new(limits(10, 1000));
    let now = Instant::now();
    let (_, a1) = t.reserve("a", RecipientKind::Private, now);
    let (_, a2) = t.reserve("a", RecipientKind::Private, now);
    let (_, b) = t.reserve("b", RecipientKind::Private, now);
    assert_eq!(a2 - a1, Duration::from_secs(1));
    assert_eq!(
        b - a1,
        Duration::from_millis(100),
        "b takes the next free slot"
    );
}

#[test]
fn every_window_holds_at_most_the_rate_even_when_timers_are_late() {
    let mut t = Timeline::new(limits(30, 1000));
    let start = Instant::now();
    let ids: Vec<u64> = (0..200)
        .map(|i| t.reserve(&i.to_string(), RecipientKind::Private, start).0)
        .collect();
    // Every wake-up is 3 ms late.
    let mut left: Vec<Instant> = drain_late(&mut t, &ids, start, 3 * MS)
        .into_iter()
        .map(|(_, at)| at)
        .collect();
    left.sort();
    for (i, d) in left.iter().enumerate().skip(30) {
        assert!(*d - left[i - 30] >= Duration::from_secs(1), "send {i}");
    }
    let rate = (left.len() - 1) as f64 / (left[left.len() - 1] - left[0]).as_secs_f64();
    assert!(
        rate > 29.0,
        "late timers must not cost more than a little: {rate}"
    );
}

/// Leaves `id` at its first chance from `now` on, without answering it; returns its number.
fn leave(t: &mut Timeline, id: u64, now: &mut Instant) -> u64 {
    loop {
        match t.try_depart(id, *now) {
            Ok(seq) => return seq,
            Err(at) => *now = at,
        }
    }
}

#[test]
fn a_send_waits_for_the_answer_to_the_send_a_window_before_it() {
    let mut t = Timeline::new(limits(30, 1000));
    let start = Instant::now();
    let ids: Vec<u64> = (0..31)
        .map(|i| t.reserve(&i.to_string(), RecipientKind::Private, start).0)
        .collect();
    let mut now = start;
    let seqs: Vec<u64> = ids[..30]
        .iter()
        .map(|id| leave(&mut t, *id, &mut now))
        .collect();
    // The first send is stuck on its way (a starved task, a slow network): however long ago it
    // left, the provider may count it at any moment, so the 31st looks again shortly.
    let later = start + Duration::from_secs(5);
    let again = t.try_depart(ids[30], later).expect_err("no answer yet");
    assert!(again > later && again <= later + ANSWER_POLL, "{again:?}");
    // It is answered at 4.5 s: the 31st leaves a second after that.
    t.answered(seqs[0], start + 4500 * MS);
    assert_eq!(t.try_depart(ids[30], later), Err(start + 5500 * MS));
    assert!(t.try_depart(ids[30], start + 5500 * MS).is_ok());
}

#[test]
fn a_lost_answer_slows_the_account_down_but_never_stops_it() {
    let mut t = Timeline::new(limits(1, 1));
    let start = Instant::now();
    let (a, _) = t.reserve("a", RecipientKind::Private, start);
    let (b, _) = t.reserve("b", RecipientKind::Private, start);
    let mut now = start;
    leave(&mut t, a, &mut now);
    assert!(t.try_depart(b, start + Duration::from_secs(30)).is_err());
    assert!(
        t.try_depart(b, start + ANSWER_LOST + Duration::from_secs(1))
            .is_ok()
    );
}

#[test]
fn a_recipient_waits_for_the_answer_to_its_last_send() {
    let mut t = Timeline::new(limits(30, 1000));
    let start = Instant::now();
    let (a1, _) = t.reserve("a", RecipientKind::Private, start);
    let (a2, at2) = t.reserve("a", RecipientKind::Private, start);
    assert_eq!(at2, start + Duration::from_secs(1));
    let seq = t.try_depart(a1, start).expect("first leaves at once");
    // Its answer came 300 ms later: it may have arrived just before.
    t.answered(seq, start + 300 * MS);
    assert_eq!(t.try_depart(a2, at2), Err(start + 1300 * MS));
    assert!(t.try_depart(a2, start + 1300 * MS).is_ok());
}

#[test]
fn answers_bound_when_the_provider_counted_a_send() {
    let mut l = limits(30, 1000);
    l.margin = Duration::from_millis(50);
    let mut t = Timeline::new(l);
    let start = Instant::now();
    let mut now = start;
    let mut left = Vec::new();
    for i in 0..200 {
        let (id, _) = t.reserve(&i.to_string(), RecipientKind::Private, now);
        let seq = loop {
            match t.try_depart(id, now) {
                Ok(seq) => break seq,
                Err(at) => now = at,
            }
        };
        left.push(now);
        // The provider answers 5 ms after each send leaves.
        t.answered(seq, now + 5 * MS);
    }
    for (i, d) in left.iter().enumerate().skip(30) {
        assert!(*d - left[i - 30] >= Duration::from_millis(1005), "send {i}");
    }
    let rate = 199.0 / (left[199] - left[0]).as_secs_f64();
    assert!(
        rate > 29.5,
        "fast answers make the plan denser than the margin: {rate}"
    );
}

#[test]
fn an_account_freeze_moves_every_waiting_turn_and_spaces_them_again() {
    let mut t = Timeline::new(limits(20, 1000));
    let now = Instant::now();
    let ids: Vec<u64> = (0..10)
        .map(|i| t.reserve(&i.to_string(), RecipientKind::Private, now).0)
        .collect();
    assert!(t.try_depart(ids[0], now).is_ok());
    t.rate_limited("0", Duration::from_secs(2), LimitScope::Account, now);
    let left = drain(&mut t, &ids[1..], now);
    let until = now + Duration::from_secs(2);
    assert!(left.iter().all(|(_, at)| *at >= until), "{left:?}");
    let slot = t.slot();
    for pair in left.windows(2) {
        assert!(pair[1].1 - pair[0].1 >= slot, "no burst after a freeze");
    }
    assert_eq!(
        left.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        ids[1..].to_vec(),
        "the order is kept"
    );
    assert!(t.rate < 20.0, "the rate adapts: {}", t.rate);
}

#[test]
fn a_refusal_of_unknown_scope_on_one_chat_holds_only_that_chat() {
    let mut t = Timeline::new(limits(20, 1000));
    let now = Instant::now();
    let (a, _) = t.reserve("a", RecipientKind::Private, now);
    let (b, _) = t.reserve("b", RecipientKind::Private, now);
    t.rate_limited("a", Duration::from_secs(3), LimitScope::Unknown, now);
    assert!(t.frozen_until.is_none());
    let left = drain(&mut t, &[a, b], now);
    let at = |id| left.iter().find(|(i, _)| *i == id).map(|(_, at)| *at);
    assert!(at(b) < Some(now + Duration::from_millis(100)), "{left:?}");
    assert!(at(a) >= Some(now + Duration::from_secs(3)), "{left:?}");
}

#[test]
fn refusals_of_two_chats_in_one_window_freeze_the_account() {
    let mut t = Timeline::new(limits(20, 1000));
    let now = Instant::now();
    t.rate_limited("a", Duration::from_secs(2), LimitScope::Unknown, now);
    assert!(t.frozen_until.is_none());
    t.rate_limited(
        "b",
        Duration::from_secs(2),
        LimitScope::Unknown,
        now + 200 * MS,
    );
    assert_eq!(t.frozen_until, Some(now + 2200 * MS));
}

#[test]
fn the_rate_comes_back_step_by_step_while_calm() {
    let mut t = Timeline::new(limits(20, 1));
    let now = Instant::now();
    t.rate_limited("a", Duration::ZERO, LimitScope::Quality, now);
    assert_eq!(t.rate, 10.0);
    let mut at = now;
    let mut seen = vec![t.rate];
    for i in 0..400 {
        at += Duration::from_millis(100);
        let (id, _) = t.reserve(&i.to_string(), RecipientKind::Private, at);
        let _ = drain(&mut t, &[id], at);
        seen.push(t.rate);
    }
    assert_eq!(t.rate, 20.0);
    assert!(
        seen.windows(2).all(|w| w[1] - w[0] <= 1.0 + 1e-9),
        "{seen:?}"
    );
}

#[test]
fn a_cancelled_turn_is_free_again_for_others_and_for_its_recipient() {
    let mut t = Timeline::new(limits(10, 1000));
    let now = Instant::now();
    let (a1, _) = t.reserve("a", RecipientKind::Private, now);
    let (a2, at2) = t.reserve("a", RecipientKind::Private, now);
    t.cancel(a2);
    let (_, again) = t.reserve("a", RecipientKind::Private, now);
    assert_eq!(
        again, at2,
        "the recipient's chain is not lengthened by a cancelled turn"
    );
    t.cancel(a1);
    let (_, b) = t.reserve("b", RecipientKind::Private, now);
    assert_eq!(b, now);
}

#[test]
fn groups_are_spaced_by_their_per_minute_limit() {
    let mut l = limits(30, 1000);
    l.group_per_min = 20;
    let mut t = Timeline::new(l);
    let now = Instant::now();
    let (_, g1) = t.reserve("-5", RecipientKind::Group, now);
    let (_, g2) = t.reserve("-5", RecipientKind::Group, now);
    assert_eq!(g2 - g1, Duration::from_secs(3));
}

#[test]
fn idle_recipients_are_forgotten() {
    let mut t = Timeline::new(limits(10, 100));
    let now = Instant::now();
    let (id, _) = t.reserve("a", RecipientKind::Private, now);
    assert!(t.try_depart(id, now).is_ok());
    t.forget_idle(now + Duration::from_secs(61));
    assert!(t.recipients.is_empty());
}

#[tokio::test]
async fn a_turn_beyond_the_horizon_is_deferred_and_given_back() {
    let pacer = LocalPacer::new(limits(100, 10_000));
    pacer
        .acquire("a", RecipientKind::Private, Duration::from_secs(1))
        .await
        .expect("first send to a leaves at once");
    let deferred = pacer
        .acquire("a", RecipientKind::Private, Duration::from_secs(1))
        .await
        .expect_err("the second waits 10 s");
    assert!(deferred.wait > Duration::from_secs(9), "{deferred:?}");
    assert_eq!(pacer.state().waiting, 0);
    let other = pacer
        .acquire("b", RecipientKind::Private, Duration::from_secs(1))
        .await
        .expect("b is free");
    assert!(other.waited < Duration::from_millis(200), "{other:?}");
}

#[tokio::test]
async fn a_dropped_wait_gives_its_turn_back() {
    let pacer = LocalPacer::new(limits(1, 1));
    pacer
        .acquire("a", RecipientKind::Private, Duration::from_secs(5))
        .await
        .expect("first");
    let wait = pacer.acquire("b", RecipientKind::Private, Duration::from_secs(5));
    assert!(
        tokio::time::timeout(Duration::from_millis(50), wait)
            .await
            .is_err()
    );
    assert_eq!(pacer.state().waiting, 0);
}

#[tokio::test]
async fn sends_handed_back_are_promised_turns_in_order_not_all_the_same() {
    let pacer = LocalPacer::new(limits(30, 1000));
    let first = pacer
        .acquire("chat", RecipientKind::Private, Duration::ZERO)
        .await;
    assert!(first.is_ok(), "the first goes at once");
    let mut waits = Vec::new();
    for _ in 0..5 {
        match pacer
            .acquire("chat", RecipientKind::Private, Duration::ZERO)
            .await
        {
            Err(Deferred { wait }) => waits.push(wait),
            Ok(_) => panic!("the chat's next turn is a second away"),
        }
    }
    for pair in waits.windows(2) {
        assert!(
            pair[1] >= pair[0] + Duration::from_millis(999),
            "each promise a chat interval after the one before: {waits:?}"
        );
    }
    // Another chat is not held back by this one's promises.
    assert!(
        pacer
            .acquire("other", RecipientKind::Private, Duration::from_secs(1))
            .await
            .is_ok()
    );
}
