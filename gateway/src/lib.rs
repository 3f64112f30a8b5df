//! The gateway: drover's Kubernetes-compatible declarative API.
//!
//! Serves discovery (`/version`, `/api`, `/apis`, group-version resource lists), OpenAPI
//! v2 and v3 generated from the types ([`openapi`]), REST for
//! every kind in `bus_schema::KINDS` (namespaced and cluster-scoped paths, create / get /
//! list / watch / update / status / patch / server-side apply / delete, with
//! `managedFields` on every write: [`apply`]), Kubernetes `Status` errors with causes, and
//! bearer-token authentication behind an authorizer seam, over TLS with a CA it
//! generates ([`pki`]). LIST and WATCH are served by per-kind watch caches ([`cache`])
//! that share one store watch per kind among all client watches. It talks to the store
//! (`drover-store`) and, for `kubectl logs` and `kubectl exec` ([`podstream`]), to node
//! agents over NATS; it never talks to containerd (Architecture Invariant).

pub mod admission;
pub mod apply;
pub mod auth;
pub mod cache;
pub mod discovery;
pub mod metrics_api;
pub mod openapi;
pub mod patch;
pub mod pki;
pub mod podstream;
pub mod protobuf;
pub mod rest;
pub mod status;
pub mod table;
pub mod yaml;

use std::net::SocketAddr;
use std::sync::Arc;

use drover_store::Store;

/// Everything the HTTP server needs.
pub struct GatewayConfig {
    /// Address to listen on (loopback by default in `drover up`).
    pub bind: SocketAddr,
    /// Serving certificate and key (PEM) and the CA that signed them.
    pub tls: pki::Pki,
    /// The authenticator and authorizer.
    pub auth: Arc<auth::Auth>,
}

/// Shared state of the request handlers.
#[derive(Clone)]
pub struct AppState {
    /// The object store.
    pub store: Store,
    /// Authentication and authorization.
    pub auth: Arc<auth::Auth>,
    /// The per-kind watch caches that serve LIST and WATCH.
    pub caches: Arc<cache::Caches>,
}

/// A running gateway; stops on drop of the handle's `stop`.
pub struct Gateway {
    handle: actix_web::dev::ServerHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    /// Address actually bound (useful with port 0).
    pub addr: SocketAddr,
}

impl Gateway {
    /// Creates the default namespaces and starts serving on `config.bind`.
    pub async fn start(store: Store, config: GatewayConfig) -> std::io::Result<Gateway> {
        rest::ensure_default_namespaces(&store)
            .await
            .map_err(std::io::Error::other)?;
        let tls = config.tls.server_config().map_err(std::io::Error::other)?;
        let metrics = metrics_api::MetricsApi::start(store.nats_client().clone());
        let state = AppState {
            caches: Arc::new(cache::Caches::new(
                store.clone(),
                cache::CacheConfig::default(),
            )),
            store,
            auth: config.auth,
        };
        let server = actix_web::HttpServer::new(move || {
            actix_web::App::new()
                .app_data(actix_web::web::Data::new(state.clone()))
                .configure(|cfg| metrics.routes(cfg))
                .configure(discovery::routes)
                .configure(openapi::routes)
                .default_service(actix_web::web::to(rest::dispatch))
        })
        .workers(2)
        .bind_rustls_0_23(config.bind, tls)?;
        let addr = server.addrs().first().copied().unwrap_or(config.bind);
        let server = server.disable_signals().run();
        let handle = server.handle();
        let task = tokio::spawn(server);
        Ok(Gateway { handle, task, addr })
    }

    /// Stops accepting requests and waits for in-flight ones (watches are cut).
    pub async fn stop(self) {
        self.handle.stop(false).await;
        let _ = self.task.await;
    }
}
