//! Label sets and label selectors printed as Kubernetes prints them (`labels.FormatLabels`,
//! `metav1.FormatLabelSelector`): `app=web,tier in (api,db)`, sorted by key.

use serde_json::Value;

/// A `map[string]string` as `k=v,k2=v2` sorted by key, `<none>` when empty or absent.
pub(super) fn format_labels(map: Option<&Value>) -> String {
    let Some(Value::Object(map)) = map else {
        return "<none>".to_string();
    };
    // serde_json's map iterates in key order unless `preserve_order` is on; sort anyway.
    let mut pairs: Vec<(&str, &str)> = map
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or("")))
        .collect();
    pairs.sort_unstable();
    if pairs.is_empty() {
        return "<none>".to_string();
    }
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// `metav1.FormatLabelSelector`: the selector's string, `<none>` when it selects by nothing,
/// `<error>` when it cannot be parsed.
pub(super) fn format_label_selector(selector: Option<&Value>) -> String {
    match selector_string(selector) {
        Ok(s) if s.is_empty() => "<none>".to_string(),
        Ok(s) => s,
        Err(InvalidSelector) => "<error>".to_string(),
    }
}

/// A `LabelSelector` that cannot be turned into a selector (unknown operator, or values
/// where the operator forbids them and vice versa).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct InvalidSelector;

/// `LabelSelectorAsSelector(selector).String()`: requirements sorted by key, `""` for an
/// absent or empty selector.
pub(super) fn selector_string(selector: Option<&Value>) -> Result<String, InvalidSelector> {
    let Some(selector) = selector.filter(|s| !s.is_null()) else {
        return Ok(String::new());
    };
    let Some(selector) = selector.as_object() else {
        return Err(InvalidSelector);
    };
    let mut requirements: Vec<(String, String)> = Vec::new();
    if let Some(Value::Object(match_labels)) = selector.get("matchLabels") {
        for (key, value) in match_labels {
            let value = value.as_str().ok_or(InvalidSelector)?;
            requirements.push((key.clone(), format!("{key}={value}")));
        }
    }
    if let Some(Value::Array(expressions)) = selector.get("matchExpressions") {
        for expression in expressions {
            requirements.push(expression_string(expression)?);
        }
    }
    requirements.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(requirements
        .into_iter()
        .map(|(_, rendered)| rendered)
        .collect::<Vec<_>>()
        .join(","))
}

/// One `matchExpressions` entry as `(key, rendered)`.
fn expression_string(expression: &Value) -> Result<(String, String), InvalidSelector> {
    let key = expression
        .get("key")
        .and_then(Value::as_str)
        .ok_or(InvalidSelector)?;
    let mut values: Vec<&str> = match expression.get("values") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(values)) => values
            .iter()
            .map(|v| v.as_str().ok_or(InvalidSelector))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(InvalidSelector),
    };
    values.sort_unstable();
    let operator = expression
        .get("operator")
        .and_then(Value::as_str)
        .unwrap_or("");
    let rendered = match operator {
        "In" | "NotIn" if values.is_empty() => return Err(InvalidSelector),
        "In" => format!("{key} in ({})", values.join(",")),
        "NotIn" => format!("{key} notin ({})", values.join(",")),
        "Exists" | "DoesNotExist" if !values.is_empty() => return Err(InvalidSelector),
        "Exists" => key.to_string(),
        "DoesNotExist" => format!("!{key}"),
        _ => return Err(InvalidSelector),
    };
    Ok((key.to_string(), rendered))
}
