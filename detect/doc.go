// Package detect owns auditwatch's detectors and the engine that runs them:
// unexpected_ip, first_time_access, auth_failure_spike, privileged_use and
// access_volume_spike, evaluated over schema.Events in event-time order.
//
// Decide on arrival: every event is evaluated when it arrives, whatever
// its order; nothing waits in a buffer. Single-event decisions (unexpected
// IP, first-time access, privileged use) are raised by the event itself.
// Windowed detectors (auth_failure_spike, access_volume_spike) keep per-key
// windows that accept events out of order: a late event counts in its own
// window, and the finding is raised by whichever event brings a window to
// its threshold. Lateness is per source (Config.Lateness: CloudTrail 15
// minutes, Vault 5 seconds by default) and only decides how long window
// state is kept for late events and which events are flagged late; each
// source has its own watermark (newest event time seen), so one late
// source never makes another's events late. Memory for out-of-order
// tolerance is the windows' own state, not lateness x rate.
//
// Skew: an event dated more than max_ahead after the wall clock never moves
// its source's watermark; one more than max_behind behind it is late. Both
// are processed, counted (Stats.Ahead/Behind,
// auditwatch_detect_time_skew_events_total) and flagged on their findings
// (attribute time_skew); late events' findings carry Late.
//
// Learning boundary: a decision uses what is known when the event
// arrives. An event that arrives after a later event of the same principal
// and moves its first-seen time earlier is counted (Stats.FirstSeenRevised,
// auditwatch_detect_first_seen_revised_total); decisions already taken
// for that principal stand (they were judged on the later first-seen
// time, which can only have made the principal look newer, i.e. still
// learning: a finding may be missed at the boundary, never invented).
// Events dated before LearnUntil are history whenever they arrive.
//
// Incidents: the events of one incident share a DedupeKey derived from the
// event that opened it, so arrival order within the lateness can change
// which event that is; what an incident is about (IncidentSubject) does
// not depend on order, and runs over the same input in any order within
// the lateness give the same incidents.
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
// every dirty entry, the per-source watermarks and the caller's input
// positions in one transaction (writes are batched, never one transaction per event).
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
