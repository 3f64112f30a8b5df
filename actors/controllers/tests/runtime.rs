//! The controller runtime against a real nats-server and store: a toy controller that
//! mirrors every labelled ConfigMap into a Secret it owns, recreating it when deleted and
//! updating it when the ConfigMap changes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bus_schema::KindInfo;
use drover_controllers::runtime::{
    self, Action, Cache, Context, ObjectKey, ReconcileError, Reconciler, Watch, owner,
};
use drover_store::{DeleteOptions, Store, StoreConfig, StoreError};
use drover_testkit::TestNats;
use serde_json::{Value, json};

fn kind(plural: &str) -> &'static KindInfo {
    bus_schema::kinds::by_group_resource("", plural).unwrap()
}

struct Mirror {
    creates: Arc<AtomicUsize>,
}

impl Reconciler for Mirror {
    fn name(&self) -> &'static str {
        "mirror"
    }
    fn kind(&self) -> &'static KindInfo {
        kind("configmaps")
    }
    fn watches(&self) -> Vec<Watch> {
        vec![Watch::owned(kind("secrets"), kind("configmaps"))]
    }
    async fn reconcile(&self, key: &ObjectKey, ctx: &Context) -> Result<Action, ReconcileError> {
        let Some(cm) = ctx.cache.get(kind("configmaps"), key) else {
            return Ok(Action::await_change());
        };
        if cm.pointer("/metadata/labels/mirror") != Some(&json!("yes")) {
            return Ok(Action::await_change());
        }
        let data = cm.get("data").cloned().unwrap_or(json!({}));
        let uid = drover_store::object::meta_str(&cm, "uid").unwrap_or_default();
        let stored = match ctx.cache.get(kind("secrets"), key) {
            Some(secret) if owner::is_controlled_by(&secret, uid) => {
                if secret.get("stringData") == Some(&data)
                    || secret.get("data") == Some(&encode(&data))
                {
                    return Ok(Action::await_change());
                }
                let mut next = (*secret).clone();
                next["data"] = encode(&data);
                ctx.store.update(kind("secrets"), next).await?
            }
            Some(_) => return Ok(Action::await_change()),
            None => {
                self.creates.fetch_add(1, Ordering::SeqCst);
                let secret = json!({
                    "apiVersion": "v1", "kind": "Secret",
                    "metadata": {"namespace": key.namespace, "name": key.name,
                        "ownerReferences": [owner::controller_reference(kind("configmaps"), &cm)]},
                    "data": encode(&data),
                });
                match ctx.store.create(kind("secrets"), secret).await {
                    Ok(stored) => stored,
                    Err(StoreError::AlreadyExists { .. }) => return Ok(Action::await_change()),
                    Err(e) => return Err(e.into()),
                }
            }
        };
        ctx.cache
            .wait_for_revision(
                kind("secrets"),
                runtime::revision_of(&stored),
                Duration::from_secs(10),
            )
            .await?;
        Ok(Action::await_change())
    }
}

fn encode(data: &Value) -> Value {
    use base64::Engine;
    let map = data.as_object().cloned().unwrap_or_default();
    Value::Object(
        map.into_iter()
            .map(|(k, v)| {
                let s = v.as_str().unwrap_or_default().to_string();
                (
                    k,
                    json!(base64::engine::general_purpose::STANDARD.encode(s)),
                )
            })
            .collect(),
    )
}

async fn wait_for<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_controller_reconciles_creates_repairs_and_updates() {
    drover_testkit::init_tracing();
    let nats = TestNats::start().await;
    let store = Store::new(nats.client().await, StoreConfig::default())
        .await
        .unwrap();
    let cache = Cache::start(store.clone(), &[kind("configmaps"), kind("secrets")]);
    let ctx = Context::new(store.clone(), cache, "mirror-controller");
    let creates = Arc::new(AtomicUsize::new(0));
    let task = runtime::run(
        Mirror {
            creates: creates.clone(),
        },
        ctx,
        4,
    );
    for i in 0..20 {
        store
            .create(
                kind("configmaps"),
                json!({"metadata": {"namespace": "default", "name": format!("cm{i}"),
                    "labels": {"mirror": "yes"}}, "data": {"k": format!("v{i}")}}),
            )
            .await
            .unwrap();
    }
    let secret = |name: &'static str| {
        let store = store.clone();
        async move { store.get(kind("secrets"), Some("default"), name).await.ok() }
    };
    for i in 0..20 {
        let name: &'static str = Box::leak(format!("cm{i}").into_boxed_str());
        wait_for("mirrored secret", async || secret(name).await).await;
    }
    assert_eq!(
        creates.load(Ordering::SeqCst),
        20,
        "one create per ConfigMap"
    );

    // Deleting what the controller owns brings it back.
    store
        .delete(
            kind("secrets"),
            Some("default"),
            "cm3",
            &DeleteOptions::default(),
        )
        .await
        .unwrap();
    wait_for("recreated secret", async || secret("cm3").await).await;

    // A change of the ConfigMap reaches its Secret.
    let mut cm = store
        .get(kind("configmaps"), Some("default"), "cm5")
        .await
        .unwrap();
    cm["data"]["k"] = json!("changed");
    store.update(kind("configmaps"), cm).await.unwrap();
    let want = encode(&json!({"k": "changed"}));
    wait_for("updated secret", async || {
        secret("cm5").await.filter(|s| s["data"] == want)
    })
    .await;
    task.abort();
}
