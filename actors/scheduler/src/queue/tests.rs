use super::*;

fn s(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

/// Pops everything ready at `now`.
fn drain(q: &mut SchedulingQueue, now: Duration) -> Vec<String> {
    std::iter::from_fn(|| q.pop(now)).collect()
}

#[test]
fn priority_then_age() {
    let mut q = SchedulingQueue::default();
    q.add("a", 0, s(1));
    q.add("b", 10, s(2));
    q.add("c", 0, s(0));
    q.add("d", 10, s(3));
    assert_eq!(drain(&mut q, s(5)), ["b", "d", "c", "a"]);
}

#[test]
fn unschedulable_waits_for_an_event_then_its_backoff() {
    let mut q = SchedulingQueue::default();
    q.add("a", 0, s(0));
    assert_eq!(q.pop(s(0)).as_deref(), Some("a"));
    q.unschedulable("a", s(0));
    assert_eq!(q.place("a"), Some(Place::Unschedulable));
    assert_eq!(
        drain(&mut q, s(5)),
        Vec::<String>::new(),
        "no event, no retry"
    );
    // An event within the backoff parks it in backoff until 1 s after the failure.
    q.unschedulable("a", s(10));
    q.on_cluster_event(s(10));
    assert_eq!(q.place("a"), Some(Place::Backoff));
    assert_eq!(q.next_backoff_end(), Some(s(10) + backoff_for(2)));
    assert_eq!(drain(&mut q, s(11)), Vec::<String>::new());
    assert_eq!(drain(&mut q, s(12)), ["a"]);
}

#[test]
fn backoff_doubles_to_a_cap() {
    let got: Vec<u64> = (1..=6).map(|n| backoff_for(n).as_secs()).collect();
    assert_eq!(got, [1, 2, 4, 8, 10, 10]);
}

#[test]
fn flush_retries_long_unschedulable_pods() {
    let mut q = SchedulingQueue::default();
    q.add("a", 0, s(0));
    q.pop(s(0));
    q.unschedulable("a", s(0));
    q.flush(s(30));
    assert_eq!(q.place("a"), Some(Place::Unschedulable));
    q.flush(s(0) + UNSCHEDULABLE_FLUSH);
    assert_eq!(drain(&mut q, s(0) + UNSCHEDULABLE_FLUSH), ["a"]);
}

#[test]
fn updates_and_removals() {
    let mut q = SchedulingQueue::default();
    q.add("a", 0, s(0));
    q.add("b", 0, s(1));
    q.add("b", 5, s(2)); // priority raised while active
    q.remove("a");
    assert_eq!(drain(&mut q, s(3)), ["b"]);
    // A changed unschedulable pod is retried once its backoff passed.
    q.unschedulable("b", s(3));
    q.add("b", 5, s(9));
    assert_eq!(drain(&mut q, s(9)), ["b"]);
    // Retry after a conflict goes through backoff.
    q.retry("b", s(9));
    assert_eq!(q.place("b"), Some(Place::Backoff));
    assert!(drain(&mut q, s(9)).is_empty());
    assert_eq!(drain(&mut q, s(9) + MAX_BACKOFF), ["b"]);
    q.done("b");
    assert!(q.is_empty());
}
