//! Placeholder; filled in by the end-to-end work (Node SDK client, Chromium, conformance suite).
