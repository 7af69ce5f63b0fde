//! libgyre.so (placeholder; the module is being written).
