//! Clarity encoder plugin (in progress).
