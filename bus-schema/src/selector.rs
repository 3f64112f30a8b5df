//! Label and field selectors with Kubernetes' syntax and semantics.
//!
//! - [`LabelSelector`]: `app=web,tier!=cache,env in (prod,staging),!canary`, or the
//!   structured `matchLabels`/`matchExpressions` form of workload specs
//!   ([`LabelSelector::from_k8s`]). The empty selector matches everything.
//! - [`FieldSelector`]: `metadata.name=foo,status.phase!=Running`, matched against an
//!   object's JSON. Which fields a kind supports is the caller's decision ([`FieldSelector::fields`]).

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;

use crate::validation::{is_qualified_name, is_valid_label_value};

/// Why a selector could not be parsed or converted. None is retryable: the input is wrong,
/// and nothing was changed anywhere.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// The text breaks the grammar at byte offset `position`; `found` is the offending
    /// token, quoted, or `end of selector`.
    #[error("unexpected {found} at position {position}, expected {expected}")]
    Syntax {
        /// Byte offset into the selector text.
        position: usize,
        /// The token found there.
        found: String,
        /// What the grammar allows there.
        expected: &'static str,
    },
    /// A label key is not a qualified name, or a field name is empty.
    #[error("invalid key {key:?} at position {position}: {reason}")]
    InvalidKey {
        /// Byte offset of the key.
        position: usize,
        /// The key as written.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A value is not a valid label value (or, for `>`/`<`, not an integer), or a field
    /// selector value has a bad escape.
    #[error("invalid value {value:?} for key {key:?} at position {position}: {reason}")]
    InvalidValue {
        /// Byte offset of the value.
        position: usize,
        /// The key the value belongs to.
        key: String,
        /// The value as written.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A structured selector (`matchLabels`/`matchExpressions`) is invalid at `field`,
    /// e.g. `matchExpressions[1].operator`.
    #[error("{field}: {reason}")]
    InvalidStructured {
        /// Path of the offending field inside the selector.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// How a label requirement compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LabelOperator {
    /// `key=value` or `key==value`: the label is present with that value.
    Equals,
    /// `key!=value`: the label is absent or has another value.
    NotEquals,
    /// `key in (a,b)`: the label is present with one of the values.
    In,
    /// `key notin (a,b)`: the label is absent or has none of the values.
    NotIn,
    /// `key`: the label is present.
    Exists,
    /// `!key`: the label is absent.
    DoesNotExist,
    /// `key>5`: the label is present and an integer greater than the value.
    GreaterThan,
    /// `key<5`: the label is present and an integer less than the value.
    LessThan,
}

/// One requirement of a [`LabelSelector`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LabelRequirement {
    key: String,
    operator: LabelOperator,
    /// Sorted and without duplicates.
    values: Vec<String>,
}

impl LabelRequirement {
    /// The label key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// How the label is compared.
    pub fn operator(&self) -> LabelOperator {
        self.operator
    }

    /// The values compared against, sorted (empty for `Exists`/`DoesNotExist`).
    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Whether `labels` satisfy this requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let label = labels.get(&self.key);
        let in_values = |v: &String| self.values.binary_search(v).is_ok();
        match self.operator {
            LabelOperator::Equals | LabelOperator::In => label.is_some_and(in_values),
            LabelOperator::NotEquals | LabelOperator::NotIn => !label.is_some_and(in_values),
            LabelOperator::Exists => label.is_some(),
            LabelOperator::DoesNotExist => label.is_none(),
            LabelOperator::GreaterThan | LabelOperator::LessThan => {
                let (Some(actual), Some(bound)) = (
                    label.and_then(|l| l.parse::<i64>().ok()),
                    self.values.first().and_then(|v| v.parse::<i64>().ok()),
                ) else {
                    return false;
                };
                if self.operator == LabelOperator::GreaterThan {
                    actual > bound
                } else {
                    actual < bound
                }
            }
        }
    }
}

