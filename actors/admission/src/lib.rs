//! Admission: what is decided about an object after defaulting and validation and before
//! it is written (Kubernetes' admission plugins `Priority`, `LimitRanger` and
//! `ResourceQuota`). The API gateway runs it for every create and update it serves, and
//! the workload controllers run it for every pod, claim and Job they create, so an object
//! a controller makes is defaulted, limited and charged exactly as one a user posts (in
//! Kubernetes every controller create goes through the API server's admission chain).
//!
//! It also allocates Services' cluster IPs and node ports ([`services`], decisions in
//! [`allocator`]), as the API server's service registry does on create and update.
//!
//! The decisions are pure functions ([`priority`], [`limit_range`] and
//! `bus_schema::quota`); this crate reads what they need from the store ([`Admission`])
//! and carries them out. Quota is charged by a compare-and-swap of the quota's
//! `status.used` before the object is written, so concurrent creates serialise on the
//! quota as they do in Kubernetes; a create that fails after its charge leaves the quota
//! high until the quota controller recomputes it from the objects that exist.

pub mod allocator;
pub mod limit_range;
pub mod priority;
pub mod repair;
pub mod services;

use bus_schema::quota::{self, ResourceList};
use bus_schema::{KindInfo, kinds};
use drover_store::{ListOptions, Store, StoreError};
use serde_json::{Value, json};

/// Compare-and-swap rounds for one quota charge.
const CAS_ATTEMPTS: usize = 16;

/// Why admission refused an object, or could not decide.
#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    /// An admission plugin refused the object (403 Forbidden), or its quota kept changing
    /// under the charge (409 Conflict). Retrying may succeed once what it depends on (a
    /// quota, a PriorityClass, a LimitRange) changes.
    #[error("{}", .0.message)]
    Refused(Refusal),
    /// The object is invalid (`StoreError::Invalid`), or a store read or write failed;
    /// `kind` and `name` name the object the error is about (for the API's Status).
    #[error("{source}")]
    Store {
        /// The kind of the object the error is about.
        kind: &'static KindInfo,
        /// Its name.
        name: String,
        /// What the store said.
        source: StoreError,
    },
}

/// A refusal as the API reports it: the fields of a Kubernetes `Status`.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// HTTP status code.
    pub code: u16,
    /// `Status.reason`.
    pub reason: &'static str,
    /// `Status.message`, e.g. `pods "web-x" is forbidden: exceeded quota: ...`.
    pub message: String,
    /// `Status.details` (name, group, kind, causes).
    pub details: Option<Value>,
}

impl AdmissionError {
    fn store(kind: &'static KindInfo, name: &str, source: StoreError) -> AdmissionError {
        AdmissionError::Store {
            kind,
            name: name.to_string(),
            source,
        }
    }

    /// Whether the object itself is invalid: no retry succeeds until it changes.
    pub fn is_invalid(&self) -> bool {
        matches!(
            self,
            AdmissionError::Store {
                source: StoreError::Invalid { .. },
                ..
            }
        )
    }
}

/// 403 Forbidden as admission plugins word it: `pods "x" is forbidden: <why>`.
pub fn forbidden(kind: &KindInfo, name: &str, why: &str) -> AdmissionError {
    AdmissionError::Refused(Refusal {
        code: 403,
        reason: "Forbidden",
        message: format!("{} {name:?} is forbidden: {why}", kind.group_resource()),
        details: Some(json!({"name": name, "group": kind.group, "kind": kind.plural})),
    })
}

fn kind_of(group: &str, name: &str) -> &'static KindInfo {
    kinds::by_group_kind(group, name).expect("admission kinds are in KINDS")
}

fn is(kind: &KindInfo, group: &str, name: &str) -> bool {
    kind.group == group && kind.kind == name
}

fn priority_classes() -> &'static KindInfo {
    kind_of("scheduling.k8s.io", "PriorityClass")
}

fn limit_ranges() -> &'static KindInfo {
    kind_of("", "LimitRange")
}

fn resource_quotas() -> &'static KindInfo {
    kind_of("", "ResourceQuota")
}

async fn list(
    store: &Store,
    kind: &'static KindInfo,
    namespace: Option<&str>,
) -> Result<Vec<Value>, AdmissionError> {
    store
        .list(kind, namespace, &ListOptions::default())
        .await
        .map(|l| l.items)
        .map_err(|e| AdmissionError::store(kind, "", e))
}

