//! Test harness: spawns real redis-server processes with the Gyre module loaded.