impl fmt::Display for LabelRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let values = self.values.join(",");
        match self.operator {
            LabelOperator::Equals => write!(f, "{}={values}", self.key),
            LabelOperator::NotEquals => write!(f, "{}!={values}", self.key),
            LabelOperator::In => write!(f, "{} in ({values})", self.key),
            LabelOperator::NotIn => write!(f, "{} notin ({values})", self.key),
            LabelOperator::Exists => write!(f, "{}", self.key),
            LabelOperator::DoesNotExist => write!(f, "!{}", self.key),
            LabelOperator::GreaterThan => write!(f, "{}>{values}", self.key),
            LabelOperator::LessThan => write!(f, "{}<{values}", self.key),
        }
    }
}

/// A label selector: the conjunction of its requirements. The empty selector matches
/// every object. `Display` gives the canonical text form (requirements sorted by key,
/// `==` written `=`, set values sorted), which parses back to an equal selector.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct LabelSelector {
    /// Sorted by key (stable), as Kubernetes does.
    requirements: Vec<LabelRequirement>,
}

impl LabelSelector {
    /// The selector that matches everything.
    pub fn everything() -> Self {
        Self::default()
    }

    /// Parses Kubernetes' text syntax: comma-separated `a=b`, `a==b`, `a!=b`,
    /// `a in (x,y)`, `a notin (x)`, `a`, `!a`, `a>1`, `a<1`; whitespace between tokens is
    /// ignored; `""` selects everything. Keys must be qualified names and values valid
    /// label values.
    pub fn parse(s: &str) -> Result<LabelSelector, SelectorError> {
        let tokens = lex(s);
        let mut parser = Parser { tokens, idx: 0 };
        let mut requirements = Vec::new();
        if parser.peek().kind == TokenKind::End {
            return Ok(Self::default());
        }
        loop {
            requirements.push(parser.requirement()?);
            let token = parser.next();
            match token.kind {
                TokenKind::End => break,
                TokenKind::Comma => {
                    let after = parser.peek();
                    if !matches!(after.kind, TokenKind::Ident(_) | TokenKind::Bang) {
                        return Err(after.unexpected("a label key after ','"));
                    }
                }
                _ => return Err(token.unexpected("',' or end of selector")),
            }
        }
        Ok(Self::from_requirements(requirements))
    }

    /// Converts the structured form of workload specs: every `matchLabels` entry becomes
    /// `key=value`, every `matchExpressions` entry `In`, `NotIn`, `Exists` or
    /// `DoesNotExist`. An empty structured selector matches everything.
    pub fn from_k8s(sel: &metav1::LabelSelector) -> Result<LabelSelector, SelectorError> {
        let mut requirements = Vec::new();
        for (key, value) in sel.match_labels.iter().flatten() {
            let structured = |reason: String| SelectorError::InvalidStructured {
                field: format!("matchLabels[{key}]"),
                reason,
            };
            check_key(key).map_err(structured)?;
            check_value(value).map_err(structured)?;
            requirements.push(LabelRequirement {
                key: key.clone(),
                operator: LabelOperator::Equals,
                values: vec![value.clone()],
            });
        }
        for (idx, expr) in sel.match_expressions.iter().flatten().enumerate() {
            let structured = |field: &str, reason: String| SelectorError::InvalidStructured {
                field: format!("matchExpressions[{idx}].{field}"),
                reason,
            };
            let operator = match expr.operator.as_str() {
                "In" => LabelOperator::In,
                "NotIn" => LabelOperator::NotIn,
                "Exists" => LabelOperator::Exists,
                "DoesNotExist" => LabelOperator::DoesNotExist,
                other => {
                    return Err(structured(
                        "operator",
                        format!("{other:?} is not a valid label selector operator"),
                    ));
                }
            };
            check_key(&expr.key).map_err(|reason| structured("key", reason))?;
            let values = expr.values.clone().unwrap_or_default();
            match operator {
                LabelOperator::In | LabelOperator::NotIn if values.is_empty() => {
                    return Err(structured(
                        "values",
                        format!("must be non-empty when operator is {}", expr.operator),
                    ));
                }
                LabelOperator::Exists | LabelOperator::DoesNotExist if !values.is_empty() => {
                    return Err(structured(
                        "values",
                        format!("must be empty when operator is {}", expr.operator),
                    ));
                }
                _ => {}
            }
            for (value_idx, value) in values.iter().enumerate() {
                check_value(value)
                    .map_err(|reason| structured(&format!("values[{value_idx}]"), reason))?;
            }
            requirements.push(LabelRequirement::new(expr.key.clone(), operator, values));
        }
        Ok(Self::from_requirements(requirements))
    }

