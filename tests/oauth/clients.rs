//! Placeholder; filled in by the clients work.
