//! Placeholder; filled in by the token work.