    fn from_requirements(mut requirements: Vec<LabelRequirement>) -> Self {
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Self { requirements }
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Whether the selector has no requirement (and so matches everything).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[LabelRequirement] {
        &self.requirements
    }
}

impl LabelRequirement {
    fn new(key: String, operator: LabelOperator, mut values: Vec<String>) -> Self {
        values.sort();
        values.dedup();
        Self {
            key,
            operator,
            values,
        }
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (idx, requirement) in self.requirements.iter().enumerate() {
            if idx > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for LabelSelector {
    type Err = SelectorError;
    fn from_str(s: &str) -> Result<Self, SelectorError> {
        Self::parse(s)
    }
}

fn check_key(key: &str) -> Result<(), String> {
    let problems = is_qualified_name(key);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

fn check_value(value: &str) -> Result<(), String> {
    let problems = is_valid_label_value(value);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TokenKind {
    /// A key or value; `in` and `notin` are identifiers too when a value is expected.
    Ident(String),
    In,
    NotIn,
    Bang,
    Eq,
    DoubleEq,
    NotEq,
    Gt,
    Lt,
    Open,
    Close,
    Comma,
    End,
}

#[derive(Debug, Clone)]
struct Token {
    kind: TokenKind,
    position: usize,
}

impl Token {
    fn describe(&self) -> String {
        let text = match &self.kind {
            TokenKind::Ident(s) => s.as_str(),
            TokenKind::In => "in",
            TokenKind::NotIn => "notin",
            TokenKind::Bang => "!",
            TokenKind::Eq => "=",
            TokenKind::DoubleEq => "==",
            TokenKind::NotEq => "!=",
            TokenKind::Gt => ">",
            TokenKind::Lt => "<",
            TokenKind::Open => "(",
            TokenKind::Close => ")",
            TokenKind::Comma => ",",
            TokenKind::End => return "end of selector".to_string(),
        };
        format!("'{text}'")
    }

    fn unexpected(&self, expected: &'static str) -> SelectorError {
        SelectorError::Syntax {
            position: self.position,
            found: self.describe(),
            expected,
        }
    }

    /// The token's text when it can serve as a value (`in`/`notin` included).
    fn as_value(&self) -> Option<&str> {
        match &self.kind {
            TokenKind::Ident(s) => Some(s),
            TokenKind::In => Some("in"),
            TokenKind::NotIn => Some("notin"),
            _ => None,
        }
    }
}

fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

/// Splits selector text into tokens, ending with [`TokenKind::End`].
fn lex(s: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut chars = s.char_indices().peekable();
    while let Some(&(position, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        if is_special(c) {
            chars.next();
            let followed_by_eq = chars.peek().is_some_and(|&(_, next)| next == '=');
            let kind = match c {
                '!' if followed_by_eq => TokenKind::NotEq,
                '!' => TokenKind::Bang,
                '=' if followed_by_eq => TokenKind::DoubleEq,
                '=' => TokenKind::Eq,
                '>' => TokenKind::Gt,
                '<' => TokenKind::Lt,
                '(' => TokenKind::Open,
                ')' => TokenKind::Close,
                _ => TokenKind::Comma,
            };
            if matches!(kind, TokenKind::NotEq | TokenKind::DoubleEq) {
                chars.next();
            }
            tokens.push(Token { kind, position });
            continue;
        }
        let mut end = s.len();
        while let Some(&(idx, next)) = chars.peek() {
            if next.is_whitespace() || is_special(next) {
                end = idx;
                break;
            }
            chars.next();
        }
        let word = &s[position..end];
        let kind = match word {
            "in" => TokenKind::In,
            "notin" => TokenKind::NotIn,
            _ => TokenKind::Ident(word.to_string()),
        };
        tokens.push(Token { kind, position });
    }
    tokens.push(Token {
        kind: TokenKind::End,
        position: s.len(),
    });
    tokens
}

struct Parser {
    tokens: Vec<Token>,
    idx: usize,
}

impl Parser {
    fn peek(&self) -> Token {
        self.tokens
            .get(self.idx)
            .or(self.tokens.last())
            .cloned()
            .unwrap_or(Token {
                kind: TokenKind::End,
                position: 0,
            })
    }

    fn next(&mut self) -> Token {
        let token = self.peek();
        if self.idx < self.tokens.len() {
            self.idx += 1;
        }
        token
    }

    fn requirement(&mut self) -> Result<LabelRequirement, SelectorError> {
        let first = self.next();
        let (key_token, negated) = if first.kind == TokenKind::Bang {
            (self.next(), true)
        } else {
            (first, false)
        };
        let TokenKind::Ident(key) = &key_token.kind else {
            return Err(key_token.unexpected("a label key"));
        };
        let key = key.clone();
        check_key(&key).map_err(|reason| SelectorError::InvalidKey {
            position: key_token.position,
            key: key.clone(),
            reason,
        })?;
        if negated {
            return Ok(LabelRequirement::new(
                key,
                LabelOperator::DoesNotExist,
                Vec::new(),
            ));
        }

        let operator_token = self.peek();
        let operator = match operator_token.kind {
            TokenKind::End | TokenKind::Comma => {
                return Ok(LabelRequirement::new(
                    key,
                    LabelOperator::Exists,
                    Vec::new(),
                ));
            }
            TokenKind::Eq | TokenKind::DoubleEq => LabelOperator::Equals,
            TokenKind::NotEq => LabelOperator::NotEquals,
            TokenKind::Gt => LabelOperator::GreaterThan,
            TokenKind::Lt => LabelOperator::LessThan,
            TokenKind::In => LabelOperator::In,
            TokenKind::NotIn => LabelOperator::NotIn,
            _ => {
                return Err(operator_token.unexpected(
                    "one of '=', '==', '!=', 'in', 'notin', '>', '<', ',' or end of selector",
                ));
            }
        };
        self.next();
        let values = match operator {
            LabelOperator::In | LabelOperator::NotIn => self.value_set()?,
            _ => vec![self.exact_value()?],
        };
        for (position, value) in &values {
            let integer_required = matches!(
                operator,
                LabelOperator::GreaterThan | LabelOperator::LessThan
            );
            let check = if integer_required {
                value
                    .parse::<i64>()
                    .map(|_| ())
                    .map_err(|_| "must be an integer for '>' and '<'".to_string())
            } else {
                check_value(value)
            };
            check.map_err(|reason| SelectorError::InvalidValue {
                position: *position,
                key: key.clone(),
                value: value.clone(),
                reason,
            })?;
        }
        let values = values.into_iter().map(|(_, v)| v).collect();
        Ok(LabelRequirement::new(key, operator, values))
    }

    /// The value after `=`, `==`, `!=`, `>` or `<`; missing means the empty value.
    fn exact_value(&mut self) -> Result<(usize, String), SelectorError> {
        let token = self.peek();
        if matches!(token.kind, TokenKind::End | TokenKind::Comma) {
            return Ok((token.position, String::new()));
        }
        match token.as_value() {
            Some(value) => {
                let value = value.to_string();
                self.next();
                Ok((token.position, value))
            }
            None => Err(token.unexpected("a value")),
        }
    }

    /// `( v1, v2, ... )`; an empty slot is the empty value, as in Kubernetes (`()` selects `""`).
    fn value_set(&mut self) -> Result<Vec<(usize, String)>, SelectorError> {
        let open = self.next();
        if open.kind != TokenKind::Open {
            return Err(open.unexpected("'('"));
        }
        let mut values = Vec::new();
        let mut expect_value = true;
        loop {
            let token = self.next();
            if let Some(value) = token.as_value() {
                if !expect_value {
                    return Err(token.unexpected("',' or ')'"));
                }
                values.push((token.position, value.to_string()));
                expect_value = false;
                continue;
            }
            match token.kind {
                TokenKind::Comma | TokenKind::Close => {
                    if expect_value {
                        values.push((token.position, String::new()));
                    }
                    if token.kind == TokenKind::Close {
                        return Ok(values);
                    }
                    expect_value = true;
                }
                _ => return Err(token.unexpected("a value, ',' or ')'")),
            }
        }
    }
}

/// How a field requirement compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FieldOperator {
    /// `field=value` or `field==value`.
    Equals,
    /// `field!=value`.
    NotEquals,
}

/// One requirement of a [`FieldSelector`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FieldRequirement {
    field: String,
    operator: FieldOperator,
    value: String,
}

impl FieldRequirement {
    /// The dotted field path, e.g. `metadata.name`.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// How the field is compared.
    pub fn operator(&self) -> FieldOperator {
        self.operator
    }

    /// The value compared against (unescaped).
    pub fn value(&self) -> &str {
        &self.value
    }
}

impl fmt::Display for FieldRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.operator {
            FieldOperator::Equals => "=",
            FieldOperator::NotEquals => "!=",
        };
        write!(f, "{}{op}{}", self.field, escape_field_value(&self.value))
    }
}

/// A field selector: the conjunction of `field=value` / `field!=value` requirements over
/// dotted JSON paths. The empty selector matches everything. `Display` gives the canonical
/// form (requirements sorted, `==` written `=`, `\`, `,` and `=` in values escaped).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct FieldSelector {
    /// Sorted.
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// The selector that matches everything.
    pub fn everything() -> Self {
        Self::default()
    }

    /// Parses `metadata.name=foo,status.phase!=Running`: comma-separated terms with
    /// `=`, `==` or `!=`. In values `\,`, `\=` and `\\` stand for `,`, `=` and `\`.
    /// Whitespace around field names and values is ignored; empty terms are skipped.
    pub fn parse(s: &str) -> Result<FieldSelector, SelectorError> {
        let mut requirements = Vec::new();
        for (start, term) in split_terms(s) {
            let leading = term.len() - term.trim_start().len();
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            let start = start + leading;
            let Some((op_idx, operator, op_len)) = find_field_operator(term) else {
                return Err(SelectorError::Syntax {
                    position: start + term.len(),
                    found: "end of term".to_string(),
                    expected: "'=', '==' or '!=' in every term",
                });
            };
            let field = term[..op_idx].trim();
            if let Err(reason) = check_field_name(field) {
                return Err(SelectorError::InvalidKey {
                    position: start,
                    key: field.to_string(),
                    reason,
                });
            }
            let raw_value = &term[op_idx + op_len..];
            let value_start =
                start + op_idx + op_len + (raw_value.len() - raw_value.trim_start().len());
            let raw_value = raw_value.trim();
            let value = unescape_field_value(raw_value).map_err(|(offset, reason)| {
                SelectorError::InvalidValue {
                    position: value_start + offset,
                    key: field.to_string(),
                    value: raw_value.to_string(),
                    reason,
                }
            })?;
            requirements.push(FieldRequirement {
                field: field.to_string(),
                operator,
                value,
            });
        }
        requirements.sort();
        Ok(Self { requirements })
    }

    /// Whether `obj` satisfies every requirement. Each field is looked up along its dotted
    /// path; a missing field or `null` compares as `""`, numbers and booleans as their JSON
    /// text (`spec.unschedulable=true`).
    pub fn matches(&self, obj: &serde_json::Value) -> bool {
        self.requirements.iter().all(|r| {
            let actual = lookup_field(obj, &r.field);
            match r.operator {
                FieldOperator::Equals => actual == r.value,
                FieldOperator::NotEquals => actual != r.value,
            }
        })
    }

    /// The field names used, so a caller can refuse those its kind does not support.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.requirements.iter().map(|r| r.field.as_str())
    }

