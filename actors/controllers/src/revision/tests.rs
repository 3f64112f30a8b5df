use super::*;

fn rev(name: &str, number: i64, image: &str) -> Existing {
    Existing {
        name: name.into(),
        number,
        data: patch_of(&json!({"spec": {"containers": [{"name": "c", "image": image}]}})),
    }
}

fn wanted(image: &str) -> Value {
    patch_of(&json!({"spec": {"containers": [{"name": "c", "image": image}]}}))
}

#[allow(clippy::too_many_arguments)]
fn check(
    existing: &[Existing],
    image: &str,
    in_use: &[&str],
    limit: usize,
    update: Option<&str>,
    number: i64,
    create: bool,
    bump: bool,
    delete: &[&str],
) {
    let in_use: BTreeSet<String> = in_use.iter().map(|s| s.to_string()).collect();
    let p = plan("web", &wanted(image), existing, &in_use, limit, None);
    if let Some(update) = update {
        assert_eq!(p.update, update, "update revision");
    } else {
        assert!(p.update.starts_with("web-"), "{}", p.update);
    }
    assert_eq!(p.number, number, "number");
    assert_eq!(p.create, create, "create");
    assert_eq!(p.bump, bump, "bump");
    assert_eq!(p.delete, delete, "delete");
}

#[test]
fn plans() {
    // First revision.
    check(&[], "a", &[], 10, None, 1, true, false, &[]);
    // Unchanged template: nothing to do.
    check(
        &[rev("web-a", 1, "a")],
        "a",
        &[],
        10,
        Some("web-a"),
        1,
        false,
        false,
        &[],
    );
    // New template: a new revision with the next number.
    check(
        &[rev("web-a", 1, "a")],
        "b",
        &[],
        10,
        None,
        2,
        true,
        false,
        &[],
    );
    // Rollback to an older template: its revision becomes the newest.
    check(
        &[rev("web-a", 1, "a"), rev("web-b", 2, "b")],
        "a",
        &[],
        10,
        Some("web-a"),
        3,
        false,
        true,
        &[],
    );
    // History limit: the oldest unused revisions go, never one in use.
    check(
        &[
            rev("web-a", 1, "a"),
            rev("web-b", 2, "b"),
            rev("web-c", 3, "c"),
        ],
        "d",
        &["web-a"],
        1,
        None,
        4,
        true,
        false,
        &["web-b"],
    );
    check(
        &[rev("web-a", 1, "a"), rev("web-b", 2, "b")],
        "b",
        &[],
        0,
        Some("web-b"),
        2,
        false,
        false,
        &["web-a"],
    );
}

#[test]
fn hashes_are_kubernetes_shaped() {
    // Digits map by byte value modulo the 27-letter alphabet.
    assert_eq!(safe_encode("019"), "45f");
    // FNV-1 test vector: "a" -> 0x050c5d7e.
    assert_eq!(fnv32(b"a"), 0x050c_5d7e);
    let h = hash(&wanted("a"), None);
    assert!(h.len() >= 8 && h.len() <= 10, "{h}");
    assert_ne!(h, hash(&wanted("a"), Some(1)));
    assert_eq!(
        template_of(&wanted("a")).unwrap()["spec"]["containers"][0]["image"],
        "a"
    );
}
