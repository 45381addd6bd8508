//! The embedded SQLite adapters (placeholder: being written).