/// Defaults and validates `obj` as the API server does before admission (a 422 comes
/// before any 403).
fn prepare(kind: &'static KindInfo, obj: &mut Value) -> Result<(), AdmissionError> {
    bus_schema::defaults::apply(kind, obj);
    if let Err(errors) = bus_schema::validation::validate_object(kind, obj) {
        let name = drover_store::object::name(obj).to_string();
        let err = StoreError::Invalid {
            kind: kind.group_resource(),
            name: name.clone(),
            errors,
        };
        return Err(AdmissionError::store(kind, &name, err));
    }
    Ok(())
}

/// What admission reads from the store for objects of one kind in one namespace: the
/// PriorityClasses, LimitRanges and ResourceQuotas that apply to it. Loaded once and
/// reused for a batch of creates (a ReplicaSet's slow-start batch); quotas it charges are
/// kept current in it, so the next create of the batch starts from the charged quota.
#[derive(Debug, Clone)]
pub struct Admission {
    kind: &'static KindInfo,
    namespace: Option<String>,
    classes: Vec<Value>,
    ranges: Vec<Value>,
    quotas: Vec<Value>,
}

impl Admission {
    /// Reads what admitting objects of `kind` in `namespace` needs (nothing for kinds no
    /// plugin looks at).
    pub async fn load(
        store: &Store,
        kind: &'static KindInfo,
        namespace: Option<&str>,
    ) -> Result<Admission, AdmissionError> {
        let namespace = namespace.filter(|_| kind.namespaced).map(str::to_string);
        let mut a = Admission {
            kind,
            namespace: namespace.clone(),
            classes: Vec::new(),
            ranges: Vec::new(),
            quotas: Vec::new(),
        };
        let pod = is(kind, "", "Pod");
        if pod || is(kind, "scheduling.k8s.io", "PriorityClass") {
            a.classes = list(store, priority_classes(), None).await?;
        }
        let Some(ns) = namespace.as_deref() else {
            return Ok(a);
        };
        if pod || is(kind, "", "PersistentVolumeClaim") {
            a.ranges = list(store, limit_ranges(), Some(ns)).await?;
        }
        a.quotas = list(store, resource_quotas(), Some(ns)).await?;
        Ok(a)
    }

    /// Reloads when `obj` is in another namespace than the one loaded.
    async fn for_object(&mut self, store: &Store, obj: &Value) -> Result<(), AdmissionError> {
        let ns = drover_store::object::namespace(obj).filter(|_| self.kind.namespaced);
        if ns != self.namespace.as_deref() {
            *self = Admission::load(store, self.kind, ns).await?;
        }
        Ok(())
    }

    /// Admits a create of `obj`: defaults and validates it, resolves pod priority,
    /// applies LimitRange defaults and limits, and charges quotas (only checks them on a
    /// dry run). `obj` is changed in place.
    pub async fn admit_create(
        &mut self,
        store: &Store,
        obj: &mut Value,
        dry_run: bool,
    ) -> Result<(), AdmissionError> {
        prepare(self.kind, obj)?;
        self.admit_prepared(store, obj, dry_run).await
    }

    async fn admit_prepared(
        &mut self,
        store: &Store,
        obj: &mut Value,
        dry_run: bool,
    ) -> Result<(), AdmissionError> {
        self.for_object(store, obj).await?;
        let kind = self.kind;
        let name = drover_store::object::name(obj).to_string();
        if is(kind, "scheduling.k8s.io", "PriorityClass") {
            priority::check_class(obj, &self.classes)
                .map_err(|why| forbidden(kind, &name, &why))?;
        }
        let Some(ns) = self.namespace.clone() else {
            return Ok(());
        };
        if is(kind, "", "Pod") {
            let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
            let resolved = priority::resolve(&spec, &self.classes)
                .map_err(|why| forbidden(kind, &name, &why))?;
            if let Some(spec) = obj.get_mut("spec") {
                priority::apply(spec, &resolved);
            }
            if limit_range::default_pod(obj, &self.ranges) {
                // The QoS class follows the resources LimitRange filled in, as it does in
                // Kubernetes (computed after admission there).
                let qos = obj.get("spec").map(bus_schema::defaults::qos_class);
                if let (Some(q), Some(status)) = (qos, obj.get_mut("status")) {
                    status["qosClass"] = json!(q);
                }
            }
            let errors = limit_range::validate_pod(obj, &self.ranges);
            if !errors.is_empty() {
                return Err(forbidden(kind, &name, &limit_range::aggregate(&errors)));
            }
        }
        if is(kind, "", "PersistentVolumeClaim") {
            let errors = limit_range::validate_pvc(obj, &self.ranges);
            if !errors.is_empty() {
                return Err(forbidden(kind, &name, &limit_range::aggregate(&errors)));
            }
        }
        self.charge_quotas(store, &ns, None, obj, dry_run).await?;
        if is(kind, "", "Service") {
            services::admit(store, None, obj, dry_run).await?;
        }
        Ok(())
    }

