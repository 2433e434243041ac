//! Workspaces: layered, per-workflow-run persistence.
