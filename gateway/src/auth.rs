//! Authentication and the authorizer seam. Today: one admin bearer token, everyone else
//! is anonymous and refused (401). RBAC plugs in as another [`Authorizer`].

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    /// User name, e.g. `drover-admin`.
    pub name: String,
    /// Groups, e.g. `system:masters`.
    pub groups: Vec<String>,
}

/// What a request wants to do, in Kubernetes authorization terms.
#[derive(Debug, Clone)]
pub struct RequestAttributes<'a> {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`.
    pub verb: &'a str,
    /// API group (empty for core).
    pub group: &'a str,
    /// Plural resource.
    pub resource: &'a str,
    /// Subresource, if any.
    pub subresource: Option<&'a str>,
    /// Namespace, if any.
    pub namespace: Option<&'a str>,
    /// Object name, if any.
    pub name: Option<&'a str>,
}

/// Decides whether a user may do something.
pub trait Authorizer: Send + Sync {
    /// `Ok(())` to allow, `Err(reason)` to refuse with 403.
    fn authorize(&self, user: &UserInfo, attrs: &RequestAttributes<'_>) -> Result<(), String>;
}

/// Allows members of `system:masters` everything (what the admin kubeconfig gets).
pub struct MastersOnly;

impl Authorizer for MastersOnly {
    fn authorize(&self, user: &UserInfo, attrs: &RequestAttributes<'_>) -> Result<(), String> {
        if user.groups.iter().any(|g| g == "system:masters") {
            Ok(())
        } else {
            Err(format!(
                "User {:?} cannot {} resource {:?} in API group {:?}",
                user.name, attrs.verb, attrs.resource, attrs.group
            ))
        }
    }
}

/// Bearer-token authentication plus an authorizer.
pub struct Auth {
    admin_token: String,
    authorizer: Box<dyn Authorizer>,
}

impl Auth {
    /// Accepts `admin_token` as the admin; authorizes with `authorizer`.
    pub fn new(admin_token: String, authorizer: Box<dyn Authorizer>) -> Auth {
        Auth {
            admin_token,
            authorizer,
        }
    }

    /// Identifies the caller from the `Authorization` header; `None` = anonymous.
    pub fn authenticate(&self, authorization: Option<&str>) -> Option<UserInfo> {
        let token = authorization?.strip_prefix("Bearer ")?.trim();
        if !token.is_empty() && constant_time_eq(token.as_bytes(), self.admin_token.as_bytes()) {
            Some(UserInfo {
                name: "drover-admin".into(),
                groups: vec!["system:masters".into(), "system:authenticated".into()],
            })
        } else {
            None
        }
    }

    /// Asks the authorizer.
    pub fn authorize(&self, user: &UserInfo, attrs: &RequestAttributes<'_>) -> Result<(), String> {
        self.authorizer.authorize(user, attrs)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_admin_token_authenticates() {
        let auth = Auth::new("s3cret".into(), Box::new(MastersOnly));
        assert!(auth.authenticate(Some("Bearer s3cret")).is_some());
        for bad in [
            None,
            Some(""),
            Some("Bearer "),
            Some("Bearer s3cre"),
            Some("Basic s3cret"),
            Some("Bearer s3cret2"),
        ] {
            assert!(auth.authenticate(bad).is_none(), "{bad:?}");
        }
    }
}
