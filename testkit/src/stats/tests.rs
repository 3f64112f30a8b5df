use std::time::Duration;

use super::percentile;

fn ms(v: &[u64]) -> Vec<Duration> {
    v.iter().map(|m| Duration::from_millis(*m)).collect()
}

fn check(samples: &[u64], p: f64, expected: Option<u64>) {
    assert_eq!(
        percentile(&ms(samples), p),
        expected.map(Duration::from_millis),
        "p{p} of {samples:?}"
    );
}

#[test]
fn percentiles() {
    check(&[], 50.0, None);
    check(&[7], 50.0, Some(7));
    check(&[7], 99.0, Some(7));
    check(&[3, 1, 2], 50.0, Some(2));
    check(&[1, 2, 3, 4], 50.0, Some(2));
    check(&[1, 2, 3, 4], 99.0, Some(4));
    check(&[1, 2, 3, 4], 0.0, Some(1));
    check(&(1..=100).collect::<Vec<_>>(), 99.0, Some(99));
    check(&(1..=100).collect::<Vec<_>>(), 100.0, Some(100));
    check(&(1..=1000).collect::<Vec<_>>(), 99.0, Some(990));
}
