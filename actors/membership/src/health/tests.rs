use super::*;

fn check(late_ms: u64, expected_ms: Option<u64>) {
    assert_eq!(
        push_back(Duration::from_millis(late_ms)),
        expected_ms.map(Duration::from_millis),
        "late {late_ms} ms"
    );
}

#[test]
fn push_back_table() {
    check(0, None);
    check(5, None);
    check(20, None);
    check(21, Some(42));
    check(100, Some(200));
    check(499, Some(998));
    check(500, Some(1000));
    check(10_000, Some(1000));
    assert_eq!(push_back(Duration::MAX), Some(MAX_PUSH_BACK));
}
