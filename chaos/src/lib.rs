//! Chaos harness: kills, pauses and partitions nodes, pods and the bus, then checks the
//! cluster's promises (no lost acknowledged write, no double StatefulSet identity, failover
//! time) and writes a report. Empty until the chaos issue lands.
