//! Placeholder; filled in by the authorize work.