    /// Admits an update of `current` to `obj` (not status writes): PriorityClass rules,
    /// LimitRange limits of PersistentVolumeClaims, and quota charges for what the update
    /// adds (a grown claim). Pods' resources cannot change on update, so they are not
    /// re-checked, as in Kubernetes.
    pub async fn admit_update(
        &mut self,
        store: &Store,
        current: &Value,
        obj: &mut Value,
        dry_run: bool,
    ) -> Result<(), AdmissionError> {
        self.for_object(store, obj).await?;
        let kind = self.kind;
        let name = drover_store::object::name(obj).to_string();
        if is(kind, "scheduling.k8s.io", "PriorityClass") {
            priority::check_class(obj, &self.classes)
                .map_err(|why| forbidden(kind, &name, &why))?;
            return Ok(());
        }
        let Some(ns) = self.namespace.clone() else {
            return Ok(());
        };
        if is(kind, "", "PersistentVolumeClaim") {
            let errors = limit_range::validate_pvc(obj, &self.ranges);
            if !errors.is_empty() {
                return Err(forbidden(kind, &name, &limit_range::aggregate(&errors)));
            }
        }
        self.charge_quotas(store, &ns, Some(current), obj, dry_run)
            .await?;
        if is(kind, "", "Service") {
            services::admit(store, Some(current), obj, dry_run).await?;
        }
        Ok(())
    }

    /// Names `obj` from its `generateName` (so a refusal names the object, as Kubernetes'
    /// does), admits it and writes it: a controller's create. Nothing is written when
    /// admission refuses.
    pub async fn create(&mut self, store: &Store, mut obj: Value) -> Result<Value, AdmissionError> {
        name_from_generate(&mut obj);
        self.admit_create(store, &mut obj, false).await?;
        let name = drover_store::object::name(&obj).to_string();
        store
            .create(self.kind, obj)
            .await
            .map_err(|e| AdmissionError::store(self.kind, &name, e))
    }

    /// Checks every quota of the namespace that covers `obj` and charges what it adds
    /// (its usage on create, the growth on update) to each by CAS, re-deciding on
    /// conflict.
    async fn charge_quotas(
        &mut self,
        store: &Store,
        ns: &str,
        old: Option<&Value>,
        obj: &Value,
        dry_run: bool,
    ) -> Result<(), AdmissionError> {
        if self.quotas.is_empty() {
            return Ok(());
        }
        let kind = self.kind;
        let name = drover_store::object::name(obj).to_string();
        let usage = quota::usage(kind, obj);
        let delta = match old {
            Some(old) => quota::subtract_non_negative(&usage, &quota::usage(kind, old)),
            None => usage,
        };
        let covering: Vec<usize> = (0..self.quotas.len())
            .filter(|i| quota::quota_covers(self.quotas[*i].get("spec"), kind, obj))
            .collect();
        if old.is_none() && is(kind, "", "Pod") {
            for i in &covering {
                let q = &self.quotas[*i];
                let hard = quota::parse_list(q.pointer("/spec/hard"));
                if let Some(detail) = quota::missing_requirements(&hard, obj) {
                    let denied = quota::QuotaDenied::Missing {
                        quota: drover_store::object::name(q).to_string(),
                        detail,
                    };
                    return Err(forbidden(kind, &name, &denied.to_string()));
                }
            }
        }
        for i in covering {
            let q = self.quotas[i].clone();
            // What the quota is after the charge; `None` when it was deleted meanwhile.
            let now = charge_one(store, kind, ns, q, &delta, &name, dry_run).await?;
            if let Some(now) = now {
                self.quotas[i] = now;
            }
        }
        Ok(())
    }
}

/// Admits a create of `obj` (see [`Admission::admit_create`]), reading what it needs
/// from the store; a 422 for an invalid object comes before any store read.
pub async fn admit_create(
    store: &Store,
    kind: &'static KindInfo,
    obj: &mut Value,
    dry_run: bool,
) -> Result<(), AdmissionError> {
    prepare(kind, obj)?;
    let mut a = Admission::load(store, kind, drover_store::object::namespace(obj)).await?;
    a.admit_prepared(store, obj, dry_run).await
}

