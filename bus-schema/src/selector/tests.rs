//! Selector tests as data: parse results, canonical forms, matching and errors.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;
use proptest::prelude::*;
use serde_json::json;

use super::*;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn label_selectors_parse_to_canonical_form() {
    // (input, canonical form)
    let cases = [
        ("", ""),
        ("   ", ""),
        ("a=b", "a=b"),
        ("a==b", "a=b"),
        ("a!=b", "a!=b"),
        ("a in (x,y)", "a in (x,y)"),
        ("a in (y, x, x)", "a in (x,y)"),
        ("a notin (x)", "a notin (x)"),
        ("a", "a"),
        ("!a", "!a"),
        ("! a", "!a"),
        (" a = b , c ", "a=b,c"),
        ("\ta\n=\tb", "a=b"),
        ("b=1,a=2", "a=2,b=1"),
        ("b,a=1,b!=2", "a=1,b,b!=2"),
        ("a=", "a="),
        ("a=,b", "a=,b"),
        ("a in ()", "a in ()"),
        ("a in (x,)", "a in (,x)"),
        ("a in (,x)", "a in (,x)"),
        ("a in(x)", "a in (x)"),
        ("a notin(x,y)", "a notin (x,y)"),
        ("x>1", "x>1"),
        ("x < -5", "x<-5"),
        ("example.com/app=web", "example.com/app=web"),
        (
            "app.kubernetes.io/name in (web, api)",
            "app.kubernetes.io/name in (api,web)",
        ),
        ("a=in", "a=in"),
        ("a in (in,notin)", "a in (in,notin)"),
        (
            "env=prod,tier in (front,back),!canary",
            "!canary,env=prod,tier in (back,front)",
        ),
        ("A_b.c-D=V_1.x-Y", "A_b.c-D=V_1.x-Y"),
    ];
    let mut failures = Vec::new();
    for (input, canonical) in cases {
        match LabelSelector::parse(input) {
            Ok(selector) if selector.to_string() == canonical => {
                // The canonical form parses back to the same selector.
                match LabelSelector::parse(canonical) {
                    Ok(again) if again == selector => {}
                    other => failures.push(format!("{canonical:?} did not round-trip: {other:?}")),
                }
            }
            Ok(selector) => failures.push(format!(
                "{input:?}: want {canonical:?}, got {:?}",
                selector.to_string()
            )),
            Err(e) => failures.push(format!("{input:?}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[derive(Debug, PartialEq)]
enum ErrorShape {
    Syntax(usize),
    Key(usize),
    Value(usize),
}

fn shape(error: &SelectorError) -> Option<ErrorShape> {
    match error {
        SelectorError::Syntax { position, .. } => Some(ErrorShape::Syntax(*position)),
        SelectorError::InvalidKey { position, .. } => Some(ErrorShape::Key(*position)),
        SelectorError::InvalidValue { position, .. } => Some(ErrorShape::Value(*position)),
        SelectorError::InvalidStructured { .. } => None,
    }
}

#[test]
fn label_selector_errors_say_where() {
    use ErrorShape::*;
    let cases = [
        ("a=b=c", Syntax(3)),
        ("a=b c", Syntax(4)),
        ("a in x", Syntax(5)),
        ("a in (x", Syntax(7)),
        ("a in (x y)", Syntax(8)),
        ("a in (x))", Syntax(8)),
        ("a notin", Syntax(7)),
        ("a,", Syntax(2)),
        ("a,,b", Syntax(2)),
        (",a", Syntax(0)),
        ("!a=b", Syntax(2)),
        ("!", Syntax(1)),
        ("!!a", Syntax(1)),
        ("a b", Syntax(2)),
        ("a=(b)", Syntax(2)),
        ("in=b", Syntax(0)),
        ("=b", Syntax(0)),
        ("(a)", Syntax(0)),
        ("a>", Value(2)),
        ("-a=b", Key(0)),
        ("a/b/c", Key(0)),
        ("x,Bad Key", Syntax(6)),
        ("x, bad_", Key(3)),
        ("a=-b", Value(2)),
        ("a in (ok, -no)", Value(10)),
        ("a>b", Value(2)),
        ("a<1.5", Value(2)),
        ("a=ünï", Value(2)),
        (&format!("a={}", "v".repeat(64)), Value(2)),
    ];
    let mut failures = Vec::new();
    for (input, want) in cases {
        match LabelSelector::parse(input) {
            Ok(selector) => failures.push(format!("{input:?}: parsed as {selector}")),
            Err(e) if shape(&e).as_ref() == Some(&want) => {
                let message = e.to_string();
                if message.ends_with('.') || message.starts_with(char::is_uppercase) {
                    failures.push(format!("{input:?}: message style: {message}"));
                }
            }
            Err(e) => failures.push(format!("{input:?}: want {want:?}, got {e:?}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn label_selector_error_messages() {
    let cases = [
        (
            "a=b=c",
            "unexpected '=' at position 3, expected ',' or end of selector",
        ),
        (
            "a in (x",
            "unexpected end of selector at position 7, expected a value, ',' or ')'",
        ),
        (
            "a,",
            "unexpected end of selector at position 2, expected a label key after ','",
        ),
        (
            "a>b",
            "invalid value \"b\" for key \"a\" at position 2: must be an integer for '>' and '<'",
        ),
        (
            "a/b/c",
            "invalid key \"a/b/c\" at position 0: a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
        ),
    ];
    for (input, want) in cases {
        match LabelSelector::parse(input) {
            Err(e) => assert_eq!(e.to_string(), want, "{input:?}"),
            Ok(selector) => panic!("{input:?} parsed as {selector}"),
        }
    }
}

#[test]
fn label_selectors_match() {
    let web = labels(&[("app", "web"), ("tier", "front"), ("version", "3")]);
    let none = labels(&[]);
    // (selector, labels, matches)
    let cases = [
        ("", &web, true),
        ("", &none, true),
        ("app=web", &web, true),
        ("app==web", &web, true),
        ("app=api", &web, false),
        ("app=web", &none, false),
        ("app!=api", &web, true),
        ("app!=web", &web, false),
        ("app!=web", &none, true),
        ("app in (web,api)", &web, true),
        ("app in (api)", &web, false),
        ("app in (web)", &none, false),
        ("app notin (api)", &web, true),
        ("app notin (web,api)", &web, false),
        ("app notin (web)", &none, true),
        ("app", &web, true),
        ("app", &none, false),
        ("!app", &web, false),
        ("!app", &none, true),
        ("!canary", &web, true),
        ("app=web,tier=front", &web, true),
        ("app=web,tier=back", &web, false),
        ("app=web,!tier", &web, false),
        ("version>2", &web, true),
        ("version>3", &web, false),
        ("version<4", &web, true),
        ("app>1", &web, false),
        ("missing<4", &web, false),
        ("tier=", &web, false),
        ("tier in ()", &labels(&[("tier", "")]), true),
        ("tier=", &labels(&[("tier", "")]), true),
    ];
    let mut failures = Vec::new();
    for (input, labels, want) in cases {
        match LabelSelector::parse(input) {
            Ok(selector) if selector.matches(labels) == want => {}
            Ok(_) => failures.push(format!("{input:?} on {labels:?}: want {want}")),
            Err(e) => failures.push(format!("{input:?}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn k8s_selector(value: serde_json::Value) -> metav1::LabelSelector {
    serde_json::from_value(value).unwrap_or_else(|e| panic!("bad test selector: {e}"))
}

#[test]
fn structured_selectors_convert() {
    // (matchLabels/matchExpressions, canonical form or the error's field)
    let cases: Vec<(serde_json::Value, Result<&str, &str>)> = vec![
        (json!({}), Ok("")),
        (json!({"matchLabels": {}}), Ok("")),
        (
            json!({"matchLabels": {"app": "web", "tier": "front"}}),
            Ok("app=web,tier=front"),
        ),
        (
            json!({"matchLabels": {"app": "web"},
                   "matchExpressions": [
                       {"key": "env", "operator": "In", "values": ["prod", "staging"]},
                       {"key": "canary", "operator": "DoesNotExist"},
                       {"key": "zone", "operator": "NotIn", "values": ["b"]},
                       {"key": "gpu", "operator": "Exists"}]}),
            Ok("app=web,!canary,env in (prod,staging),gpu,zone notin (b)"),
        ),
        (
            json!({"matchExpressions": [{"key": "a", "operator": "Equals", "values": ["x"]}]}),
            Err("matchExpressions[0].operator"),
        ),
        (
            json!({"matchExpressions": [{"key": "a", "operator": "in", "values": ["x"]}]}),
            Err("matchExpressions[0].operator"),
        ),
        (
            json!({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}),
            Err("matchExpressions[0].operator"),
        ),
        (
            json!({"matchExpressions": [{"key": "a", "operator": "In"}]}),
            Err("matchExpressions[0].values"),
        ),
        (
            json!({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": []}]}),
            Err("matchExpressions[0].values"),
        ),
        (
            json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}),
            Err("matchExpressions[0].values"),
        ),
        (
            json!({"matchExpressions": [{"key": "a", "operator": "In", "values": ["ok"]}, {"key": "bad key", "operator": "Exists"}]}),
            Err("matchExpressions[1].key"),
        ),
        (
            json!({"matchExpressions": [{"key": "a", "operator": "In", "values": ["ok", "not ok"]}]}),
            Err("matchExpressions[0].values[1]"),
        ),
        (
            json!({"matchLabels": {"bad key": "x"}}),
            Err("matchLabels[bad key]"),
        ),
        (
            json!({"matchLabels": {"app": "-web"}}),
            Err("matchLabels[app]"),
        ),
    ];
    let mut failures = Vec::new();
    for (input, want) in cases {
        let got = LabelSelector::from_k8s(&k8s_selector(input.clone()));
        match (&got, want) {
            (Ok(selector), Ok(canonical)) if selector.to_string() == canonical => {}
            (Err(SelectorError::InvalidStructured { field, reason }), Err(want_field))
                if field == want_field && !reason.ends_with('.') => {}
            _ => failures.push(format!("{input}: want {want:?}, got {got:?}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn structured_and_text_selectors_agree() {
    let structured = LabelSelector::from_k8s(&k8s_selector(json!({
        "matchLabels": {"app": "web"},
        "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["cache"]}]
    })))
    .unwrap_or_else(|e| panic!("{e}"));
    let text =
        LabelSelector::parse("tier notin (cache), app = web").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(structured, text);
    assert!(structured.matches(&labels(&[("app", "web")])));
    assert!(!structured.matches(&labels(&[("app", "web"), ("tier", "cache")])));
    assert_eq!(structured.requirements().len(), 2);
    assert_eq!(structured.requirements()[0].key(), "app");
    assert_eq!(
        structured.requirements()[0].operator(),
        LabelOperator::Equals
    );
    assert_eq!(structured.requirements()[1].values(), ["cache".to_string()]);
    assert!(!structured.is_empty());
    assert!(LabelSelector::everything().is_empty());
    assert_eq!("a=b".parse::<LabelSelector>(), LabelSelector::parse("a==b"));
}

#[test]
fn field_selectors_parse_to_canonical_form() {
    let cases = [
        ("", ""),
        (" ", ""),
        ("metadata.name=foo", "metadata.name=foo"),
        ("metadata.name==foo", "metadata.name=foo"),
        ("status.phase!=Running", "status.phase!=Running"),
        (
            "status.phase!=Running,metadata.name=foo",
            "metadata.name=foo,status.phase!=Running",
        ),
        (
            " metadata.name = foo , spec.nodeName = node-1 ",
            "metadata.name=foo,spec.nodeName=node-1",
        ),
        ("metadata.name=", "metadata.name="),
        ("a=b,,c=d", "a=b,c=d"),
        ("a=x\\,y", "a=x\\,y"),
        ("a=x\\=y", "a=x\\=y"),
        ("a=x\\\\y", "a=x\\\\y"),
        ("a=!b", "a=!b"),
    ];
    let mut failures = Vec::new();
    for (input, canonical) in cases {
        match FieldSelector::parse(input) {
            Ok(selector) if selector.to_string() == canonical => {
                match FieldSelector::parse(canonical) {
                    Ok(again) if again == selector => {}
                    other => failures.push(format!("{canonical:?} did not round-trip: {other:?}")),
                }
            }
            Ok(selector) => failures.push(format!("{input:?}: want {canonical:?}, got {selector}")),
            Err(e) => failures.push(format!("{input:?}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn field_selector_values_are_unescaped() {
    let selector =
        FieldSelector::parse(r"metadata.name=a\,b\=c\\d").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(selector.requirements()[0].value(), r"a,b=c\d");
    assert!(selector.matches(&json!({"metadata": {"name": r"a,b=c\d"}})));
}

#[test]
fn field_selector_errors_say_where() {
    use ErrorShape::*;
    let cases = [
        ("metadata.name", Syntax(13)),
        ("a=b,c", Syntax(5)),
        ("=foo", Key(0)),
        ("a=b, =foo", Key(5)),
        ("a=b=c", Value(3)),
        ("a!==b", Value(3)),
        ("a=x\\y", Value(3)),
        ("! =x", Key(0)),
        ("a b=x", Key(0)),
        ("metadata.labels[app]=x", Key(0)),
        ("a=x\\", Value(3)),
    ];
    let mut failures = Vec::new();
    for (input, want) in cases {
        match FieldSelector::parse(input) {
            Ok(selector) => failures.push(format!("{input:?}: parsed as {selector}")),
            Err(e) if shape(&e).as_ref() == Some(&want) => {
                let message = e.to_string();
                if message.ends_with('.') || message.starts_with(char::is_uppercase) {
                    failures.push(format!("{input:?}: message style: {message}"));
                }
            }
            Err(e) => failures.push(format!("{input:?}: want {want:?}, got {e:?}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn field_selectors_match() {
    let pod = json!({
        "metadata": {"name": "web-0", "namespace": "default"},
        "spec": {"nodeName": "node-1", "unschedulable": false, "replicas": 3},
        "status": {"phase": "Running", "podIP": null}
    });
    let cases = [
        ("", true),
        ("metadata.name=web-0", true),
        ("metadata.name=web-1", false),
        ("metadata.name!=web-1", true),
        ("metadata.namespace=default,status.phase=Running", true),
        ("metadata.namespace=default,status.phase!=Running", false),
        ("spec.nodeName=", false),
        ("spec.schedulerName=", true),
        ("spec.schedulerName!=", false),
        ("status.podIP=", true),
        ("spec.unschedulable=false", true),
        ("spec.replicas=3", true),
        ("spec=x", false),
        ("metadata.name.first=", true),
    ];
    let mut failures = Vec::new();
    for (input, want) in cases {
        match FieldSelector::parse(input) {
            Ok(selector) if selector.matches(&pod) == want => {}
            Ok(_) => failures.push(format!("{input:?}: want {want}")),
            Err(e) => failures.push(format!("{input:?}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn field_selector_exposes_fields() {
    let selector =
        FieldSelector::parse("status.phase!=Failed,spec.nodeName=node-1,metadata.name=x")
            .unwrap_or_else(|e| panic!("{e}"));
    let fields: Vec<&str> = selector.fields().collect();
    assert_eq!(fields, ["metadata.name", "spec.nodeName", "status.phase"]);
    assert_eq!(selector.exact_match("spec.nodeName"), Some("node-1"));
    assert_eq!(selector.exact_match("status.phase"), None);
    assert_eq!(selector.exact_match("spec.hostname"), None);
    assert!(!selector.is_empty());
    assert!(FieldSelector::everything().is_empty());
    assert_eq!(FieldSelector::everything().fields().count(), 0);
}

proptest! {
    // Fixed seed and no regression files: every run replays the same cases.
    #![proptest_config(ProptestConfig {
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x5e1ec7),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_text_never_panics(s in "\\PC{0,40}") {
        let _ = LabelSelector::parse(&s);
        let _ = FieldSelector::parse(&s);
    }

    #[test]
    fn selector_like_text_round_trips(s in "[a-c!=(), ]{0,3}([a-c]{1,2}|in|notin|[=!<>(),]|\\s){0,12}") {
        if let Ok(selector) = LabelSelector::parse(&s) {
            let canonical = selector.to_string();
            let again = LabelSelector::parse(&canonical).map_err(|e| TestCaseError::fail(format!("{canonical:?}: {e}")))?;
            prop_assert_eq!(&again, &selector);
            prop_assert_eq!(again.to_string(), canonical);
        }
        if let Ok(selector) = FieldSelector::parse(&s) {
            let canonical = selector.to_string();
            let again = FieldSelector::parse(&canonical).map_err(|e| TestCaseError::fail(format!("{canonical:?}: {e}")))?;
            prop_assert_eq!(again, selector);
        }
    }

    #[test]
    fn field_values_survive_escaping(value in "[a-z,=\\\\ ]{0,10}") {
        let requirement = FieldRequirement {
            field: "metadata.name".to_string(),
            operator: FieldOperator::Equals,
            value: value.trim().to_string(),
        };
        let text = requirement.to_string();
        let parsed = FieldSelector::parse(&text).map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
        prop_assert_eq!(parsed.requirements()[0].value(), value.trim());
    }
}
