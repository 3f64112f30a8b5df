//! drover's eBPF service load balancer: C programs under `bpf/` built by clang in
//! `build.rs`, embedded in the binary and loaded with aya (cgroup connect4/sendmsg4/
//! recvmsg4/getpeername4 at the cgroup v2 root, TC for NodePort).
//!
//! Only this crate touches BPF. It is empty until the services issue lands.
