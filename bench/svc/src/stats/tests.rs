use super::*;

fn us(v: u64) -> Duration {
    Duration::from_micros(v)
}

#[test]
fn nearest_rank_percentiles() {
    fn check(samples: &[u64], p: f64, expected: Option<u64>) {
        let sorted: Vec<Duration> = samples.iter().map(|v| us(*v)).collect();
        assert_eq!(
            percentile(&sorted, p),
            expected.map(us),
            "p{p} of {samples:?}"
        );
    }
    check(&[], 50.0, None);
    check(&[7], 50.0, Some(7));
    check(&[7], 99.0, Some(7));
    check(&[1, 2, 3, 4], 50.0, Some(2));
    check(&[1, 2, 3, 4, 5], 50.0, Some(3));
    check(&(1..=100).collect::<Vec<_>>(), 99.0, Some(99));
    check(&(1..=1000).collect::<Vec<_>>(), 99.0, Some(990));
    check(&(1..=100).collect::<Vec<_>>(), 100.0, Some(100));
    check(&[1, 2, 3], 0.0, Some(1));
}

#[test]
fn median_p99_sorts_first() {
    let mut v: Vec<Duration> = (1..=200).rev().map(us).collect();
    assert_eq!(median_p99(&mut v), (us(100), us(198)));
    assert_eq!(median_p99(&mut []), (Duration::ZERO, Duration::ZERO));
}

#[test]
fn human_units() {
    fn check(d: Duration, expected: &str) {
        assert_eq!(human(d), expected);
    }
    check(Duration::from_nanos(2_340), "2.3 µs");
    check(us(48), "48 µs");
    check(us(9_999), "9999 µs");
    check(us(12_400), "12 ms");
    check(Duration::from_millis(1_300), "1300 ms");
    check(Duration::from_secs(21), "21.0 s");
}
