// Package detect owns auditwatch's detectors and the engine that runs them:
// unexpected_ip, first_time_access, auth_failure_spike, privileged_use and
// access_volume_spike, evaluated over schema.Events in event-time order.
//
// Event time: the Engine holds events in a reorder buffer until they are
// older than the newest event seen minus the allowed lateness, then
// evaluates them in (time, arrival) order. An event older than that
// watermark (or than an event a full buffer had to release early) is still
// evaluated, at once, and its findings carry Late. Learning periods, windows and cool-downs all use event time, so a
// replay of last month gives the findings live processing gave. A live
// pipeline calls Advance with the wall clock when input is idle, so that
// sparse traffic is not held back until newer events arrive.
//
// Findings: ids are schema.MakeID over the evidence, so the same input
// always gives the same ids, and a restart that replays events after the
// last checkpoint re-emits findings with the ids already emitted (downstream
// dedupes them). Bursts (auth failures, bulk reads, root-token sessions,
// grouped first-time accesses) are one incident: later findings keep the
// DedupeKey and raise Revision and Count.
//
// State: each detector keeps its baselines in bounded in-memory tables
// (LRU) over a durable store (package detect/state, bbolt). Evictions are
// counted in Stats and in auditwatch_detect_state_evictions_total; an
// evicted entry not yet saved waits for the next Checkpoint, which writes
// every dirty entry, the reorder buffer and the caller's input positions in
// one transaction (writes are batched, never one transaction per event).
// Each checkpoint also sweeps a batch of saved entries and deletes those
// idle past their retention (forget_after, cool-downs, a decayed failure
// rate), counted in auditwatch_detect_state_expired_total, so addresses an
// attacker uses once do not grow the store forever.
//
// Partitions: Open gives an engine owning its partition's key-space of a
// state directory (state.Config.Partition); engines of several partitions
// share the directory's database file. One goroutine owns an Engine.
//
// History: Config.LearnUntil (replay --learn-until) marks events before it
// as history: baselines learn from them, no finding is raised. A principal
// seen in the history is past its learning period from LearnUntil on.
package detect