/// Admits an update of `current` to `obj` (see [`Admission::admit_update`]).
pub async fn admit_update(
    store: &Store,
    kind: &'static KindInfo,
    current: &Value,
    obj: &mut Value,
    dry_run: bool,
) -> Result<(), AdmissionError> {
    let mut a = Admission::load(store, kind, drover_store::object::namespace(obj)).await?;
    a.admit_update(store, current, obj, dry_run).await
}

/// Names, admits and writes `obj` (see [`Admission::create`]).
pub async fn create(
    store: &Store,
    kind: &'static KindInfo,
    obj: Value,
) -> Result<Value, AdmissionError> {
    let mut a = Admission::load(store, kind, drover_store::object::namespace(&obj)).await?;
    a.create(store, obj).await
}

/// Fills `metadata.name` from `metadata.generateName` when the name is empty, as the API
/// server does before admission.
pub fn name_from_generate(obj: &mut Value) {
    if !drover_store::object::name(obj).is_empty() {
        return;
    }
    let Some(prefix) = drover_store::object::meta_str(obj, "generateName").map(str::to_string)
    else {
        return;
    };
    drover_store::object::meta_mut(obj).insert(
        "name".into(),
        Value::String(drover_store::generated_name(&prefix)),
    );
}

/// Charges `delta` to quota `q` by CAS; returns the quota as written (or as read, when
/// nothing needed writing), `None` when it was deleted meanwhile.
async fn charge_one(
    store: &Store,
    kind: &'static KindInfo,
    ns: &str,
    mut q: Value,
    delta: &ResourceList,
    name: &str,
    dry_run: bool,
) -> Result<Option<Value>, AdmissionError> {
    let quota_kind = resource_quotas();
    let quota_name = drover_store::object::name(&q).to_string();
    for attempt in 0..CAS_ATTEMPTS {
        if attempt > 0 {
            q = match store.get(quota_kind, Some(ns), &quota_name).await {
                Ok(q) => q,
                // Deleted meanwhile: nothing to charge.
                Err(StoreError::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(AdmissionError::store(quota_kind, &quota_name, e)),
            };
        }
        let hard = quota::parse_list(q.pointer("/spec/hard"));
        let mut used = quota::parse_list(q.pointer("/status/used"));
        if hard.keys().any(|k| !used.contains_key(k)) {
            // A new quota (or new hard resources) that the controller has not counted
            // yet: count now rather than refuse with "status unknown" as Kubernetes does.
            used = count_used(store, ns, &q, &hard).await?;
        }
        let new_used = match quota::admit(&quota_name, &hard, &used, delta) {
            Ok(None) => return Ok(Some(q)),
            Ok(Some(new_used)) => new_used,
            Err(denied) => return Err(forbidden(kind, name, &denied.to_string())),
        };
        if dry_run {
            return Ok(Some(q));
        }
        q["status"] = json!({
            "hard": quota::render_list(&hard),
            "used": quota::render_list(&quota::mask(&new_used, hard.keys())),
        });
        match store.update(quota_kind, q.clone()).await {
            Ok(stored) => return Ok(Some(stored)),
            // A stale copy (a batch's snapshot, or a concurrent charge): re-read.
            Err(StoreError::Conflict { .. }) => continue,
            Err(StoreError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(AdmissionError::store(quota_kind, &quota_name, e)),
        }
    }
    Err(AdmissionError::Refused(Refusal {
        code: 409,
        reason: "Conflict",
        message: format!(
            "Operation cannot be fulfilled on resourcequotas {quota_name:?}: the quota keeps changing; retry"
        ),
        details: None,
    }))
}

/// What the objects of the namespace use of a quota's hard resources (the quota
/// controller's computation, done here for a quota it has not seen yet).
async fn count_used(
    store: &Store,
    ns: &str,
    q: &Value,
    hard: &ResourceList,
) -> Result<ResourceList, AdmissionError> {
    let mut usages = Vec::new();
    for counted in quota::counted_kinds(hard) {
        for obj in list(store, counted, Some(ns)).await? {
            if quota::quota_covers(q.get("spec"), counted, &obj) {
                usages.push(quota::usage(counted, &obj));
            }
        }
    }
    Ok(quota::used_from(hard, &usages))
}

#[cfg(test)]
mod tests;
