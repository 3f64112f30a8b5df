use super::*;
use foca::OwnedNotification as N;

fn id(name: &str, bump: u64) -> NodeId {
    NodeId {
        name: name.into(),
        addr: format!("127.0.0.1:{}", 7000 + name.len()).parse().unwrap(),
        bump,
        meta: NodeMetadata {
            pod_cidr: format!("10.244.{bump}.0/24"),
            zone: "z".to_string(),
            api: None,
            fence_timeout_ms: 0,
        }
        .into(),
    }
}

fn up(i: &NodeId, s: MemberState) -> MemberEvent {
    MemberEvent::Up(Member::new(i, s))
}
fn down(i: &NodeId) -> MemberEvent {
    MemberEvent::Down(Member::new(i, MemberState::Down))
}
fn updated(i: &NodeId) -> MemberEvent {
    MemberEvent::Updated(Member::new(i, MemberState::Alive))
}

/// `check(batch, states after it, expected events)`.
fn check(batch: Vec<N<NodeId>>, states: &[(&NodeId, MemberState)], expected: Vec<MemberEvent>) {
    let state_of = |x: &NodeId| states.iter().find(|(i, _)| *i == x).map(|(_, s)| *s);
    assert_eq!(events(&batch, state_of), expected, "{batch:?}");
}

#[test]
fn table() {
    let a1 = id("a", 1);
    let a2 = id("a", 2);
    let bb = id("bb", 1);
    use MemberState::*;
    // Up and down map one to one.
    check(
        vec![N::MemberUp(a1.clone())],
        &[(&a1, Alive)],
        vec![up(&a1, Alive)],
    );
    check(
        vec![N::MemberUp(a1.clone())],
        &[(&a1, Suspect)],
        vec![up(&a1, Suspect)],
    );
    check(
        vec![N::MemberDown(a1.clone())],
        &[(&a1, Down)],
        vec![down(&a1)],
    );
    check(
        vec![N::MemberUp(a1.clone()), N::MemberDown(bb.clone())],
        &[(&a1, Alive), (&bb, Down)],
        vec![up(&a1, Alive), down(&bb)],
    );
    // A restart after being declared down: rename and up; the up says it all.
    check(
        vec![N::Rename(a1.clone(), a2.clone()), N::MemberUp(a2.clone())],
        &[(&a2, Alive)],
        vec![up(&a2, Alive)],
    );
    // A restart before anyone noticed: a rename of a live member is an update.
    check(
        vec![N::Rename(a1.clone(), a2.clone())],
        &[(&a2, Alive)],
        vec![updated(&a2)],
    );
    // A rename to a down identity (its leave overtook its join): down only.
    check(
        vec![N::Rename(a1.clone(), a2.clone()), N::MemberDown(a2.clone())],
        &[(&a2, Down)],
        vec![down(&a2)],
    );
    // A rename among down identities is no news.
    check(
        vec![N::Rename(a1.clone(), a2.clone())],
        &[(&a2, Down)],
        vec![],
    );
    // Notifications about this member itself are not member events.
    check(
        vec![N::Active, N::Idle, N::Defunct, N::Rejoin(a2.clone())],
        &[],
        vec![],
    );
}
