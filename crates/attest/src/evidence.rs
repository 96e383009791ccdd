//! The front door: detect an evidence kind, and verify any kind with one call.
