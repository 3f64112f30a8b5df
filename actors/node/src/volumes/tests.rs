use super::*;
use serde_json::json;

fn pod(volumes: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "p", "namespace": "ns", "uid": "uid-1", "labels": {"a": "1", "b": "2"}},
        "spec": {"containers": [{"name": "c", "resources": {"limits": {"memory": "64Mi"}}}], "volumes": volumes}
    }))
    .unwrap()
}

fn sources() -> VolumeSources {
    let mut s = VolumeSources::default();
    s.config_maps.insert(
        "cfg".into(),
        Some(
            [
                ("a".to_string(), b"1".to_vec()),
                ("b".to_string(), b"2".to_vec()),
            ]
            .into(),
        ),
    );
    s.secrets.insert(
        "sec".into(),
        Some([("pw".to_string(), b"x".to_vec())].into()),
    );
    s
}

#[test]
fn payload_table() {
    type Files = Vec<(&'static str, &'static str, u32)>;
    let cases: Vec<(serde_json::Value, Result<Files, &str>)> = vec![
        (
            json!({"name": "v", "configMap": {"name": "cfg"}}),
            Ok(vec![("a", "1", 0o644), ("b", "2", 0o644)]),
        ),
        (
            json!({"name": "v", "configMap": {"name": "cfg", "defaultMode": 0o600, "items": [{"key": "b", "path": "dir/bee", "mode": 0o400}, {"key": "a", "path": "a"}]}}),
            Ok(vec![("a", "1", 0o600), ("dir/bee", "2", 0o400)]),
        ),
        (
            json!({"name": "v", "configMap": {"name": "nope", "optional": true}}),
            Ok(vec![]),
        ),
        (
            json!({"name": "v", "configMap": {"name": "nope"}}),
            Err("configmap \"nope\" not found"),
        ),
        (
            json!({"name": "v", "configMap": {"name": "cfg", "items": [{"key": "z", "path": "z"}]}}),
            Err("configuration error: key z not found in configmap cfg"),
        ),
        (
            json!({"name": "v", "secret": {"secretName": "sec"}}),
            Ok(vec![("pw", "x", 0o644)]),
        ),
        (
            json!({"name": "v", "downwardAPI": {"items": [
                {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
                {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory", "divisor": "1Mi"}}]}}),
            Ok(vec![
                ("labels", "a=\"1\"\nb=\"2\"\n", 0o644),
                ("mem", "64", 0o644),
                ("name", "p", 0o644),
            ]),
        ),
        (
            json!({"name": "v", "projected": {"sources": [{"configMap": {"name": "cfg", "items": [{"key": "a", "path": "a"}]}}, {"secret": {"name": "sec"}}]}}),
            Ok(vec![("a", "1", 0o644), ("pw", "x", 0o644)]),
        ),
    ];
    for (volume, want) in cases {
        let p = pod(json!([volume.clone()]));
        let v: Volume = serde_json::from_value(volume.clone()).unwrap();
        let got = payload(&p, &PodFacts::default(), &v, &sources()).unwrap();
        match want {
            Ok(files) => {
                let want: Payload = files
                    .into_iter()
                    .map(|(p, c, m)| (p.to_string(), (c.as_bytes().to_vec(), m)))
                    .collect();
                assert_eq!(got.unwrap(), want, "{volume}");
            }
            Err(msg) => assert_eq!(got.unwrap_err().0, msg, "{volume}"),
        }
    }
}

#[test]
fn atomic_writer_swaps_data_link() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vol");
    let one: Payload = [
        ("a".to_string(), (b"1".to_vec(), 0o644)),
        ("sub/b".to_string(), (b"2".to_vec(), 0o600)),
    ]
    .into();
    assert!(write_atomic(&dir, &one).unwrap());
    assert!(
        !write_atomic(&dir, &one).unwrap(),
        "unchanged payload is not rewritten"
    );
    assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "1");
    assert_eq!(std::fs::read_to_string(dir.join("sub/b")).unwrap(), "2");
    assert!(
        std::fs::symlink_metadata(dir.join("a"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let first = std::fs::read_link(dir.join("..data")).unwrap();
    let two: Payload = [("a".to_string(), (b"changed".to_vec(), 0o644))].into();
    assert!(write_atomic(&dir, &two).unwrap());
    assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "changed");
    assert!(
        std::fs::symlink_metadata(dir.join("sub")).is_err(),
        "stale top-level link removed"
    );
    assert!(!dir.join(&first).exists(), "old payload dir removed");
    assert_eq!(read_payload(&dir.join("..data")).unwrap(), two);
}

#[test]
fn host_path_types() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    assert!(check_host_path(&d, "Directory").is_err());
    check_host_path(&d, "DirectoryOrCreate").unwrap();
    assert!(d.is_dir());
    check_host_path(&d, "Directory").unwrap();
    assert!(check_host_path(&d, "File").is_err());
    let f = tmp.path().join("f");
    check_host_path(&f, "FileOrCreate").unwrap();
    check_host_path(&f, "File").unwrap();
    assert!(check_host_path(&f, "Socket").is_err());
    assert!(check_host_path(&f, "DirectoryOrCreate").is_err());
    check_host_path(&tmp.path().join("whatever"), "").unwrap();
    assert!(check_host_path(&f, "Bogus").is_err());
}

#[test]
fn mounts_with_sub_path_and_read_only() {
    let tmp = tempfile::tempdir().unwrap();
    let volumes: Vec<Volume> = serde_json::from_value(json!([
        {"name": "data", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "cfg"}}
    ]))
    .unwrap();
    let paths: BTreeMap<String, PathBuf> = [
        ("data".to_string(), tmp.path().join("data")),
        ("cfg".to_string(), tmp.path().join("cfg")),
    ]
    .into();
    let c: Container = serde_json::from_value(json!({"name": "c", "volumeMounts": [
        {"name": "data", "mountPath": "/data", "subPath": "x/y"},
        {"name": "data", "mountPath": "/ro", "readOnly": true},
        {"name": "cfg", "mountPath": "/etc/cfg"}
    ]}))
    .unwrap();
    let m = mounts(&c, &volumes, &paths).unwrap();
    assert_eq!(m[0].host_path, tmp.path().join("data/x/y"));
    assert!(tmp.path().join("data/x/y").is_dir());
    assert!(!m[0].read_only);
    assert!(m[1].read_only);
    assert!(m[2].read_only, "API data volumes are read-only");
    let bad: Container = serde_json::from_value(json!({"name": "c", "volumeMounts": [{"name": "data", "mountPath": "/d", "subPath": "../etc"}]})).unwrap();
    assert!(mounts(&bad, &volumes, &paths).is_err());
    // A symlink planted in the volume cannot carry a subPath out of it.
    std::fs::create_dir_all(tmp.path().join("data")).unwrap();
    std::os::unix::fs::symlink("/etc", tmp.path().join("data/escape")).unwrap();
    let sneaky: Container = serde_json::from_value(json!({"name": "c", "volumeMounts": [{"name": "data", "mountPath": "/d", "subPath": "escape"}]})).unwrap();
    let err = mounts(&sneaky, &volumes, &paths).unwrap_err();
    assert!(err.0.contains("outside"), "{err}");
    let missing: Container = serde_json::from_value(
        json!({"name": "c", "volumeMounts": [{"name": "nope", "mountPath": "/d"}]}),
    )
    .unwrap();
    assert!(mounts(&missing, &volumes, &paths).is_err());
}
