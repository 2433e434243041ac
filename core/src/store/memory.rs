//! `memory://`: an in-process store for tests; it forgets everything when ferry exits.

use std::sync::Arc;

use object_store::memory::InMemory;

use super::object::Parts;

pub(crate) fn build() -> Parts {
    Parts {
        objects: Arc::new(InMemory::new()),
        signer: None,
        local_root: None,
        prefix: String::new(),
        hint: "a memory:// store lives only as long as one ferry process",
        paged: None,
    }
}
