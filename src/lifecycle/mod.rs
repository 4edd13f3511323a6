//! Planned whole-cluster stop and start. `stop` makes nothing losable (PVs retained,
//! addresses pinned, buckets orphaned: each change recorded with its undo), quiesces in
//! order, waits for pods to go and volumes to detach, then takes a final snapshot and marks
//! it. `start` restores that snapshot and scales everything back in reverse order.

pub mod stop;
