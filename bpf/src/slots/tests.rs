use super::*;

/// Checks the layout of `weights` over `max` slots as per-backend slot counts.
fn check(weights: &[u32], max: usize, expected_counts: &[usize]) {
    let table = layout(weights, max);
    assert!(
        table.len() <= max,
        "{weights:?}: {} slots over {max}",
        table.len()
    );
    let mut counts = vec![0; weights.len()];
    for i in &table {
        counts[*i] += 1;
    }
    assert_eq!(
        counts, expected_counts,
        "weights {weights:?} over {max} slots"
    );
}

#[test]
fn layouts() {
    // Equal weights: one slot each.
    check(&[1, 1, 1], MAX_SLOTS, &[1, 1, 1]);
    check(&[100, 100], MAX_SLOTS, &[1, 1]);
    // A 90/10 split reduces to nine and one.
    check(&[90, 10], MAX_SLOTS, &[9, 1]);
    check(&[3, 2], MAX_SLOTS, &[3, 2]);
    // Zero weight: no slot; nothing positive: no slot at all.
    check(&[5, 0, 5], MAX_SLOTS, &[1, 0, 1]);
    check(&[0, 0], MAX_SLOTS, &[0, 0]);
    check(&[], MAX_SLOTS, &[]);
    // Coprime weights past the cap are apportioned by largest remainder.
    check(&[999, 1], 100, &[99, 1]);
    check(&[1, 1, 1], 2, &[1, 1, 0]);
    check(&[7, 5, 3], 10, &[5, 3, 2]);
    // Tiny weights keep one slot when the cap allows it.
    check(&[1_000_000, 1], 10, &[9, 1]);
    check(&[1, 1_000_000], 10, &[1, 9]);
    // Nothing fits in zero slots.
    check(&[1], 0, &[0]);
}

#[test]
fn slots_are_grouped_in_backend_order() {
    assert_eq!(layout(&[2, 1], MAX_SLOTS), vec![0, 0, 1]);
}
