//! Placeholder: restart durability.