    /// The value `field` must equal, when the selector pins it with `=` (e.g. a kubelet's
    /// `spec.nodeName=<node>`), so a store can serve the request from an index.
    pub fn exact_match(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && r.operator == FieldOperator::Equals)
            .map(|r| r.value.as_str())
    }

    /// Whether the selector has no requirement (and so matches everything).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The requirements, sorted.
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (idx, requirement) in self.requirements.iter().enumerate() {
            if idx > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for FieldSelector {
    type Err = SelectorError;
    fn from_str(s: &str) -> Result<Self, SelectorError> {
        Self::parse(s)
    }
}

/// Field names are dotted JSON paths (`metadata.name`); restricting their characters keeps
/// the text form unambiguous (a name ending in `!` would read back as `!=`).
fn check_field_name(field: &str) -> Result<(), String> {
    if field.is_empty() {
        return Err("field name must be non-empty".to_string());
    }
    let valid = field
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err("field name must consist of letters, digits, '.', '_' or '-'".to_string())
    }
}

/// Splits on commas not escaped by a backslash, keeping escapes; yields `(offset, term)`.
fn split_terms(s: &str) -> Vec<(usize, &str)> {
    let mut terms = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (idx, c) in s.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            ',' => {
                terms.push((start, &s[start..idx]));
                start = idx + 1;
            }
            _ => {}
        }
    }
    terms.push((start, &s[start..]));
    terms
}

