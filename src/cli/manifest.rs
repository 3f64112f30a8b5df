//! Reading manifests for `apply -f` and `delete -f`: files, directories and standard input;
//! multi-document YAML, JSON (one or more objects), and `List` kinds flattened to items.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// File name endings read from a directory (kubectl's).
const MANIFEST_EXTENSIONS: &[&str] = &["yaml", "yml", "json"];

/// One object from a manifest, with where it came from for messages.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// The file (`-` for standard input).
    pub source: String,
    /// The object in the Kubernetes JSON shape.
    pub object: Value,
}

impl Document {
    /// `apiVersion` (checked present by [`parse`]).
    pub fn api_version(&self) -> &str {
        self.object["apiVersion"].as_str().unwrap_or("")
    }

    /// `kind` (checked present by [`parse`]).
    pub fn kind(&self) -> &str {
        self.object["kind"].as_str().unwrap_or("")
    }

    /// `metadata.name`, empty when missing.
    pub fn name(&self) -> &str {
        self.object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// `metadata.namespace` when set and not empty.
    pub fn namespace(&self) -> Option<&str> {
        self.object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }
}

/// Reads every `-f` argument in order: `-` is standard input, a directory contributes its
/// `.yaml`, `.yml` and `.json` files in name order (not recursing).
pub fn read_all(paths: &[PathBuf]) -> Result<Vec<Document>> {
    let mut docs = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading standard input")?;
            docs.extend(parse("-", &text)?);
        } else if path.is_dir() {
            for file in dir_files(path)? {
                docs.extend(read_file(&file)?);
            }
        } else {
            docs.extend(read_file(path)?);
        }
    }
    Ok(docs)
}

fn read_file(path: &Path) -> Result<Vec<Document>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("the path \"{}\" cannot be read", path.display()))?;
    parse(&path.display().to_string(), &text)
}

fn dir_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let wanted = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| MANIFEST_EXTENSIONS.contains(&e));
        if wanted && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Parses one file's text: JSON when it starts with `{` or `[`, YAML otherwise. Empty
/// documents are skipped; `List` kinds (`List`, `PodList`, ...) become their items; every
/// remaining object must name its `apiVersion` and `kind`.
pub fn parse(source: &str, text: &str) -> Result<Vec<Document>> {
    let trimmed = text.trim_start();
    let values: Vec<Value> = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        serde_json::Deserializer::from_str(text)
            .into_iter::<Value>()
            .collect::<Result<_, _>>()
            .with_context(|| format!("error parsing {source}: invalid JSON"))?
    } else {
        serde_saphyr::from_multiple::<Value>(text)
            .with_context(|| format!("error parsing {source}: invalid YAML"))?
    };
    let mut flat = Vec::new();
    for value in values {
        flatten(value, &mut flat);
    }
    let mut docs = Vec::new();
    for (idx, object) in flat.into_iter().enumerate() {
        let missing: Vec<&str> = ["apiVersion", "kind"]
            .into_iter()
            .filter(|f| {
                object
                    .get(*f)
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
            })
            .collect();
        if !missing.is_empty() {
            bail!(
                "error validating {source} (object {}): {} not set",
                idx + 1,
                missing.join(" and ")
            );
        }
        docs.push(Document {
            source: source.to_string(),
            object,
        });
    }
    Ok(docs)
}

fn flatten(value: Value, out: &mut Vec<Value>) {
    match value {
        Value::Null => {}
        Value::Array(items) => items.into_iter().for_each(|v| flatten(v, out)),
        Value::Object(map) if map.is_empty() => {}
        Value::Object(mut map)
            if map
                .get("kind")
                .and_then(Value::as_str)
                .is_some_and(|k| k.ends_with("List"))
                && map.get("items").is_some_and(Value::is_array) =>
        {
            if let Some(Value::Array(items)) = map.remove("items") {
                items.into_iter().for_each(|v| flatten(v, out));
            }
        }
        other => out.push(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(text: &str, expected: &[(&str, &str)]) {
        let docs = parse("test", text).unwrap();
        let got: Vec<(&str, &str)> = docs.iter().map(|d| (d.kind(), d.name())).collect();
        assert_eq!(got, expected, "{text}");
    }

    #[test]
    fn yaml_json_and_lists() {
        check(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n---\n---\n# only a comment\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b, namespace: a}\ndata:\n  k: \"1\"\n",
            &[("Namespace", "a"), ("ConfigMap", "b")],
        );
        check(
            r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}} {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "q"}}"#,
            &[("Pod", "p"), ("Pod", "q")],
        );
        check(
            "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata: {name: s}\n- apiVersion: apps/v1\n  kind: Deployment\n  metadata: {name: d}\n",
            &[("Service", "s"), ("Deployment", "d")],
        );
        check(
            r#"{"apiVersion": "v1", "kind": "PodList", "items": [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}}]}"#,
            &[("Pod", "x")],
        );
        check("", &[]);
    }

    #[test]
    fn yaml_scalars_keep_their_json_types() {
        let docs = parse(
            "t",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d, labels: {app: web}}\nspec:\n  replicas: 2\n  paused: false\n  template:\n    spec:\n      containers:\n      - name: c\n        image: nginx:1.27\n        args: [\"--port\", \"80\"]\n",
        )
        .unwrap();
        assert_eq!(
            docs[0].object["spec"],
            json!({"replicas": 2, "paused": false, "template": {"spec": {"containers": [
                {"name": "c", "image": "nginx:1.27", "args": ["--port", "80"]}
            ]}}})
        );
    }

    #[test]
    fn missing_kind_and_bad_syntax_are_errors() {
        let err = parse("f.yaml", "metadata:\n  name: x\n").unwrap_err();
        assert!(
            err.to_string().contains("apiVersion and kind not set"),
            "{err}"
        );
        assert!(parse("f.json", "{\"kind\": ").is_err());
        assert!(parse("f.yaml", "a: [unclosed\n").is_err());
    }
}
