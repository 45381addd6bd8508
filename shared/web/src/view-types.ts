// The client core's JSON shapes, as the app imports them: the core's own types
// (core-types.ts, written next to the Rust mapping) under the names the screens use.
export type {
  ActorView as ViewActor,
  AttackPlan,
  ConnectionState,
  InitiativeView as InitiativeEntry,
  LogEntry,
  Notification,
  Output,
  RollRef,
  Submitted,
  ViewModel,
} from './core-types';