/// The first operator in a term (Kubernetes does not allow escapes in field names):
/// `(byte offset, operator, operator length)`.
fn find_field_operator(term: &str) -> Option<(usize, FieldOperator, usize)> {
    term.char_indices().find_map(|(idx, _)| {
        let rest = &term[idx..];
        if rest.starts_with("!=") {
            Some((idx, FieldOperator::NotEquals, 2))
        } else if rest.starts_with("==") {
            Some((idx, FieldOperator::Equals, 2))
        } else if rest.starts_with('=') {
            Some((idx, FieldOperator::Equals, 1))
        } else {
            None
        }
    })
}

/// Undoes `\\`, `\,` and `\=`; any other escape, a trailing `\`, or a bare `=` is an error
/// `(byte offset in the value, reason)`.
fn unescape_field_value(raw: &str) -> Result<String, (usize, String)> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.char_indices();
    while let Some((idx, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, escaped @ ('\\' | ',' | '='))) => out.push(escaped),
                Some((_, other)) => {
                    return Err((idx, format!("invalid escape sequence '\\{other}'")));
                }
                None => return Err((idx, "trailing '\\' escapes nothing".to_string())),
            },
            '=' => return Err((idx, "'=' must be escaped as '\\='".to_string())),
            c => out.push(c),
        }
    }
    Ok(out)
}

fn escape_field_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The text of the field at a dotted path; missing or `null` is `""`.
fn lookup_field(obj: &serde_json::Value, path: &str) -> String {
    let mut current = obj;
    for part in path.split('.') {
        match current.get(part) {
            Some(next) => current = next,
            None => return String::new(),
        }
    }
    match current {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
