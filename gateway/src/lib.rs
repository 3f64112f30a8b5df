//! The gateway: drover's Kubernetes-compatible declarative API (REST + watch, discovery,
//! OpenAPI, Table printing, patch and server-side apply, auth), the watch cache, and the
//! client helpers behind `drover apply/get/describe/delete`.
//!
//! It talks to the store (`drover-store`) and to node agents over NATS; it never talks to
//! containerd. Empty until the gateway issue lands.
