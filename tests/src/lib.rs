//! Test context shared by the end-to-end tests.
