//! Caches: save, restore, ls, rm.
